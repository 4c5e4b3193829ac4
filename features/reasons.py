"""Turn per-feature SHAP contributions into plain-language reasons.

Lives in ``features`` because training (global reports) and serving (every score) both
need it, and neither may import the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.spec import FeatureSpec


@dataclass(frozen=True)
class Reason:
    """One reason behind a score.

    Attributes:
        feature: Feature name.
        value: The store's value of the feature.
        contribution: SHAP contribution to the raw (log-odds) score; positive raises risk.
        text: Plain-language sentence from the feature's reason template.
    """

    feature: str
    value: object
    contribution: float
    text: str


def top_reasons(
    contributions: np.ndarray,
    values: pd.DataFrame,
    spec: FeatureSpec,
    top_k: int = 3,
    min_contribution: float = 0.0,
) -> list[list[Reason]]:
    """Pick each row's strongest risk-raising features and phrase them.

    Args:
        contributions: Array (rows x features) of SHAP contributions in spec order
            (a trailing bias column, as LightGBM's ``pred_contrib`` adds, is ignored).
        values: Feature values, same rows, with the spec's columns.
        spec: The FeatureSpec the contributions follow.
        top_k: Reasons per row at most.
        min_contribution: Contributions at or below this are not reasons.

    Returns:
        One list of up to ``top_k`` reasons per row, strongest first.
    """
    contributions = np.asarray(contributions, dtype=float)
    n_features = len(spec)
    if contributions.ndim != 2 or contributions.shape[1] not in (n_features, n_features + 1):
        raise ValueError(
            f"contributions have shape {contributions.shape}, expected (rows, {n_features})"
        )
    contributions = contributions[:, :n_features]
    features = list(spec)
    value_matrix = values[spec.names].to_numpy(dtype=object)
    # argsort once for all rows; negative for descending order.
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :top_k]
    out: list[list[Reason]] = []
    for row, idx in enumerate(order):
        reasons = []
        for j in idx:
            c = float(contributions[row, j])
            if c <= min_contribution:
                break
            value = value_matrix[row, j]
            reasons.append(Reason(features[j].name, value, c, features[j].reason(value)))
        out.append(reasons)
    return out
