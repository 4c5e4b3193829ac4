"""Test-set metrics: ranking quality, spot-check budgets, calibration and per-category slices.

Ranking metrics are computed on whatever orders the stores: for the tuned model that is the
raw log-odds, because the delivered ranking sorts by calibrated score and breaks the ties an
isotonic calibrator creates with the raw score, which is the same order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from training.settings import BUDGET_FRACTIONS

CALIBRATION_BINS = 10
# A share budget is reported only when it covers at least this many stores: on a 178-row
# holdout 0.5% is one store, and its precision of 0 or 1 means nothing.
MIN_BUDGET_STORES = 20


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

    Share budgets (0.5/1/2% of the rows) are left out where they cover fewer than
    ``MIN_BUDGET_STORES`` stores.

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
        if k < MIN_BUDGET_STORES:
            continue
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


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def _resamples(n: int, samples: int, seed: int) -> np.ndarray:
    """Row indices of ``samples`` bootstrap resamples (seeded: the same rows give the same)."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def pr_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (PR-AUC), NaN when the rows hold a single class."""
    y = np.asarray(y)
    return float(average_precision_score(y, scores)) if 0 < y.sum() < len(y) else float("nan")


def paired_difference(
    y: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    metric: str = "pr_auc",
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Bootstrap interval of ``metric(first) - metric(second)`` over the same resampled rows.

    Pairing (both scorers on each resample) cancels the variation the two share, so the
    interval is far narrower than two separate ones.

    Args:
        y: 0/1 labels.
        first: Scores of the first scorer.
        second: Scores of the second scorer, same rows.
        metric: ``pr_auc`` or ``ece`` (then scores must be probabilities).
        samples: Bootstrap resamples.
        seed: Resampling seed.
        level: Confidence level of the percentile interval.
    """
    y, first, second = (np.asarray(a, dtype="float64") for a in (y, first, second))
    fn = pr_auc if metric == "pr_auc" else expected_calibration_error
    differences = [
        fn(y[rows], first[rows]) - fn(y[rows], second[rows])
        for rows in _resamples(len(y), samples, seed)
    ]
    return _interval(fn(y, first) - fn(y, second), differences, level)


def bootstrap(
    y: np.ndarray,
    scores: np.ndarray,
    metric: str = "ece",
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Bootstrap interval of one scorer's ``metric`` (``pr_auc`` or ``ece``)."""
    y, scores = np.asarray(y, dtype="float64"), np.asarray(scores, dtype="float64")
    fn = pr_auc if metric == "pr_auc" else expected_calibration_error
    values = [fn(y[rows], scores[rows]) for rows in _resamples(len(y), samples, seed)]
    return _interval(fn(y, scores), values, level)


def _interval(estimate: float, values: list[float], level: float) -> Interval:
    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]  # resamples with one class have no PR-AUC
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan, np.nan)
    return Interval(float(estimate), float(low), float(high))
