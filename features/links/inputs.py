"""Checks of the link-graph inputs, and the package's error type."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features import FeaturesError
from features.spec import AS_OF, KEY


class LinkGraphError(FeaturesError):
    """Link-graph inputs are malformed (missing column, bad id, unreadable timestamp...)."""


def require_columns(table: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    """Raise if ``table`` lacks any of ``columns``."""
    if not isinstance(table, pd.DataFrame):
        raise LinkGraphError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise LinkGraphError(f"{name}: missing column(s) {', '.join(missing)}")


def check_ids(table: pd.DataFrame, name: str, column: str) -> None:
    """Raise if an id column has nulls."""
    missing = table[column].isna()
    if missing.any():
        rows = list(table.index[missing.to_numpy()][:5])
        raise LinkGraphError(
            f"{name}.{column}: {int(missing.sum())} missing id(s), e.g. at rows {rows}"
        )


def _id_family(values: pd.Series) -> str:
    """'number' or 'text': ids of different families never match, which is a user error."""
    return "number" if pd.api.types.is_numeric_dtype(values.dtype) else "text"


def check_id_families(columns: dict[str, pd.Series]) -> None:
    """Raise if id columns mix numeric and text ids (they would silently never match)."""
    families = {where: _id_family(values) for where, values in columns.items() if len(values)}
    if len(set(families.values())) > 1:
        detail = ", ".join(f"{where} is {fam}" for where, fam in families.items())
        raise LinkGraphError(f"store ids must all be text or all numbers: {detail}")


def timestamps_ns(values: pd.Series, where: str, *, missing_as: int | None = None) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch, naive UTC.

    Args:
        values: Timestamps (naive UTC or tz-aware) or strings that parse as timestamps.
        where: ``table.column`` for error messages.
        missing_as: Value for missing timestamps; None means missing ones are an error.
    """
    try:
        ts = pd.to_datetime(values)
    except (ValueError, TypeError, OverflowError) as exc:
        raise LinkGraphError(f"{where}: cannot be read as timestamps ({exc})") from exc
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    missing = ts.isna().to_numpy()
    out = ts.astype("datetime64[ns]").to_numpy().view(np.int64).copy()
    if missing.any():
        if missing_as is None:
            rows = list(values.index[missing][:5])
            raise LinkGraphError(
                f"{where}: {int(missing.sum())} missing timestamp(s), e.g. at rows {rows}"
            )
        out[missing] = missing_as
    return out


def check_ring_cap(max_ring_size: int) -> int:
    """Raise unless the ring cap is a positive integer."""
    if isinstance(max_ring_size, bool) or not isinstance(max_ring_size, int | np.integer):
        raise LinkGraphError(f"max_ring_size must be an integer, got {max_ring_size!r}")
    if max_ring_size < 2:
        raise LinkGraphError(f"max_ring_size must be >= 2, got {max_ring_size}")
    return int(max_ring_size)


def check_inputs(features: pd.DataFrame, links: pd.DataFrame, labels: pd.DataFrame | None) -> None:
    """Raise on missing columns, missing ids, mixed id types or duplicate rows."""
    require_columns(features, "features", [KEY])
    require_columns(links, "links", ["store_id", "linked_store_id"])
    check_ids(features, "features", "store_id")
    check_ids(links, "links", "store_id")
    check_ids(links, "links", "linked_store_id")
    ids = {
        "features.store_id": features[KEY],
        "links.store_id": links[KEY],
        "links.linked_store_id": links["linked_store_id"],
    }
    if labels is not None:
        require_columns(labels, "labels", ["store_id", "is_counterfeit"])
        check_ids(labels, "labels", "store_id")
        ids["labels.store_id"] = labels[KEY]
        if AS_OF in features.columns and "labeled_at" not in labels.columns:
            raise LinkGraphError(
                "labels: missing column labeled_at, needed because features has as_of "
                "(only labels known before each row's as_of may count)"
            )
    check_id_families(ids)
    keys = [KEY, AS_OF] if AS_OF in features.columns else [KEY]
    dupes = features.duplicated(keys, keep=False)
    if dupes.any():
        examples = features.loc[dupes, "store_id"].drop_duplicates().head(5).tolist()
        raise LinkGraphError(
            f"features: {int(dupes.sum())} rows share a ({', '.join(keys)}) key, "
            f"e.g. store_id {examples}"
        )
