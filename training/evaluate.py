"""Test-set metrics: ranking quality, spot-check budgets, calibration and per-category slices.

Ranking metrics are computed on whatever orders the stores: for the tuned model that is the
raw log-odds, because the delivered ranking sorts by calibrated score and breaks the ties an
isotonic calibrator creates with the raw score, which is the same order.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from training.settings import BUDGET_FRACTIONS

CALIBRATION_BINS = 10


def budget_label(fraction: float) -> str:
    """Metric-name label of a budget share, e.g. 0.005 -> ``0.5pct``."""
    return f"{fraction * 100:g}pct"


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores; ties keep input order (deterministic)."""
    return np.argsort(-np.asarray(scores, dtype="float64"), kind="stable")[:k]


def at_budget(y: np.ndarray, scores: np.ndarray, k: int) -> tuple[float, float]:
    """Precision and recall when spot-checking the ``k`` top-scored stores."""
    k = max(1, min(int(k), len(y)))
    hits = float(np.asarray(y)[_top(scores, k)].sum())
    positives = float(np.sum(y))
    return hits / k, (hits / positives if positives else float("nan"))


def ranking_metrics(y: np.ndarray, scores: np.ndarray, budget: int | None = None) -> dict:
    """ROC-AUC, PR-AUC and precision/recall at the spot-check budgets.

    Args:
        y: 0/1 labels.
        scores: Any score, higher = riskier.
        budget: Absolute number of stores to spot-check, besides the share budgets.

    Returns:
        ``{metric name: value}``.
    """
    y = np.asarray(y, dtype="int64")
    scores = np.asarray(scores, dtype="float64")
    both = 0 < y.sum() < len(y)
    out = {
        "roc_auc": float(roc_auc_score(y, scores)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, scores)) if both else float("nan"),
    }
    for fraction in BUDGET_FRACTIONS:
        k = math.ceil(fraction * len(y))
        (
            out[f"precision_at_{budget_label(fraction)}"],
            out[f"recall_at_{budget_label(fraction)}"],
        ) = at_budget(y, scores, k)
    if budget:
        out["precision_at_budget"], out["recall_at_budget"] = at_budget(y, scores, budget)
    return out


def expected_calibration_error(
    y: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Share-weighted mean |mean predicted - observed rate| over equal-width probability bins."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(probabilities, dtype="float64")
    which = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(which):
        mask = which == b
        error += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(error)


def calibration_metrics(y: np.ndarray, probabilities: np.ndarray) -> dict:
    """Brier score and expected calibration error of probabilities."""
    return {
        "brier": float(brier_score_loss(y, probabilities)),
        "ece": expected_calibration_error(y, probabilities),
    }


def evaluate_probabilities(
    y: np.ndarray, ranking: np.ndarray, probabilities: np.ndarray, budget: int | None = None
) -> dict:
    """All test metrics of a probabilistic model (ranking by ``ranking``)."""
    return {**ranking_metrics(y, ranking, budget), **calibration_metrics(y, probabilities)}


def _metric_safe(value: object) -> str:
    return re.sub(r"[^\w\-. /]", "_", str(value)) or "_"


def slice_metrics(
    values: pd.Series, y: np.ndarray, ranking: np.ndarray, probabilities: np.ndarray
) -> pd.DataFrame:
    """Per-slice (e.g. store category) rows, positives, PR-AUC, ROC-AUC, Brier and ECE.

    Args:
        values: The slicing column of the test rows (missing values form their own slice).
        y: Labels.
        ranking: Ranking score.
        probabilities: Calibrated probabilities.

    Returns:
        One row per slice, sorted by slice name.
    """
    keys = values.astype(object).where(values.notna(), "(missing)").astype(str).to_numpy()
    y = np.asarray(y)
    rows = []
    for key in sorted(set(keys)):
        mask = keys == key
        metrics = ranking_metrics(y[mask], ranking[mask])
        rows.append(
            {
                "slice": key,
                "rows": int(mask.sum()),
                "positives": int(y[mask].sum()),
                "pr_auc": metrics["pr_auc"],
                "roc_auc": metrics["roc_auc"],
                **calibration_metrics(y[mask], probabilities[mask]),
            }
        )
    return pd.DataFrame(rows)


def slice_metric_dict(slices: pd.DataFrame, column: str) -> dict[str, float]:
    """Flatten slice rows into MLflow metric names like ``slice.category.apparel.pr_auc``."""
    out = {}
    for row in slices.to_dict("records"):
        prefix = f"slice.{_metric_safe(column)}.{_metric_safe(row['slice'])}"
        for name in ("rows", "positives", "pr_auc", "roc_auc", "brier", "ece"):
            if not (isinstance(row[name], float) and math.isnan(row[name])):
                out[f"{prefix}.{name}"] = float(row[name])
    return out
