"""The service under sustained traffic: a snapshot swapped mid-stream, memory over a soak.

Traffic goes to 127.0.0.1 only, from a few threads, bounded in count and time.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from serve_helpers import http, snapshot_stores, start_server

from features.io import write_table

pytestmark = pytest.mark.slow
WARM_UP_SECONDS = 20.0
SOAK_SECONDS = 60.0
MAX_GROWTH = 0.10


def _server(histories_model, mlflow_uri, tmp_path, *args: str):
    _, name = histories_model
    env = {"MLFLOW_TRACKING_URI": mlflow_uri, "BENTOML_HOME": str(tmp_path / "bentoml")}
    return start_server(["--model", f"models:/{name}/1", *args], env, tmp_path / "server.log")


def _hammer(base: str, path: str, body: dict, until: float, out: list) -> None:
    while time.monotonic() < until:
        out.append(http(base, path, body, token=None, timeout=30))


def test_a_snapshot_replaced_under_load_drops_nothing_and_never_mixes(
    histories_model, mlflow_uri, tmp_path, snapshot
):
    path = tmp_path / "features.parquet"
    shutil.copy(snapshot, path)
    shutil.copy(f"{snapshot}.spec.json", f"{path}.spec.json")
    ids = [s["store_id"] for s in snapshot_stores(snapshot, 3)]
    server = _server(histories_model, mlflow_uri, tmp_path, "--snapshot", str(path))
    try:
        body = {"store_ids": ids}
        results: list = []
        until = time.monotonic() + 6.0
        threads = [
            threading.Thread(
                target=_hammer, args=(server.base, "/score_stores", body, until, results)
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        # The batch pipeline writes the next snapshot (atomically, as every spotcheck writer):
        # every store's age and reviews changed, so every score moves.
        table = pd.read_parquet(path)
        table["store_age_days"] = 1.0
        spec_text = Path(f"{path}.spec.json").read_text()
        write_table(table, path, sidecars={Path(f"{path}.spec.json"): spec_text})
        for thread in threads:
            thread.join(timeout=60)
        statuses = [status for status, _ in results]
        assert statuses and set(statuses) == {200}, set(statuses)
        patterns = [tuple(round(s["score"], 12) for s in a["stores"]) for _, a in results]
        distinct = list(dict.fromkeys(patterns))
        # Before the swap one set of scores, after it another, nothing in between.
        assert len(distinct) == 2, distinct
        old, new = distinct
        assert all(a != b for a, b in zip(old, new, strict=True))
        swapped = patterns.index(new)
        assert set(patterns[:swapped]) == {old} and set(patterns[swapped:]) <= {old, new}
        assert patterns[-1] == new
        print(f"{len(results)} requests, swap after {swapped}")
    finally:
        server.stop()


def _rss(pid: int) -> int:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def test_memory_stays_flat_over_a_soak(histories_model, mlflow_uri, tmp_path, snapshot):
    server = _server(histories_model, mlflow_uri, tmp_path)
    stores = snapshot_stores(snapshot, 200)
    bodies = [{"stores": [s]} for s in stores]
    try:
        # Warm up with the soak's own traffic: allocator arenas and caches fill first.
        _traffic(server.base, bodies, WARM_UP_SECONDS, [])
        before = _rss(server.process.pid)
        results: list = []
        samples = _traffic(server.base, bodies, SOAK_SECONDS, results, server.process.pid)
        after = _rss(server.process.pid)
        statuses = {status for status, _ in results}
        assert statuses == {200}, statuses
        growth = (after - before) / before
        print(json.dumps({"requests": len(results), "rss_mb": [round(m / 2**20) for m in
                          [before, *samples, after]], "growth": round(growth, 4)}))  # fmt: skip
        assert growth < MAX_GROWTH, (before, after)
    finally:
        server.stop()


def _traffic(base: str, bodies: list[dict], seconds: float, out: list, pid: int | None = None):
    """Two client threads for ``seconds``; the server's RSS every 10 s if ``pid`` is given."""
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_soak, args=(base, bodies, until, out)) for _ in range(2)]
    for thread in threads:
        thread.start()
    samples = []
    while pid and time.monotonic() < until - 10:
        time.sleep(10)
        samples.append(_rss(pid))
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return samples


def _soak(base: str, bodies: list[dict], until: float, out: list) -> None:
    i = 0
    while time.monotonic() < until:
        out.append(http(base, "/score", bodies[i % len(bodies)], token=None, timeout=30))
        i += 1
