"""Figures logged with every training run: curves, importance and SHAP explanations.

PR and calibration curves, gain importance, the SHAP beeswarm, dependence plots of the top
features and group importance.

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


def shap_sample(
    booster: lgb.Booster,
    frame: pd.DataFrame,
    spec: FeatureSpec,
    levels: dict[str, list[str]],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded row sample and its SHAP contributions (LightGBM's native TreeSHAP).

    Returns:
        The encoded sample (rows x features) and its contributions (rows x features + bias).
    """
    sample = frame.sample(n=min(SHAP_SAMPLE_ROWS, len(frame)), random_state=seed)
    matrix = encode_features(sample, spec, levels)
    return matrix, booster.predict(matrix, pred_contrib=True)


def _explanation(matrix: np.ndarray, contributions: np.ndarray, spec: FeatureSpec):
    import shap

    return shap.Explanation(
        values=contributions[:, :-1],
        base_values=contributions[:, -1],
        data=matrix,
        feature_names=spec.names,
    )


def shap_beeswarm(matrix: np.ndarray, contributions: np.ndarray, spec: FeatureSpec) -> Figure:
    """Global SHAP summary (beeswarm) of a sample's contributions."""
    import shap

    fig, ax = _pyplot().subplots(figsize=(8, 0.35 * min(TOP_FEATURES, len(spec)) + 2))
    shap.plots.beeswarm(
        _explanation(matrix, contributions, spec),
        max_display=TOP_FEATURES,
        show=False,
        plot_size=None,
        ax=ax,
    )
    fig.tight_layout()
    return fig


def top_shap_features(contributions: np.ndarray, spec: FeatureSpec, count: int) -> list[str]:
    """The ``count`` features with the largest mean |SHAP| (ties in spec order)."""
    mean_abs = np.abs(contributions[:, :-1]).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")[:count]
    return [spec.names[j] for j in order if mean_abs[j] > 0]


def shap_dependence(
    matrix: np.ndarray, contributions: np.ndarray, spec: FeatureSpec, feature: str
) -> Figure:
    """SHAP dependence of one feature: its value against its contribution.

    Coloured by the feature it interacts with most (shap's own choice).
    """
    import shap

    explanation = _explanation(matrix, contributions, spec)
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    shap.plots.scatter(explanation[:, feature], color=explanation, show=False, ax=ax)
    ax.set_title(f"SHAP dependence: {feature}")
    fig.tight_layout()
    return fig


def group_importance_frame(contributions: np.ndarray, spec: FeatureSpec) -> pd.DataFrame:
    """Mean |SHAP| per feature group, largest first.

    A group's contributions are summed per row first, so correlated features that split the
    credit are read together.
    """
    per_feature = pd.DataFrame(contributions[:, :-1], columns=spec.names)
    group_of = {f.name: f.group for f in spec}
    per_group = per_feature.T.groupby(group_of).sum().T
    return (
        pd.DataFrame(
            {
                "group": per_group.columns,
                "mean_abs_shap": per_group.abs().mean().to_numpy(),
                "mean_shap": per_group.mean().to_numpy(),
                "features": [sum(g == name for g in group_of.values()) for name in per_group],
            }
        )
        .sort_values("mean_abs_shap", ascending=False, kind="stable")
        .reset_index(drop=True)
    )


def group_importance_chart(groups: pd.DataFrame) -> Figure:
    """Horizontal bars of mean |SHAP| per feature group."""
    ordered = groups.iloc[::-1]
    fig, ax = _pyplot().subplots(figsize=(7, 0.35 * len(ordered) + 1.5))
    ax.barh(ordered["group"], ordered["mean_abs_shap"])
    ax.set(xlabel="mean |SHAP| of the group (log-odds)", title="Feature group importance")
    fig.tight_layout()
    return fig
