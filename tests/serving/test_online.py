"""The service's plain-Python parts: request checks and the reloadable feature snapshot."""

from __future__ import annotations

import os
import time

import pytest

from features.io import write_table
from serving import ServingError
from serving.online import (
    REQUEST_DEADLINE,
    RequestError,
    Unavailable,
    WorkLimit,
    check_stores,
    load_snapshot,
)


def test_values_are_checked_against_each_feature_type(tiny_scorer):
    scorer, _ = tiny_scorer
    spec = scorer.spec
    good = {"n": 3, "flag": True, "kind": "a", "x": -1.5}
    assert check_stores([{"features": good}, {"features": {}}], spec) == [good, {}]
    assert check_stores([{"features": {"n": 2.0, "flag": 0, "x": None}}], spec)
    for features, problem in (
        ({"n": 2.5}, "stores[0].features.n: expected a whole number, got 2.5"),
        ({"flag": "yes"}, "stores[0].features.flag: expected true or false"),
        ({"kind": 1}, "stores[0].features.kind: expected a string category"),
        ({"x": float("nan")}, "stores[0].features.x: expected a finite number"),
        ({"x": True}, "stores[0].features.x: expected a number"),
        ({"y": 1, "z": 2}, "stores[0].features: unknown feature(s) 'y', 'z'"),
    ):
        with pytest.raises(RequestError) as caught:
            check_stores([{"features": features}], spec)
        assert str(caught.value).startswith(problem), caught.value
    with pytest.raises(RequestError, match="the batch is empty"):
        check_stores([], spec)
    with pytest.raises(RequestError, match="1001 stores, at most 1000"):
        check_stores([{"features": {}}] * 1001, spec)


def _write_snapshot(path, frame, spec) -> None:
    write_table(frame, path)
    path.with_name(path.name + ".spec.json").write_text(spec.to_json())


def test_the_snapshot_reloads_whole_when_its_file_changes(tiny_scorer, tmp_path):
    scorer, frame = tiny_scorer
    table = frame.head(3).assign(store_id=["s1", "s2", "s3"])
    path = tmp_path / "features.parquet"
    _write_snapshot(path, table, scorer.spec)
    snapshot = load_snapshot(path, scorer.spec)
    rows, unknown = snapshot.rows(["s2", "nope"])
    assert unknown == ["nope"] and rows[0]["x"] == pytest.approx(table["x"].iloc[1])
    assert not snapshot.reload_if_changed()
    _write_snapshot(path, table.assign(x=42.0), scorer.spec)
    os.utime(path, ns=(snapshot.mtime_ns + 10**9, snapshot.mtime_ns + 10**9))
    assert snapshot.reload_if_changed()
    assert [r["x"] for r in snapshot.rows(["s1", "s3"])[0]] == [42.0, 42.0]
    # A replacement built with other features is not loaded; the one in hand serves on.
    other = scorer.spec.select(["n", "flag", "kind"])
    _write_snapshot(path, table.assign(x=7.0), other)
    os.utime(path, ns=(snapshot.mtime_ns + 2 * 10**9, snapshot.mtime_ns + 2 * 10**9))
    assert not snapshot.reload_if_changed()
    assert "replacement not loaded" in snapshot.error and snapshot.info["error"]
    assert snapshot.rows(["s1"])[0][0]["x"] == 42.0
    _write_snapshot(path, table.assign(x=8.0), scorer.spec)
    os.utime(path, ns=(snapshot.mtime_ns + 3 * 10**9, snapshot.mtime_ns + 3 * 10**9))
    assert snapshot.reload_if_changed() and snapshot.error is None
    assert snapshot.rows(["s1"], names=["x"])[0] == [{"x": 8.0}]
    path.unlink()  # gone (e.g. mid-replace): the snapshot in hand keeps serving
    assert not snapshot.reload_if_changed()
    assert snapshot.rows(["s1"])[0][0]["x"] == 8.0


def test_a_snapshot_without_its_spec_or_with_another_is_refused(tiny_scorer, tmp_path):
    scorer, frame = tiny_scorer
    path = tmp_path / "features.parquet"
    write_table(frame.assign(store_id="s"), path)
    with pytest.raises(ServingError, match="has no FeatureSpec"):
        load_snapshot(path, scorer.spec)
    other = scorer.spec.select(["n", "flag", "kind"])
    path.with_name(path.name + ".spec.json").write_text(other.to_json())
    with pytest.raises(ServingError, match="the data has no feature"):
        load_snapshot(path, scorer.spec)
    with pytest.raises(ServingError, match="does not exist"):
        load_snapshot(tmp_path / "missing.parquet", scorer.spec)


def test_the_work_limit_refuses_past_its_limit_and_past_the_deadline():
    seen = []
    work = WorkLimit(2, lambda w: seen.append((w.running, w.peak, w.refused)))
    with work.slot(), work.slot():
        with pytest.raises(Unavailable, match="busy: 2 requests running"), work.slot():
            pass
        assert (work.running, work.peak, work.refused) == (2, 2, 1)
    assert work.running == 0 and seen[-1] == (0, 2, 1)
    token = REQUEST_DEADLINE.set(time.monotonic() - 0.01)
    try:
        with pytest.raises(Unavailable, match="passed its timeout"), work.slot():
            pass
    finally:
        REQUEST_DEADLINE.reset(token)
    with work.slot():  # no deadline set: outside a request nothing expires
        assert work.running == 1
