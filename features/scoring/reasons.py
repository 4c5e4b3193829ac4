"""Turn per-feature SHAP contributions into plain-language reasons, both ways.

Every score is explained additively in log-odds: ``base_value + sum(contributions) ==
raw_score`` (TreeSHAP). From the contributions each row gets its strongest risk-raising
reasons, its strongest mitigating ones, and the contributions summed per feature group (so
correlated features that split the credit are read together). A reason says what the store's
value is, what is normal among genuine stores (``features.scoring.reference``), where the
store sits among them, how much the feature moved the score and, for link features, how many
linked stores and known counterfeit ones lie behind it.

Lives in ``features.scoring`` because every score carries its reasons, wherever it is made
(batch file, CLI, service), and the model travels with only this subpackage as code.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from features.scoring.reference import GenuineReference
from features.spec import Feature, FeatureSpec

RISK_REASONS = 5
MITIGATING_REASONS = 3
REASON_COLUMNS = [f"reason_{i}" for i in range(1, 4)]
EXPLANATION_COLUMNS = ["base_value", *REASON_COLUMNS, "reasons", "mitigating", "groups"]
# |contribution| in log-odds at which the impact level reaches 1, 2, 3, 4 and 5: 0.05 moves
# a 50% probability by about one point, 1.0 by about 23 points.
IMPACT_THRESHOLDS = (0.05, 0.1, 0.25, 0.5, 1.0)
# Contributions smaller than this (log-odds) move no score visibly and are no reason.
MIN_CONTRIBUTION = 1e-6
LINK_GROUP = "link_graph"
LINKED_STORES = "link_linked_stores"
KNOWN_COUNTERFEIT = "link_known_counterfeit"


@dataclass(frozen=True)
class Reason:
    """One reason behind a score.

    Attributes:
        feature: Feature name.
        group: The feature's group (pricing, link_graph, ...).
        value: The store's value, as people read it (counts as ints, flags as booleans,
            categories as their level, missing as None).
        normal: What is normal among genuine stores (median, share true, most common
            level); None when the model carries no reference.
        percentile: Where the value sits among genuine stores (0-100), numeric features only.
        contribution: SHAP contribution to the raw (log-odds) score; positive raises risk.
        impact: 0-5, from ``|contribution|`` (``IMPACT_THRESHOLDS``).
        text: Plain-language sentence from the feature's reason template, with the normal.
        linked_stores: For link-graph reasons, the stores linked to this one.
        known_counterfeit: For link-graph reasons, how many of those are known counterfeit.
    """

    feature: str
    group: str
    value: object
    normal: object
    percentile: float | None
    contribution: float
    impact: int
    text: str
    linked_stores: int | None = None
    known_counterfeit: int | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (contribution rounded to 6 decimals; link counts when present)."""
        out: dict[str, object] = {
            "feature": self.feature,
            "group": self.group,
            "value": self.value,
            "normal": self.normal,
            "percentile": self.percentile,
            "contribution": round(self.contribution, 6),
            "impact": self.impact,
            "text": self.text,
        }
        if self.linked_stores is not None:
            out["linked_stores"] = self.linked_stores
            out["known_counterfeit"] = self.known_counterfeit
        return out


@dataclass(frozen=True)
class Explanation:
    """One row's explanation.

    Attributes:
        base_value: The model's expected raw score (log-odds), the same for every row.
        risk: Strongest risk-raising reasons first.
        mitigating: Strongest risk-lowering reasons first.
        groups: Contribution per feature group, largest magnitude first.
    """

    base_value: float
    risk: list[Reason]
    mitigating: list[Reason]
    groups: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "base_value": round(self.base_value, 6),
            "reasons": [r.to_dict() for r in self.risk],
            "mitigating": [r.to_dict() for r in self.mitigating],
            "groups": self.groups,
        }


def impact_level(contribution: float) -> int:
    """0-5 impact of a contribution (log-odds), by ``IMPACT_THRESHOLDS``."""
    return int(np.searchsorted(IMPACT_THRESHOLDS, abs(contribution), side="right"))


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


def _value_format(template: str) -> str:
    """The format spec the template gives ``{value}`` ("" if none), to show the normal alike."""
    try:
        for _, field, spec, _ in string.Formatter().parse(template):
            if field == "value":
                return spec or ""
    except ValueError:
        pass
    return ""


def normal_text(feature: Feature, normal: object) -> str | None:
    """The genuine-store normal as people read it, formatted like the store's value."""
    if normal is None:
        return None
    if feature.dtype == "bool":
        return f"{float(normal):.0%} of them"
    if feature.dtype == "category":
        return str(normal)
    spec = _value_format(feature.reason_template)
    try:
        return format(float(normal), spec) if spec else f"{float(normal):g}"
    except (ValueError, TypeError):
        return f"{float(normal):g}"


