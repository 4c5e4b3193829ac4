"""``spotcheck serve``: BentoML's real HTTP server on a free 127.0.0.1 port, every route.

One server per module (model import, start and TreeSHAP warm-up take ~15 s), started the way
a user starts it, with a bearer token so that auth is exercised on every call.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

TOKEN = "test-token-0123456789"
START_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(base: str, path: str, body: object = None, token: str | None = TOKEN, raw=None):
    """``(status, parsed JSON or text)`` of a GET (no body) or POST to the server."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def _spotcheck() -> str:
    return str(Path(sys.executable).with_name("spotcheck"))


@pytest.fixture(scope="module")
def snapshot(histories_model, cli, tmp_path_factory) -> Path:
    histories, _ = histories_model
    out = tmp_path_factory.mktemp("snapshot") / "features.parquet"
    built = cli("features", "--histories", histories, "--out", out)
    assert built.exit_code == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def server(histories_model, snapshot, mlflow_uri, tmp_path_factory):
    """The served model's base URL; the server is stopped with SIGTERM afterwards."""
    histories, name = histories_model
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "BENTOML_HOME": str(tmp_path_factory.mktemp("bentoml")),
        "SPOTCHECK_API_TOKEN": TOKEN,
    }
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [_spotcheck(), "serve", "--model", f"models:/{name}/1", "--port", str(port),
             "--snapshot", str(snapshot), "--histories", str(histories)],
            env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while _ready(base) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, name, process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _ready(base: str) -> int | None:
    try:
        return _request(base, "/readyz", token=None)[0]
    except OSError:
        return None


def _stores(snapshot: Path, n: int) -> list[dict]:
    """``n`` stores of the snapshot as a /score request would send them (JSON values)."""
    names = [f["name"] for f in json.loads(Path(f"{snapshot}.spec.json").read_text())["features"]]
    table = pd.read_parquet(snapshot).head(n)
    rows = json.loads(table[["store_id", *names]].to_json(orient="records"))
    return [{"store_id": r.pop("store_id"), "features": r} for r in rows]


def test_scores_with_reasons_equal_the_batch_scores(server, snapshot, cli, tmp_path):
    base, name, _ = server
    stores = _stores(snapshot, 20)
    status, answer = _request(base, "/score", {"stores": stores})
    assert status == 200, answer
    assert answer["model"] == {"name": name, "version": "1", "uri": f"models:/{name}/1"}
    batch = cli("score", "--features", snapshot, "--model", f"models:/{name}/1",
                "--out", tmp_path / "s.parquet", "--top", 0)  # fmt: skip
    assert batch.exit_code == 0, batch.stderr
    expected = pd.read_parquet(tmp_path / "s.parquet").set_index("store_id")
    for store in answer["stores"]:
        row = expected.loc[store["store_id"]]
        assert store["score"] == pytest.approx(row["score"], abs=1e-9)
        assert store["band"] in ("very high", "high", "elevated", "low")
        assert len(store["reasons"]) <= 5 and len(store["mitigating"]) <= 3
        assert store["base_value"] + sum(store["groups"].values()) == pytest.approx(
            store["raw_score"], abs=1e-5
        )


def test_score_stores_reads_the_snapshot_and_an_unknown_id_is_an_item_error(server, snapshot):
    base, _, _ = server
    known = _stores(snapshot, 2)
    ids = [known[0]["store_id"], "NO-SUCH-STORE", known[1]["store_id"]]
    status, answer = _request(base, "/score_stores", {"store_ids": ids})
    assert status == 200, answer
    assert [s["store_id"] for s in answer["stores"]] == ids
    assert answer["stores"][1] == {
        "store_id": "NO-SUCH-STORE", "error": "unknown store id: not in the feature snapshot",
    }  # fmt: skip
    _, direct = _request(base, "/score", {"stores": known})
    assert answer["stores"][0]["score"] == direct["stores"][0]["score"]
    assert answer["stores"][2]["score"] == direct["stores"][1]["score"]


def test_explain_returns_every_contribution_adding_up_to_the_raw_score(server, snapshot):
    base, _, _ = server
    stores = _stores(snapshot, 5)
    _, scored = _request(base, "/score", {"stores": stores})
    status, answer = _request(base, "/explain", {"stores": stores})
    assert status == 200, answer
    features = json.loads(Path(f"{snapshot}.spec.json").read_text())["features"]
    for explained, store in zip(answer["stores"], scored["stores"], strict=True):
        assert list(explained["contributions"]) == [f["name"] for f in features]
        total = explained["base_value"] + sum(explained["contributions"].values())
        assert total == pytest.approx(explained["raw_score"], abs=1e-9)
        assert explained["raw_score"] == pytest.approx(store["raw_score"], abs=1e-9)


