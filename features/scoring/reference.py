"""What is normal: each feature's distribution among the genuine stores a model trained on.

Reasons compare a store with these values ("sells at 18% of the brand's reference price
(genuine stores: 94%)") and say where it sits among genuine stores (its percentile). The
reference is fitted once in training from the labelled-genuine rows and travels inside the
model as a JSON artifact, so serving needs no training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from features.spec import FeatureSpec

# Quantile grid kept per numeric feature: every percent, 0 to 100.
QUANTILES = np.linspace(0.0, 1.0, 101)
SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class FeatureReference:
    """One feature among genuine stores.

    Attributes:
        normal: The median (numeric), the share that is true (bool) or the most common
            level's code (category); None when no genuine store has a value.
        quantiles: 101 quantiles (numeric features), empty otherwise.
        missing_share: Share of genuine stores without a value.
    """

    normal: float | None
    quantiles: tuple[float, ...]
    missing_share: float

    @cached_property
    def _grid(self) -> np.ndarray:
        """The quantiles as an array, converted once (percentiles are asked per reason)."""
        return np.asarray(self.quantiles, dtype="float64")

    def percentile(self, value: float) -> float | None:
        """Where ``value`` sits among genuine stores, 0-100 (ties count half); None if unknown."""
        if not self.quantiles or value != value:  # no grid, or a missing value
            return None
        grid = self._grid
        below = np.searchsorted(grid, value, "left")
        at_or_below = np.searchsorted(grid, value, "right")
        return round(float(100.0 * (below + at_or_below) / (2 * len(grid))), 1)


@dataclass(frozen=True)
class GenuineReference:
    """Per-feature references, keyed by feature name.

    Attributes:
        rows: How many genuine rows they were fitted on.
        features: ``FeatureReference`` per feature name.
    """

    rows: int
    features: dict[str, FeatureReference]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the model artifact)."""
        return {
            "rows": self.rows,
            "features": {
                name: {
                    "normal": ref.normal,
                    "quantiles": list(ref.quantiles),
                    "missing_share": ref.missing_share,
                }
                for name, ref in self.features.items()
            },
        }

    def rows_for_people(self) -> list[dict[str, Any]]:
        """One row per feature: normal, 10th/50th/90th percentile and missing share."""
        out = []
        for name, ref in self.features.items():
            grid = ref.quantiles
            out.append(
                {
                    "feature": name,
                    "normal": ref.normal,
                    "p10": grid[10] if grid else None,
                    "p50": grid[50] if grid else None,
                    "p90": grid[90] if grid else None,
                    "missing_share": ref.missing_share,
                }
            )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenuineReference:
        """Read the artifact's form back."""
        return cls(
            rows=int(data["rows"]),
            features={
                name: FeatureReference(
                    normal=entry["normal"],
                    quantiles=tuple(entry["quantiles"]),
                    missing_share=float(entry["missing_share"]),
                )
                for name, entry in data["features"].items()
            },
        )


def fit_reference(matrix: np.ndarray, spec: FeatureSpec) -> GenuineReference:
    """Fit the references from the encoded rows of genuine stores.

    Args:
        matrix: Genuine rows x spec features, as ``encode_features`` makes them (NaN =
            missing, categories as level codes).
        spec: The FeatureSpec of the columns.
    """
    matrix = np.asarray(matrix, dtype="float64")
    features = {}
    for j, feature in enumerate(spec):
        column = matrix[:, j]
        present = column[~np.isnan(column)]
        missing = 1.0 - len(present) / len(column) if len(column) else 1.0
        features[feature.name] = _reference(feature.dtype, present, round(missing, 4))
    return GenuineReference(rows=len(matrix), features=features)


def _reference(dtype: str, present: np.ndarray, missing_share: float) -> FeatureReference:
    if len(present) == 0:
        return FeatureReference(None, (), missing_share)
    if dtype == "bool":
        return FeatureReference(_round(float(present.mean())), (), missing_share)
    if dtype == "category":
        codes, counts = np.unique(present, return_counts=True)
        return FeatureReference(float(codes[np.argmax(counts)]), (), missing_share)
    grid = tuple(_round(q) for q in np.quantile(present, QUANTILES))
    return FeatureReference(_round(float(np.median(present))), grid, missing_share)


def _round(value: float) -> float:
    """Round to ``SIGNIFICANT_DIGITS`` significant digits: a readable, compact artifact."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