class Explainer:
    """Phrases the contributions of a model's rows, with the model's genuine-store reference.

    Args:
        spec: The FeatureSpec the contributions follow.
        levels: Category levels by feature (a level's code is its position).
        reference: Genuine-store references; None for models trained before they existed
            (their reasons carry no normal and no percentile).
    """

    def __init__(
        self,
        spec: FeatureSpec,
        levels: Mapping[str, Sequence[str]],
        reference: GenuineReference | None,
    ) -> None:
        self.spec = spec
        self.features = list(spec)
        self.reference = reference
        self.references = [
            None if reference is None else reference.features.get(f.name) for f in self.features
        ]
        self.normals = [self._normal(f, levels) for f in self.features]
        self.normal_texts = [
            normal_text(f, n) for f, n in zip(self.features, self.normals, strict=True)
        ]
        groups = sorted({f.group for f in self.features})
        self.group_names = groups
        # features x groups, 1 where the feature belongs: contributions @ it = group sums.
        self.group_matrix = np.eye(len(groups))[[groups.index(f.group) for f in self.features]]
        names = spec.names
        self.link_columns = (
            (names.index(LINKED_STORES), names.index(KNOWN_COUNTERFEIT))
            if LINKED_STORES in names and KNOWN_COUNTERFEIT in names
            else None
        )

    def _normal(self, feature: Feature, levels: Mapping[str, Sequence[str]]) -> object:
        if self.reference is None or feature.name not in self.reference.features:
            return None
        normal = self.reference.features[feature.name].normal
        if normal is None or feature.dtype != "category":
            return normal
        known = levels.get(feature.name, [])
        return known[int(normal)] if 0 <= int(normal) < len(known) else None

    def explain(
        self,
        contributions: np.ndarray,
        matrix: np.ndarray,
        categories: Mapping[int, Sequence[object]] | None = None,
        risk_k: int = RISK_REASONS,
        mitigating_k: int = MITIGATING_REASONS,
    ) -> list[Explanation]:
        """Explain every row.

        Args:
            contributions: Rows x (features + 1) SHAP contributions in spec order, the bias
                last (LightGBM's ``pred_contrib`` layout).
            matrix: The encoded feature values, same rows.
            categories: Original levels of the categorical features, by column index.
            risk_k: Risk-raising reasons per row at most.
            mitigating_k: Mitigating reasons per row at most.
        """
        contributions = np.asarray(contributions, dtype=float)
        n = len(self.features)
        if contributions.ndim != 2 or contributions.shape[1] != n + 1:
            raise ValueError(
                f"contributions have shape {contributions.shape}, expected (rows, {n + 1})"
            )
        per_feature = contributions[:, :n]
        categories = categories or {}
        # One argsort for all rows; stable, so equal contributions keep spec order.
        by_risk = np.argsort(-per_feature, axis=1, kind="stable")
        group_sums = per_feature @ self.group_matrix
        out = []
        for row in range(len(per_feature)):
            values = per_feature[row]
            risk = [j for j in by_risk[row, :risk_k] if values[j] >= MIN_CONTRIBUTION]
            lowest = by_risk[row, ::-1][:mitigating_k]
            mitigating = [j for j in lowest if values[j] <= -MIN_CONTRIBUTION]
            out.append(
                Explanation(
                    base_value=float(contributions[row, n]),
                    risk=[self._reason(row, j, values[j], matrix, categories) for j in risk],
                    mitigating=[
                        self._reason(row, j, values[j], matrix, categories) for j in mitigating
                    ],
                    groups=self._groups(group_sums[row]),
                )
            )
        return out

    def _reason(
        self,
        row: int,
        j: int,
        contribution: float,
        matrix: np.ndarray,
        categories: Mapping[int, Sequence[object]],
    ) -> Reason:
        feature = self.features[j]
        level = categories[j][row] if j in categories else None
        value = display_value(feature, matrix[row, j], level)
        text = feature.reason(value)
        if self.normal_texts[j] is not None:
            text = f"{text} (genuine stores: {self.normal_texts[j]})"
        percentile = None
        if self.references[j] is not None and feature.dtype in ("float", "int"):
            percentile = self.references[j].percentile(matrix[row, j])
        linked = known = None
        if feature.group == LINK_GROUP and self.link_columns is not None:
            linked, known = (_count(matrix[row, c]) for c in self.link_columns)
        return Reason(
            feature=feature.name,
            group=feature.group,
            value=value,
            normal=self.normals[j],
            percentile=percentile,
            contribution=float(contribution),
            impact=impact_level(contribution),
            text=text,
            linked_stores=linked,
            known_counterfeit=known,
        )

    def _groups(self, sums: np.ndarray) -> dict[str, float]:
        order = np.argsort(-np.abs(sums), kind="stable")
        return {self.group_names[g]: round(float(sums[g]), 6) for g in order}


def _count(value: float) -> int | None:
    return None if value != value else int(value)


def explanation_columns(explanations: list[Explanation]) -> dict[str, list[object]]:
    """The explanation as table columns, one value per row.

    ``base_value``, ``reason_1..3`` (the top risk-raising texts, empty if fewer), the JSON
    lists ``reasons`` and ``mitigating`` and the JSON object ``groups``.
    """
    columns: dict[str, list[object]] = {name: [] for name in EXPLANATION_COLUMNS}
    for explanation in explanations:
        columns["base_value"].append(explanation.base_value)
        for i, name in enumerate(REASON_COLUMNS):
            risk = explanation.risk
            columns[name].append(risk[i].text if i < len(risk) else "")
        columns["reasons"].append(json.dumps([r.to_dict() for r in explanation.risk]))
        columns["mitigating"].append(json.dumps([r.to_dict() for r in explanation.mitigating]))
        columns["groups"].append(json.dumps(explanation.groups))
    return columns
