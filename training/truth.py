"""Honest evaluation on a synthetic marketplace: the model against the truth of every store.

A labelled holdout is small and biased (labels come from complaints and spot-checks, not a
random sample). A synthetic marketplace knows the truth for every store, so the model the
holdout is measured on (fit on the development labels only) is also measured on every store
not labelled before the test period — a large, unbiased sample — with features as of the
start of that period. The truth is used for this evaluation only: it never reaches fitting,
tuning, calibration or the promotion gates.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from features.byo import LABEL
from features.spec import AS_OF, KEY
from training.baselines import Baselines
from training.crossfit import FittedModel
from training.dataset import Split, TrainingDataError
from training.evaluate import at_budget, calibration_metrics, ranking_metrics

# Spot-check budgets (stores test-bought) at which precision is reported against the truth.
TRUTH_BUDGETS = (100, 500, 1000)


def read_truth(path: str | Path) -> pd.DataFrame:
    """``store_id`` and ``is_counterfeit`` of every store (``truth.parquet`` of ``synth``).

    Raises:
        TrainingDataError: Missing file, columns or values other than 0/1.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"truth file not found: {path}")
    truth = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    missing = [c for c in (KEY, LABEL) if c not in truth.columns]
    if missing:
        raise TrainingDataError(f"truth file {path} lacks column(s) {', '.join(missing)}")
    if not truth[LABEL].isin([0, 1]).all():
        raise TrainingDataError(f"truth file {path}: {LABEL} must be 0 or 1")
    return truth[[KEY, LABEL]].astype({KEY: "str", LABEL: "int64"})


def unlabelled_rows(histories: Path, parts: Split) -> pd.DataFrame:
    """Feature rows, as of the test period's start, of every store not labelled before it.

    Without label times the development labels' stores are left out and features are as of
    the end of the histories.
    """
    from features.build import build_feature_table

    as_of = parts.test[AS_OF].min() if parts.method == "time" else None
    table, _ = build_feature_table(histories, as_of=as_of)
    known = set(parts.development[KEY])
    return table[~table[KEY].isin(known)].reset_index(drop=True)


def evaluate(
    histories: Path,
    parts: Split,
    development: FittedModel,
    baselines: Baselines,
    truth: pd.DataFrame,
) -> dict[str, dict[str, float]]:
    """Metrics of the development model and the baselines against the truth.

    Returns:
        Per scorer: rows, true positives, ROC-AUC, PR-AUC, precision at each of
        ``TRUTH_BUDGETS``; for the model also the calibration against the truth (Brier,
        ECE, mean score against the true rate).

    Raises:
        TrainingDataError: Stores without a truth value.
    """
    rows = unlabelled_rows(histories, parts)
    y_frame = rows[[KEY]].merge(truth, on=KEY, how="left")
    if y_frame[LABEL].isna().any():
        missing = y_frame.loc[y_frame[LABEL].isna(), KEY].head(5).tolist()
        raise TrainingDataError(f"truth has no value for some scored stores, e.g. {missing}")
    y = y_frame[LABEL].to_numpy(dtype="int64")
    probability = development.scorer.score_frame(rows)["score"].to_numpy()
    scores = {"model": probability, **baselines.scores(rows)}
    out = {}
    for name, values in scores.items():
        metrics = {"rows": float(len(y)), "positives": float(y.sum())}
        ranking = ranking_metrics(y, values)
        metrics.update({k: ranking[k] for k in ("roc_auc", "pr_auc")})
        for k in TRUTH_BUDGETS:
            if k <= len(y):
                metrics[f"precision_at_{k}"] = at_budget(y, values, k)[0]
        out[name] = metrics
    out["model"].update(calibration_metrics(y, probability))
    out["model"]["mean_score"] = float(np.mean(probability))
    out["model"]["true_rate"] = float(np.mean(y))
    return out


def log(metrics: dict[str, dict[str, float]]) -> None:
    """Log the truth metrics as ``truth.<scorer>.<metric>``."""
    mlflow.log_metrics(
        {
            f"truth.{who}.{name}": float(value)
            for who, values in metrics.items()
            for name, value in values.items()
            if np.isfinite(value)
        }
    )
