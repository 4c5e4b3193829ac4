"""A running service follows its alias: a promoted version takes over under load.

The registry gets versions of one model name: the shared test model, the same marketplace
trained with another seed, and a model built on other features. Traffic goes to 127.0.0.1
only, from a few threads, bounded in time.
"""

from __future__ import annotations

import threading
import time

import mlflow
import pytest
from serve_helpers import http, snapshot_stores, start_server

from features.scoring.model import log_scorer, scorer_of
from serving.online import load_snapshot

pytestmark = pytest.mark.slow
NAME = "t-follow"


@pytest.fixture(scope="module")
def versions(histories_model, mlflow_uri, cli, tmp_path_factory, tiny_scorer) -> dict:
    """Versions of ``NAME``: 1 the shared model, 2 another seed, 3 other features."""
    histories, shared = histories_model
    client = mlflow.MlflowClient(mlflow_uri)
    client.copy_model_version(f"models:/{shared}/1", NAME)
    root = tmp_path_factory.mktemp("follow")
    trained = cli(
        "train", "--histories", histories, "--seed", 4, "--model-name", NAME,
        "--storage", f"sqlite:///{root / 'optuna.db'}",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr or trained.output
    scorer, rows = tiny_scorer
    with mlflow.start_run():
        logged = log_scorer(scorer, rows.drop(columns=["label"], errors="ignore"))
    mlflow.register_model(logged.model_uri, NAME)
    client.set_registered_model_alias(NAME, "champion", "1")
    return {"1": f"models:/{NAME}/1", "2": f"models:/{NAME}/2", "3": f"models:/{NAME}/3"}


def _expected(uri: str, snapshot, ids: list[str]) -> tuple[float, ...]:
    scorer = scorer_of(mlflow.pyfunc.load_model(uri))
    rows, _ = load_snapshot(snapshot, scorer.spec).rows(ids)
    return tuple(s["score"] for s in scorer.score_records(rows))


def _hammer(base: str, body: dict, until: float, out: list) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        status, answer = http(base, "/score_stores", body, token=None, timeout=30)
        out.append((status, answer, time.monotonic() - started))


def _wait_for(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return False


def test_a_promoted_version_takes_over_under_load_and_a_skewed_one_is_refused(
    versions, mlflow_uri, snapshot, tmp_path
):
    ids = [s["store_id"] for s in snapshot_stores(snapshot, 3)]
    expected = {v: _expected(versions[v], snapshot, ids) for v in ("1", "2")}
    assert all(abs(a - b) > 1e-6 for a, b in zip(*expected.values(), strict=True)), expected
    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "BENTOML_HOME": str(tmp_path / "bentoml")}
    args = ["--model", f"models:/{NAME}@champion", "--follow-seconds", "1", "--snapshot"]
    server = start_server([*args, str(snapshot)], env, tmp_path / "server.log")
    client = mlflow.MlflowClient(mlflow_uri)
    try:
        results: list = []
        until = time.monotonic() + 25.0
        threads = [
            threading.Thread(target=_hammer, args=(server.base, {"store_ids": ids}, until, results))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        client.set_registered_model_alias(NAME, "champion", "2")  # what `promote` does
        assert _wait_for(lambda: http(server.base, "/model")[1]["version"] == "2", 20)
        for thread in threads:
            thread.join(timeout=60)

        assert results and {status for status, _, _ in results} == {200}
        seen = [answer["model"]["version"] for _, answer, _ in results]
        swapped = seen.index("2")
        # One version before the swap, the other after it (threads finish out of order by
        # at most the requests in flight at the swap), and every response's scores are
        # those of the version it names: no response mixes two models.
        assert set(seen[: swapped - 3]) <= {"1"} and set(seen[swapped + 3 :]) == {"2"}
        for (_, answer, _), version in zip(results, seen, strict=True):
            scores = tuple(s["score"] for s in answer["stores"])
            assert scores == pytest.approx(expected[version], abs=1e-9), version
        slowest = max(seconds for _, _, seconds in results)
        print(f"{len(results)} requests, swap after {swapped}, slowest {slowest * 1000:.0f} ms")

        info = http(server.base, "/model")[1]
        assert info["follow"]["reloads"] == 1 and info["follow"]["error"] is None

        # A version built on other features than the snapshot's: refused, the old one serves.
        client.set_registered_model_alias(NAME, "champion", "3")
        assert _wait_for(lambda: http(server.base, "/model")[1]["follow"]["error"], 30)
        info = http(server.base, "/model")[1]
        assert info["version"] == "2" and "version 3" in info["follow"]["error"]
        assert "FeatureSpec" in info["follow"]["error"], info["follow"]["error"]
        status, answer = http(server.base, "/score_stores", {"store_ids": ids})
        assert status == 200 and answer["model"]["version"] == "2"
        metrics = http(server.base, "/metrics", token=None)[1]
        assert 'spotcheck_model_reloads_total{outcome="failed"} 1.0' in metrics
        assert 'spotcheck_model_reloads_total{outcome="loaded"} 1.0' in metrics
    finally:
        server.stop()
