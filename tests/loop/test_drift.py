"""Drift: the indexes and the correction on known answers, and a report on shifted data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.build import write_feature_table
from loop import LoopError
from loop.drift import (
    DriftThresholds,
    benjamini_hochberg,
    category_psi,
    drift_report,
    psi,
)
from loop.monitor import run_drift


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 20000), rng.normal(0, 1, 20000)
    assert psi(a, b) < 0.01
    assert 0.1 < psi(a, rng.normal(0.5, 1, 20000)) < 0.5
    assert psi(a, rng.normal(2, 1, 20000)) > 1.0
    # Missing values are a bin of their own: more of them is a shift too.
    assert psi(a, np.where(rng.random(20000) < 0.3, np.nan, b)) > 0.25
    same = pd.Series(["a", "b"] * 500)
    assert category_psi(same, same) == pytest.approx(0.0)
    # Shares 0.5/0.5 -> 0.9/0.1: (0.4 ln 1.8) + (-0.4 ln 0.2) = 0.879.
    shifted = pd.Series(["a"] * 900 + ["b"] * 100)
    assert category_psi(same, shifted) == pytest.approx(0.4 * np.log(1.8) - 0.4 * np.log(0.2))


def test_benjamini_hochberg_on_a_worked_example():
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5]))
    assert q == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])


def test_thresholds_are_checked():
    with pytest.raises(LoopError, match="psi-warn <= psi-alert"):
        DriftThresholds(psi_warn=0.3, psi_alert=0.2)
    assert [DriftThresholds().level(v) for v in (0.05, 0.1, 0.3)] == ["ok", "warn", "alert"]


def _shifted(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tiny scorer's rows twice over, the second copy with ``x`` moved up by 2."""
    rng = np.random.default_rng(seed)
    reference = frame.sample(4000, replace=True, random_state=seed).reset_index(drop=True)
    reference["store_id"] = [f"s{i}" for i in range(len(reference))]
    current = reference.copy()
    current["x"] = current["x"] + 2 + rng.normal(0, 0.1, len(current))
    return reference, current


def test_a_shifted_feature_is_flagged_and_ranked_by_the_model_reliance(tiny_scorer):
    scorer, frame = tiny_scorer
    reference, current = _shifted(frame, 1)
    report = drift_report(reference, current, scorer.spec, DriftThresholds(), scorer)
    table = report["features"].set_index("feature")
    assert bool(table.loc["x", "drifts"]) and table.loc["x", "level"] == "alert"
    assert not table.drop(index="x")["drifts"].any()  # the same rows: nothing else moved
    assert report["features"]["feature"].iloc[0] == "x"
    assert table["attribution_share"].sum() == pytest.approx(1.0)
    assert report["score_psi"] > 0.1 and report["status"] == "alert"
    assert report["reasons"]["reference_share"].sum() == pytest.approx(1.0)
    unchanged = drift_report(reference, reference, scorer.spec, DriftThresholds(), scorer)
    assert unchanged["status"] == "ok" and unchanged["score_psi"] < 1e-9


def test_drift_end_to_end_writes_its_page_and_logs_a_run(tiny_scorer, tracking, tmp_path):
    import mlflow

    scorer, frame = tiny_scorer
    reference, current = _shifted(frame, 2)
    for name, table in (("ref", reference), ("cur", current)):
        write_feature_table(table[["store_id", *scorer.spec.names]], scorer.spec,
                            tmp_path / f"{name}.parquet")  # fmt: skip
    labels = tmp_path / "labels.parquet"
    pd.DataFrame({"store_id": reference["store_id"][:50], "is_counterfeit": 1}).to_parquet(labels)
    out = tmp_path / "drift"
    report, run_id = run_drift(tmp_path / "ref.parquet", tmp_path / "cur.parquet", None, labels,
                               DriftThresholds(), out)  # fmt: skip
    summary = json.loads((out / "drift.json").read_text())
    assert summary["drifting_features"] == ["x"] and summary["drifting_among_counterfeit"] == ["x"]
    assert "status: <b>alert</b>" in (out / "drift.html").read_text()
    run = mlflow.get_run(run_id)
    assert run.data.metrics["features_drifting"] == 1
    assert run.data.tags["spotcheck.drift_status"] == "alert"
    other = scorer.spec.select(["n", "flag", "kind"])
    write_feature_table(current[["store_id", "n", "flag", "kind"]], other, tmp_path / "o.parquet")
    with pytest.raises(LoopError, match="different FeatureSpecs"):
        run_drift(tmp_path / "ref.parquet", tmp_path / "o.parquet", None, None,
                  DriftThresholds(), tmp_path / "bad")  # fmt: skip
    assert not (tmp_path / "bad").exists()
