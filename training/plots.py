"""Figures logged with every training run: PR and calibration curves, importance, SHAP.

Matplotlib runs on the Agg backend (no display needed). Each function returns a figure the
caller logs and closes.
"""

from __future__ import annotations

from types import ModuleType

import lightgbm as lgb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve

from features.scoring.encoding import encode_features
from features.spec import FeatureSpec

SHAP_SAMPLE_ROWS = 2000
TOP_FEATURES = 20


def _pyplot() -> ModuleType:
    """Return pyplot on the Agg backend, chosen when the first figure is drawn (not at import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def close(figure: Figure) -> None:
    """Release a figure (pyplot keeps every figure it made alive until closed)."""
    _pyplot().close(figure)


def pr_curves(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Precision-recall curves of the model and the baselines on the test set."""
    fig, ax = _pyplot().subplots(figsize=(6, 5))
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ax.plot(recall, precision, label=name)
    ax.axhline(float(np.mean(y)), color="grey", linestyle=":", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on the test set")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def calibration_curves(y: np.ndarray, probabilities: dict[str, np.ndarray]) -> Figure:
    """Reliability diagram (observed rate against mean predicted probability per bin)."""
    fig, ax = _pyplot().subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for name, p in probabilities.items():
        observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    ax.set(xlabel="mean predicted probability", ylabel="observed counterfeit rate")
    ax.set_title("Calibration on the test set")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def importance_frame(booster: lgb.Booster) -> pd.DataFrame:
    """Gain and split importance per feature, highest gain first."""
    return (
        pd.DataFrame(
            {
                "feature": booster.feature_name(),
                "gain": booster.feature_importance("gain"),
                "splits": booster.feature_importance("split"),
            }
        )
        .sort_values("gain", ascending=False, kind="stable")
        .reset_index(drop=True)
    )


def importance_chart(importance: pd.DataFrame) -> Figure:
    """Horizontal bar chart of the top features by total gain."""
    top = importance.head(TOP_FEATURES).iloc[::-1]
    fig, ax = _pyplot().subplots(figsize=(7, 0.3 * len(top) + 1.5))
    ax.barh(top["feature"], top["gain"])
    ax.set(xlabel="total gain", title="Feature importance (gain)")
    fig.tight_layout()
    return fig


def shap_beeswarm(
    booster: lgb.Booster,
    frame: pd.DataFrame,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    seed: int,
) -> Figure:
    """Global SHAP summary (beeswarm) from LightGBM's native TreeSHAP on a row sample."""
    import shap

    sample = frame.sample(n=min(SHAP_SAMPLE_ROWS, len(frame)), random_state=seed)
    matrix = encode_features(sample, spec, levels)
    contributions = booster.predict(matrix, pred_contrib=True)
    explanation = shap.Explanation(
        values=contributions[:, :-1],
        base_values=contributions[:, -1],
        data=matrix,
        feature_names=spec.names,
    )
    fig, ax = _pyplot().subplots(figsize=(8, 0.35 * min(TOP_FEATURES, len(spec)) + 2))
    shap.plots.beeswarm(explanation, max_display=TOP_FEATURES, show=False, plot_size=None, ax=ax)
    fig.tight_layout()
    return fig
