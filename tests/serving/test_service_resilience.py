"""The service under pressure: fast 429s past its concurrency, recovery, a graceful stop.

Traffic goes to 127.0.0.1 only and is bounded: a few dozen requests, each with a timeout.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_helpers import http, snapshot_stores, start_server

pytestmark = pytest.mark.slow
BATCH = 1000  # stores per request: long enough (~0.3-1 s) to keep the server busy


@pytest.fixture(scope="module")
def batch(snapshot):
    stores = snapshot_stores(snapshot, BATCH)
    # The test marketplace has 2,500 stores: a full batch of distinct ids is available.
    assert len(stores) == BATCH
    return {"stores": stores}


def _server(histories_model, mlflow_uri, tmp_path, *args: str):
    _, name = histories_model
    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "BENTOML_HOME": str(tmp_path / "bentoml")}
    return start_server(["--model", f"models:/{name}/1", *args], env, tmp_path / "server.log")


def _timed(base: str, body: dict) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = http(base, "/score", body, token=None, timeout=60)
    return status, time.monotonic() - started


def test_past_its_concurrency_the_service_answers_429_at_once_and_recovers(
    histories_model, mlflow_uri, tmp_path, batch, snapshot
):
    server = _server(histories_model, mlflow_uri, tmp_path, "--max-concurrency", "2")
    single = {"stores": snapshot_stores(snapshot, 1)}
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            # Two 1,000-store batches fill both slots; small probes arrive while they run.
            # (Probes are small: a rejected request is answered before its body is read and
            # the connection closed, so a large rejected body reaches the client as a reset.)
            heavy = [pool.submit(_timed, server.base, batch) for _ in range(2)]
            time.sleep(0.15)
            probes = list(pool.map(lambda _: _timed(server.base, single), range(6)))
            heavy_results = [h.result(timeout=90) for h in heavy]
        assert [s for s, _ in heavy_results] == [200, 200], heavy_results
        statuses = [s for s, _ in probes]
        assert set(statuses) <= {200, 429}, statuses  # nothing else: no 5xx, no timeout
        assert statuses.count(429) >= 1, (statuses, heavy_results)
        rejected = [t for s, t in probes if s == 429]
        # Refused at once rather than queued behind the work in flight.
        assert max(rejected) < 0.5 * min(t for _, t in heavy_results), (rejected, heavy_results)
        # Load gone: every request is served again.
        assert [_timed(server.base, batch)[0] for _ in range(2)] == [200, 200]
        assert [_timed(server.base, single)[0] for _ in range(3)] == [200, 200, 200]
    finally:
        server.stop()


def test_sigterm_drains_requests_in_flight(histories_model, mlflow_uri, tmp_path, batch):
    server = _server(histories_model, mlflow_uri, tmp_path)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            pending = [pool.submit(_timed, server.base, batch) for _ in range(4)]
            time.sleep(0.3)  # the requests are in flight
            stopped_at = time.monotonic()
            returncode = server.stop(timeout=60)
            results = [p.result(timeout=90) for p in pending]
        assert [s for s, _ in results] == [200] * 4, results
        assert time.monotonic() - stopped_at < 60
        assert returncode is not None
    finally:
        server.stop()


def _metric(base: str, name: str) -> float:
    text = http(base, "/metrics", token=None)[1]
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))


def test_timed_out_requests_leave_no_work_running_past_the_limit(
    histories_model, mlflow_uri, tmp_path, batch, snapshot
):
    # BentoML answers 504 at the timeout and frees the slot while the handler runs on; 8
    # clients of 1,000-store requests (~0.5 s each) against a 1 s timeout keep timing out.
    # Without the service's own limit and deadline checks 19 requests' work ran at once
    # here (limit 4) and went on for 6.5 s after the last answer.
    server = _server(
        histories_model, mlflow_uri, tmp_path, "--timeout", "1", "--max-concurrency", "4"
    )
    statuses: list = []

    def client(until: float) -> None:
        while time.monotonic() < until:
            try:
                statuses.append(http(server.base, "/score", batch, token=None, timeout=30)[0])
            except OSError:  # a 429 answered before the body was read: reset (see above)
                statuses.append("reset")

    try:
        until = time.monotonic() + 6.0
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(client, [until] * 8))
        answered_at = time.monotonic()
        assert 504 in statuses, statuses
        assert set(statuses) <= {200, 429, 503, 504, "reset"}, statuses
        assert _metric(server.base, "spotcheck_work_peak") <= 4
        # The work of the timed-out requests stops within a chunk, not at its end.
        while _metric(server.base, "spotcheck_work_running") > 0:
            assert time.monotonic() - answered_at < 1.0, "work still running after 1 s"
            time.sleep(0.05)
        single = {"stores": snapshot_stores(snapshot, 1)}
        assert _timed(server.base, single)[0] == 200
    finally:
        server.stop()
