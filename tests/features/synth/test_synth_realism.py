"""Realism of the synthetic marketplace, measured on every feature of the built table.

At 20,000 stores and three seeds, with the truth over all stores (``synth_realism``): no
single feature gives the truth away, a linear model on the best few does not either, and a
model on all features gains well beyond the best one without saturating.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The helper next to this file (pytest puts this folder on sys.path); a script too.
from synth_realism import (
    MAX_GBM_PR_AUC,
    MAX_GBM_ROC_AUC,
    MAX_LR_TOP5_AUC,
    MAX_SINGLE_AUC,
    MIN_GBM_GAIN,
    markdown_table,
    measure_realism,
)

from features.synth.generate import generate_marketplace

N_STORES = 20_000
SEEDS = (7, 11, 23)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_no_feature_gives_the_truth_away(tmp_path_factory: pytest.TempPathFactory, seed: int):
    out: Path = tmp_path_factory.mktemp(f"realism{seed}") / "market"
    generate_marketplace(out, N_STORES, seed=seed)
    report = measure_realism(out)
    shown = (
        f"\n{markdown_table(report)}\nLR top 5: {report.lr_top5_roc_auc}, LightGBM: "
        f"{report.gbm_roc_auc} / PR {report.gbm_pr_auc}"
    )
    best = report.best_single["roc_auc"]
    assert best <= MAX_SINGLE_AUC, shown
    assert report.lr_top5_roc_auc <= MAX_LR_TOP5_AUC, shown
    assert report.gbm_roc_auc >= best + MIN_GBM_GAIN, shown
    assert report.gbm_roc_auc <= MAX_GBM_ROC_AUC, shown
    assert report.gbm_pr_auc <= MAX_GBM_PR_AUC, shown
    assert report.failures() == [], shown
    # Every feature was measured, the category included.
    assert len(report.single) == 131
    assert {row["feature"] for row in report.single} >= {"category", "mean_log_stock_per_listing"}
