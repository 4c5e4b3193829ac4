"""The feature benchmark's pandas baseline computes the same features as the DuckDB build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.benchmarks.bench_features import (
    SUBSET,
    compare,
    pandas_subset,
    phase_subset_duckdb,
)


@pytest.fixture(scope="module")
def marketplace(tmp_path_factory) -> Path:
    from features.synth import generate_marketplace

    out = tmp_path_factory.mktemp("bench") / "market"
    generate_marketplace(out, 800, seed=3, start="2024-01-01", months=12)
    return out


@pytest.mark.parametrize("as_of", ["2024-08-15 12:00:00", "2025-01-01 00:00:00"])
def test_pandas_baseline_agrees_with_the_duckdb_subset(marketplace, tmp_path, as_of):
    when = pd.Timestamp(as_of)
    measured = phase_subset_duckdb(marketplace, as_of=when, out=tmp_path / "duck.parquet")
    duck = pd.read_parquet(tmp_path / "duck.parquet")
    pand = pandas_subset(marketplace, when)

    assert measured["rows"] == len(duck) == len(pand) > 100
    assert set(SUBSET) <= set(duck.columns) and set(SUBSET) <= set(pand.columns)
    agreement = compare(duck, pand)
    assert agreement["rows"] == len(duck)
    assert max(agreement["worst"].values()) < 1e-9, agreement["worst"]
    # The subset is not trivially empty: stores differ on every feature.
    assert all(duck[name].astype("float64").nunique() > 1 for name in SUBSET)


def test_compare_flags_a_feature_that_differs(marketplace):
    when = pd.Timestamp("2024-08-15 12:00:00")
    pand = pandas_subset(marketplace, when)
    changed = pand.assign(gmv=pand["gmv"] * 1.01, mean_rating=np.nan)
    worst = compare(changed, pand)["worst"]
    assert worst["gmv"] > 1e-3
    assert worst["mean_rating"] == float("inf")
    assert worst["order_count"] == 0.0
