"""Model input: feature tables and plain records to the booster's float matrix.

Numeric and boolean features become float64 (missing as NaN); a categorical feature becomes
the position of its level among the training levels (an unseen level is missing). Tables
are converted once, column by column and vectorised; one store's record goes straight into
a one-row matrix without pandas (the online fast path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.scoring import ScoringError
from features.spec import FeatureSpec

# The pandas dtype of each spec dtype in a feature table and in the model signature.
PANDAS_DTYPES = {"float": "float64", "int": "int64", "bool": "bool", "category": "str"}


def category_levels(frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, list[str]]:
    """Sorted distinct non-null levels of each categorical feature (a level's code = index).

    Args:
        frame: Rows to learn levels from (the training rows, so codes the model never saw
            cannot appear).
        spec: The FeatureSpec; only its ``category`` features are used.

    Returns:
        ``{feature: [level, ...]}``.
    """
    return {
        name: sorted(frame[name].dropna().astype(str).unique().tolist())
        for name in spec.categorical
    }


def check_columns(frame: pd.DataFrame, spec: FeatureSpec) -> None:
    """Raise ``ScoringError`` naming the spec columns that ``frame`` lacks."""
    missing = [name for name in spec.names if name not in frame.columns]
    if missing:
        shown = ", ".join(missing[:15]) + (" ..." if len(missing) > 15 else "")
        raise ScoringError(
            f"input lacks {len(missing)} of the model's {len(spec)} feature columns: {shown}"
        )


def _numeric(column: pd.Series, name: str, dtype: str) -> np.ndarray:
    """A numeric or boolean column as float64 with NaN for missing values."""
    try:
        values = pd.to_numeric(column, errors="raise")
    except (ValueError, TypeError) as exc:
        raise ScoringError(f"feature column {name!r} must be numeric ({dtype}): {exc}") from exc
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _codes(column: pd.Series, levels: pd.Index) -> np.ndarray:
    """Level positions of a categorical column as float64; missing and unseen levels NaN."""
    missing = column.isna().to_numpy()
    codes = levels.get_indexer(column.astype("str")).astype("float64")
    codes[missing | (codes < 0)] = np.nan
    return codes


def encode_features(
    frame: pd.DataFrame, spec: FeatureSpec, levels: dict[str, list[str]]
) -> np.ndarray:
    """Matrix (rows x spec features, float64) for LightGBM; categories become level codes.

    Args:
        frame: Feature table with at least the spec's columns (others are ignored).
        spec: The FeatureSpec, defining column order.
        levels: Category levels from training; an unseen level becomes NaN (missing).

    Returns:
        float64 array in spec order.

    Raises:
        ScoringError: A spec column is missing or a numeric column is not numeric.
    """
    check_columns(frame, spec)
    matrix = np.empty((len(frame), len(spec)), dtype="float64")
    numeric = [j for j, f in enumerate(spec) if f.dtype != "category"]
    all_names = spec.names
    names = [all_names[j] for j in numeric]
    dtypes = frame.dtypes
    if names and all(_plain_number(dtypes[name]) for name in names):
        # One block copy when every numeric column already holds numbers (a feature table
        # as written): no per-column pandas work, which dominates for a few rows.
        matrix[:, numeric] = frame[names].to_numpy(dtype="float64", na_value=np.nan)
    else:
        for j, name in zip(numeric, names, strict=True):
            matrix[:, j] = _numeric(frame[name], name, spec[name].dtype)
    for j, feature in enumerate(spec):
        if feature.dtype == "category":
            levels_index = pd.Index(levels.get(feature.name, []), dtype=object)
            matrix[:, j] = _codes(frame[feature.name], levels_index)
    return matrix


def _plain_number(dtype: object) -> bool:
    """Whether a column dtype is numeric or boolean (not text or mixed objects)."""
    return pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)


def model_input(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The spec's columns in order, with the pandas dtypes of a written feature table.

    Floats become float64, ints int64 and bools bool (float64 where values are missing),
    categories strings: the types of the model signature, so a table written by
    ``spotcheck features`` passes MLflow's input check unchanged.

    Raises:
        ScoringError: A spec column is missing or a numeric column is not numeric.
    """
    check_columns(frame, spec)
    out = {}
    for feature in spec:
        column = frame[feature.name]
        if feature.dtype == "category":
            out[feature.name] = column.astype("str").where(column.notna(), None)
            continue
        values = _numeric(column, feature.name, feature.dtype)
        if feature.dtype in ("int", "bool") and not np.isnan(values).any():
            values = values.astype(PANDAS_DTYPES[feature.dtype])
        out[feature.name] = values
    return pd.DataFrame(out, index=frame.index)


class RecordEncoder:
    """One-row matrices from plain mappings ``{feature: value}``, without pandas.

    Built once per model (the level lookups are precomputed), then used per request: a
    store's 130 features cost tens of microseconds.
    """

    def __init__(self, spec: FeatureSpec, levels: dict[str, list[str]]) -> None:
        self.spec = spec
        self._names = spec.names
        self._codes = {
            name: {level: float(i) for i, level in enumerate(levels.get(name, []))}
            for name in spec.categorical
        }

    def matrix(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode records (one per store) into a float64 matrix in spec order.

        A missing key or ``None``/NaN is a missing value; booleans count as 0/1.

        Raises:
            ScoringError: A numeric feature holds something that is not a number.
        """
        matrix = np.full((len(records), len(self._names)), np.nan)
        for i, record in enumerate(records):
            row = matrix[i]
            for j, name in enumerate(self._names):
                value = record.get(name)
                if value is None:
                    continue
                codes = self._codes.get(name)
                if codes is not None:
                    row[j] = codes.get(str(value), np.nan)
                    continue
                try:
                    row[j] = float(value)
                except (TypeError, ValueError) as exc:
                    raise ScoringError(
                        f"store {i}: feature {name!r} must be a number, got {value!r}"
                    ) from exc
        return matrix