def test_model_route_describes_the_served_version(server, snapshot):
    base, name, _ = server
    status, info = _request(base, "/model")
    assert status == 200, info
    spec = json.loads(Path(f"{snapshot}.spec.json").read_text())
    assert (info["name"], info["version"], info["alias"]) == (name, "1", None)
    assert len(info["features"]) == len(spec["features"])
    assert {"name", "group", "dtype", "description"} <= set(info["features"][0])
    assert set(info["holdout_metrics"]) >= {"model", "logistic_regression"}
    assert 0 <= info["holdout_metrics"]["model"]["pr_auc"] <= 1
    assert info["trained_at"].startswith("20")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stores": []}, "stores"),
        ({"stores": [{"store_id": "a", "features": {}}] * 1001}, "stores"),
        ({"stores": [{"store_id": "a", "features": {"no_such_feature": 1}}]},
         "stores[0].features: unknown feature(s) 'no_such_feature'"),
        ({"stores": [{"store_id": "a", "features": {"store_age_days": "old"}}]},
         "stores[0].features.store_age_days: expected a number"),
        ({"stores": [{"store_id": "a", "features": {"store_age_days": 1e999}}]},
         "stores[0].features.store_age_days: expected a finite number"),
        ({"stores": [{"store_id": "a", "features": {"category": 3}}]},
         "stores[0].features.category: expected a string category"),
        ({"stores": [{"store_id": "", "features": {}}]}, "store_id"),
        ({"stores": [{"features": {}}]}, "store_id"),
        ({"store_ids": ["a"]}, "stores"),
    ],
    ids=["empty", "over-limit", "unknown-feature", "wrong-type", "infinity", "category-type",
         "empty-id", "no-id", "wrong-route-body"],
)  # fmt: skip
def test_bad_input_is_a_4xx_naming_the_field(server, body, field):
    base, _, _ = server
    status, answer = _request(base, "/score", body)
    assert 400 <= status < 500, answer
    assert field in json.dumps(answer)


def test_nan_and_malformed_json_are_refused(server):
    base, _, _ = server
    nan = b'{"stores": [{"store_id": "a", "features": {"store_age_days": NaN}}]}'
    status, answer = _request(base, "/score", raw=nan)
    assert 400 <= status < 500 and "store_age_days" in json.dumps(answer), answer
    status, answer = _request(base, "/score", raw=b'{"stores": [')
    assert 400 <= status < 500, answer


def test_scoring_and_model_routes_need_the_token_health_and_metrics_do_not(server, snapshot):
    base, _, _ = server
    body = {"stores": _stores(snapshot, 1)}
    for path, payload in (("/score", body), ("/explain", body),
                          ("/score_stores", {"store_ids": ["x"]}), ("/model", None),
                          ("/report/x", None)):  # fmt: skip
        assert _request(base, path, payload, token=None)[0] == 401, path
        assert _request(base, path, payload, token="wrong")[0] == 401, path
    for path in ("/livez", "/readyz", "/metrics"):
        assert _request(base, path, token=None)[0] == 200, path


def test_metrics_carry_the_score_distribution_and_top_reasons(server, snapshot):
    base, _, _ = server
    _request(base, "/score", {"stores": _stores(snapshot, 3)})
    status, text = _request(base, "/metrics", token=None)
    assert status == 200
    count = next(
        float(line.split()[-1]) for line in text.splitlines()
        if line.startswith("spotcheck_score_count")
    )  # fmt: skip
    assert count >= 3 and not math.isnan(count)
    assert "spotcheck_top_reason_total{feature=" in text
    assert "bentoml_service_request_total" in text or "bentoml_api_server" in text


def test_a_snapshot_with_another_feature_spec_is_refused_before_start(
    histories_model, snapshot, mlflow_uri, tmp_path
):
    _, name = histories_model
    skewed = tmp_path / "skewed.parquet"
    skewed.write_bytes(snapshot.read_bytes())
    spec = json.loads(Path(f"{snapshot}.spec.json").read_text())
    spec["features"][0]["description"] = "defined differently"
    Path(f"{skewed}.spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri,
           "BENTOML_HOME": str(tmp_path / "bentoml")}  # fmt: skip
    result = subprocess.run(
        [_spotcheck(), "serve", "--model", f"models:/{name}/1", "--port", "1",
         "--snapshot", str(skewed)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "model FeatureSpec hash" in result.stderr and "differs from the data's" in result.stderr


def test_report_route_serves_the_case_report_of_a_snapshot_store(server, snapshot):
    base, _, _ = server
    store = _stores(snapshot, 1)[0]["store_id"]
    started = time.monotonic()
    status, page = _request(base, f"/report/{store}")
    took = time.monotonic() - started
    assert status == 200, page
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")
    for section in ("Raising the risk", "Evidence from the store", "Linked stores"):
        assert section in page
    assert f"Store {store}" in page
    print(f"report of {store} built and served in {took:.2f} s")
    status, answer = _request(base, "/report/NO-SUCH-STORE")
    assert status == 404 and "'NO-SUCH-STORE'" in answer["error"]


def test_histories_without_a_snapshot_is_a_usage_error(cli, tmp_path):
    result = cli("serve", "--histories", tmp_path)  # refused before anything starts
    assert result.exit_code == 2
    assert "--histories goes with --snapshot" in result.stderr
