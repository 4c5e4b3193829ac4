"""Turn per-feature SHAP contributions into plain-language reasons.

Lives in ``features.scoring`` because every score carries its reasons, wherever it is made
(batch file, CLI, service), and the model travels with only this subpackage as code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from features.spec import Feature, FeatureSpec

TOP_REASONS = 3
REASON_COLUMNS = [f"reason_{i}" for i in range(1, TOP_REASONS + 1)]


@dataclass(frozen=True)
class Reason:
    """One reason behind a score.

    Attributes:
        feature: Feature name.
        value: The store's value of the feature, as people read it (counts as ints,
            flags as booleans, missing as None).
        contribution: SHAP contribution to the raw (log-odds) score; positive raises risk.
        text: Plain-language sentence from the feature's reason template.
    """

    feature: str
    value: object
    contribution: float
    text: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (contribution rounded to 6 decimals)."""
        return {
            "feature": self.feature,
            "value": self.value,
            "contribution": round(self.contribution, 6),
            "text": self.text,
        }


def display_value(feature: Feature, encoded: float, category: object = None) -> object:
    """A feature value as people read it, from its encoded float (or its category text).

    Args:
        feature: The spec entry.
        encoded: The value in the model's float matrix.
        category: The store's original level, for a categorical feature.
    """
    if feature.dtype == "category":
        return None if category is None or category != category else str(category)
    if encoded != encoded:  # NaN: missing
        return None
    if feature.dtype == "int":
        return int(encoded)
    if feature.dtype == "bool":
        return bool(encoded)
    return float(encoded)


def top_reasons(
    contributions: np.ndarray,
    matrix: np.ndarray,
    spec: FeatureSpec,
    categories: Mapping[int, Sequence[object]] | None = None,
    top_k: int = TOP_REASONS,
    min_contribution: float = 0.0,
) -> list[list[Reason]]:
    """Pick each row's strongest risk-raising features and phrase them.

    Args:
        contributions: Array (rows x features) of SHAP contributions in spec order
            (a trailing bias column, as LightGBM's ``pred_contrib`` adds, is ignored).
        matrix: The encoded feature values, same rows and columns.
        spec: The FeatureSpec the contributions follow.
        categories: Original levels of the categorical features, by column index.
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
    categories = categories or {}
    # argsort once for all rows; negative for descending order, stable for equal values.
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :top_k]
    out: list[list[Reason]] = []
    for row, idx in enumerate(order):
        reasons = []
        for j in idx:
            c = float(contributions[row, j])
            if c <= min_contribution:
                break
            level = categories[j][row] if j in categories else None
            value = display_value(features[j], matrix[row, j], level)
            reasons.append(Reason(features[j].name, value, c, features[j].reason(value)))
        out.append(reasons)
    return out


def reason_columns(per_row: list[list[Reason]]) -> dict[str, list[str]]:
    """Columns ``reason_1..3`` (text, empty if fewer) and ``reasons`` (JSON list) per row."""
    columns: dict[str, list[str]] = {name: [] for name in [*REASON_COLUMNS, "reasons"]}
    for reasons in per_row:
        for i, name in enumerate(REASON_COLUMNS):
            columns[name].append(reasons[i].text if i < len(reasons) else "")
        columns["reasons"].append(json.dumps([r.to_dict() for r in reasons]))
    return columns
