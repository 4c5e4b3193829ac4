"""``spotcheck serve``: BentoML's real HTTP server on a free 127.0.0.1 port, every route.

One server per module (model import, start and TreeSHAP warm-up take ~15 s), started the way
a user starts it, with a bearer token so that auth is exercised on every call.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from serve_helpers import TOKEN, http, snapshot_stores, spotcheck_command, start_server


@pytest.fixture(scope="module")
def server(histories_model, snapshot, mlflow_uri, tmp_path_factory):
    """The served model's base URL, name and process; stopped with SIGTERM afterwards."""
    histories, name = histories_model
    root = tmp_path_factory.mktemp("server")
    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "BENTOML_HOME": str(root / "bentoml"),
           "SPOTCHECK_API_TOKEN": TOKEN}  # fmt: skip
    running = start_server(
        ["--model", f"models:/{name}/1", "--snapshot", str(snapshot),
         "--histories", str(histories)],
        env, root / "server.log",
    )  # fmt: skip
    try:
        yield running.base, name, running.process
    finally:
        running.stop()


def test_scores_with_reasons_equal_the_batch_scores(server, snapshot, cli, tmp_path):
    base, name, _ = server
    stores = snapshot_stores(snapshot, 20)
    status, answer = http(base, "/score", {"stores": stores})
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
    known = snapshot_stores(snapshot, 2)
    ids = [known[0]["store_id"], "NO-SUCH-STORE", known[1]["store_id"]]
    status, answer = http(base, "/score_stores", {"store_ids": ids})
    assert status == 200, answer
    assert [s["store_id"] for s in answer["stores"]] == ids
    assert answer["stores"][1] == {
        "store_id": "NO-SUCH-STORE", "error": "unknown store id: not in the feature snapshot",
    }  # fmt: skip
    _, direct = http(base, "/score", {"stores": known})
    assert answer["stores"][0]["score"] == direct["stores"][0]["score"]
    assert answer["stores"][2]["score"] == direct["stores"][1]["score"]


def test_explain_returns_every_contribution_adding_up_to_the_raw_score(server, snapshot):
    base, _, _ = server
    stores = snapshot_stores(snapshot, 5)
    _, scored = http(base, "/score", {"stores": stores})
    status, answer = http(base, "/explain", {"stores": stores})
    assert status == 200, answer
    features = json.loads(Path(f"{snapshot}.spec.json").read_text())["features"]
    for explained, store in zip(answer["stores"], scored["stores"], strict=True):
        assert list(explained["contributions"]) == [f["name"] for f in features]
        total = explained["base_value"] + sum(explained["contributions"].values())
        assert total == pytest.approx(explained["raw_score"], abs=1e-9)
        assert explained["raw_score"] == pytest.approx(store["raw_score"], abs=1e-9)


def test_model_route_describes_the_served_version(server, snapshot):
    base, name, _ = server
    status, info = http(base, "/model")
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
    status, answer = http(base, "/score", body)
    assert 400 <= status < 500, answer
    assert field in json.dumps(answer)


def test_nan_and_malformed_json_are_refused(server):
    base, _, _ = server
    nan = b'{"stores": [{"store_id": "a", "features": {"store_age_days": NaN}}]}'
    status, answer = http(base, "/score", raw=nan)
    assert 400 <= status < 500 and "store_age_days" in json.dumps(answer), answer
    status, answer = http(base, "/score", raw=b'{"stores": [')
    assert 400 <= status < 500, answer


def test_scoring_and_model_routes_need_the_token_health_and_metrics_do_not(server, snapshot):
    base, _, _ = server
    body = {"stores": snapshot_stores(snapshot, 1)}
    for path, payload in (("/score", body), ("/explain", body),
                          ("/score_stores", {"store_ids": ["x"]}), ("/model", None),
                          ("/report/x", None)):  # fmt: skip
        assert http(base, path, payload, token=None)[0] == 401, path
        assert http(base, path, payload, token="wrong")[0] == 401, path
    for path in ("/livez", "/readyz", "/metrics"):
        assert http(base, path, token=None)[0] == 200, path


def test_metrics_carry_the_score_distribution_and_top_reasons(server, snapshot):
    base, _, _ = server
    http(base, "/score", {"stores": snapshot_stores(snapshot, 3)})
    status, text = http(base, "/metrics", token=None)
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
        [spotcheck_command(), "serve", "--model", f"models:/{name}/1", "--port", "1",
         "--snapshot", str(skewed)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "model FeatureSpec hash" in result.stderr and "differs from the data's" in result.stderr


def test_report_route_serves_the_case_report_of_a_snapshot_store(server, snapshot):
    base, _, _ = server
    store = snapshot_stores(snapshot, 1)[0]["store_id"]
    started = time.monotonic()
    status, page = http(base, f"/report/{store}")
    took = time.monotonic() - started
    assert status == 200, page
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")
    for section in ("Raising the risk", "Evidence from the store", "Linked stores"):
        assert section in page
    assert f"Store {store}" in page
    print(f"report of {store} built and served in {took:.2f} s")
    status, answer = http(base, "/report/NO-SUCH-STORE")
    assert status == 404 and "'NO-SUCH-STORE'" in answer["error"]


def test_histories_without_a_snapshot_is_a_usage_error(cli, tmp_path):
    result = cli("serve", "--histories", tmp_path)  # refused before anything starts
    assert result.exit_code == 2
    assert "--histories goes with --snapshot" in result.stderr


def test_an_oversized_or_unsized_body_is_refused_before_it_is_read(server):
    import http.client

    base, _, _ = server
    host, port = base.removeprefix("http://").split(":")
    for headers, status, message in (
        ({"Content-Length": str(64 * 2**20)}, 413, "at most 16777216"),
        ({"Transfer-Encoding": "chunked"}, 411, "Content-Length"),
        ({"Content-Length": "10", "Content-Type": "multipart/form-data"}, 415, "application/json"),
    ):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.putrequest("POST", "/score")
            connection.putheader("Authorization", f"Bearer {TOKEN}")
            for name, value in {"Content-Type": "application/json", **headers}.items():
                connection.putheader(name, value)
            connection.endheaders()  # no body sent: the answer comes from the headers alone
            response = connection.getresponse()
            assert response.status == status
            assert message in json.loads(response.read())["error"]
        finally:
            connection.close()


def test_schema_fuzzing_finds_no_server_error(server):
    # Property-based requests from the service's own OpenAPI schema, bounded and seeded.
    base, _, _ = server
    result = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/docs.json",
         "--checks", "not_a_server_error", "--max-examples", "15", "--seed", "1",
         "--request-timeout", "20", "--header", f"Authorization: Bearer {TOKEN}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Tested: 9" in result.stdout  # every route, /model and /report included
