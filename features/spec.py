"""The FeatureSpec: one declarative list of every model feature.

A spec says, for each feature, its group, dtype, meaning, which direction is risky and the
plain-language reason shown when it raises a store's score. It is serialized to JSON and
logged with every model; serving compares its hash with the feature table it receives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Literal

import pandas as pd

from features import FeaturesError

# The key columns of every feature table: the store and the time its features are as of.
KEY = "store_id"
AS_OF = "as_of"

FeatureDtype = Literal["float", "int", "bool", "category"]
RiskDirection = Literal["higher", "lower", "none"]

FEATURE_GROUPS = (
    "storefront",
    "pricing",
    "sales",
    "buyers",
    "reviews",
    "disputes",
    "logistics",
    "environment",
    "link_graph",
    "text",
    "custom",
)


class FeatureSpecError(FeaturesError):
    """A feature table does not match its FeatureSpec, or a spec is malformed."""


@dataclass(frozen=True)
class Feature:
    """One feature of the spec.

    Attributes:
        name: Column name in the feature table.
        group: One of ``FEATURE_GROUPS``.
        dtype: ``float``, ``int``, ``bool`` or ``category`` (string categories).
        description: What the value measures, for people.
        risk_direction: ``higher`` if larger values mean more risk, ``lower`` if smaller
            values do, ``none`` if neither.
        reason_template: Plain-language reason with ``{value}`` placeholders, e.g.
            ``"sells at {value:.0%} of the brands' reference price"``.
    """

    name: str
    group: str
    dtype: FeatureDtype
    description: str
    risk_direction: RiskDirection = "higher"
    reason_template: str = "{name} is {value}"

    def reason(self, value: object) -> str:
        """Render the reason template for one value (falls back to a plain form)."""
        try:
            if value is None or (isinstance(value, float) and pd.isna(value)):
                return f"{self.description}: missing"
            return self.reason_template.format(value=value, name=self.name)
        except (ValueError, TypeError, KeyError, IndexError):
            return f"{self.description}: {value}"


@dataclass(frozen=True)
class FeatureSpec:
    """An ordered, immutable list of features with a stable hash."""

    features: tuple[Feature, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FeatureSpecError(f"duplicate feature names in spec: {', '.join(dupes)}")
        for key in (KEY, AS_OF):
            if key in names:
                raise FeatureSpecError(f"{key!r} is a key column, not a feature")

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, name: str) -> Feature:
        return self.features[self._positions[name]]

    def __add__(self, other: FeatureSpec) -> FeatureSpec:
        return FeatureSpec(self.features + other.features)

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Position of each feature by name (specs are immutable, so computed once)."""
        return {f.name: i for i, f in enumerate(self.features)}

    @property
    def names(self) -> list[str]:
        """Feature names in spec order (a new list: callers may change it)."""
        return list(self._positions)

    @property
    def categorical(self) -> list[str]:
        """Names of the string-categorical features."""
        return [f.name for f in self.features if f.dtype == "category"]

    def groups(self) -> dict[str, list[str]]:
        """Feature names per group, in spec order."""
        out: dict[str, list[str]] = {}
        for feature in self.features:
            out.setdefault(feature.group, []).append(feature.name)
        return out

    def select(self, names: Iterable[str]) -> FeatureSpec:
        """Return the spec restricted to ``names`` (kept in spec order)."""
        wanted = set(names)
        return FeatureSpec(tuple(f for f in self.features if f.name in wanted))

    def to_dict(self) -> dict:
        """Plain-data form of the spec."""
        return {"features": [asdict(f) for f in self.features]}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace variation) of the spec."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical JSON: equal specs hash equal across runs and machines."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        """Build a spec from its plain-data form."""
        try:
            return cls(tuple(Feature(**f) for f in data["features"]))
        except (KeyError, TypeError) as exc:
            raise FeatureSpecError(f"malformed FeatureSpec: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        """Build a spec from its JSON form."""
        return cls.from_dict(json.loads(text))

    def check_table(self, table: pd.DataFrame) -> None:
        """Raise if ``table``'s feature columns are not exactly the spec's, in order.

        Args:
            table: Feature table; the key columns ``store_id`` and ``as_of`` are allowed
                besides.

        Raises:
            FeatureSpecError: Naming the missing and unexpected columns.
        """
        columns = [c for c in table.columns if c not in (KEY, AS_OF)]
        if columns == self.names:
            return
        missing = [n for n in self.names if n not in columns]
        extra = [c for c in columns if c not in set(self.names)]
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:10])}")
        if extra:
            detail.append(f"unexpected {', '.join(map(str, extra[:10]))}")
        if not detail:
            detail.append("columns are in a different order")
        raise FeatureSpecError("feature table does not match FeatureSpec: " + "; ".join(detail))
