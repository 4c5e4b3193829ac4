"""The scoring model that travels inside MLflow: booster, calibrator, FeatureSpec, categories.

Training writes these artifacts and serving loads them, and neither may import the other, so
the contract lives here. Scoring needs only LightGBM, MLflow, numpy and pandas: no Optuna,
nothing from ``training``, no scikit-learn of its own (LightGBM imports it if installed, so
LightGBM is imported only when a model is loaded).

Artifacts (files, plain text so a human can read them):

* ``booster``: the LightGBM booster saved as text;
* ``calibrator``: JSON, ``{"method": "isotonic", "x": [...], "y": [...]}`` (applied with
  ``np.interp`` on the raw log-odds) or ``{"method": "sigmoid", "a": ..., "b": ...}``;
* ``feature_spec``: the FeatureSpec JSON;
* ``category_levels``: JSON ``{feature: [level, ...]}``; a level's code is its position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from features.reasons import top_reasons
from features.spec import FeatureSpec

if TYPE_CHECKING:
    import lightgbm as lgb

ARTIFACT_FILES = {
    "booster": "booster.txt",
    "calibrator": "calibrator.json",
    "feature_spec": "feature_spec.json",
    "category_levels": "category_levels.json",
}
TOP_REASONS = 3
REASON_COLUMNS = [f"reason_{i}" for i in range(1, TOP_REASONS + 1)]
OUTPUT_COLUMNS = ["score", "raw_score", *REASON_COLUMNS, "reasons"]


class ModelContractError(ValueError):
    """Input does not match what the model was trained on, or artifacts are malformed."""


def category_levels(frame: pd.DataFrame, spec: FeatureSpec) -> dict[str, list[str]]:
    """Sorted distinct non-null levels of each categorical feature (a level's code = index).

    Args:
        frame: Rows to learn levels from (the training split, so codes the model never saw
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
    """Raise ``ModelContractError`` naming the spec columns that ``frame`` lacks."""
    missing = [name for name in spec.names if name not in frame.columns]
    if missing:
        shown = ", ".join(missing[:15]) + (" ..." if len(missing) > 15 else "")
        raise ModelContractError(
            f"input lacks {len(missing)} of the model's {len(spec)} feature columns: {shown}"
        )


def prepare_input(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Select the spec's columns in order and cast them to the model signature's types.

    Numeric and boolean features become float64 (MLflow refuses to cast int64 to double by
    itself); categorical features become strings with missing values kept missing.

    Args:
        frame: Feature table with at least the spec's columns (others are dropped).
        spec: The model's FeatureSpec.

    Returns:
        A new frame with exactly ``spec.names``.

    Raises:
        ModelContractError: A spec column is missing or a numeric column is not numeric.
    """
    check_columns(frame, spec)
    out = {}
    for feature in spec:
        column = frame[feature.name]
        if feature.dtype == "category":
            out[feature.name] = pd.Series(
                [None if pd.isna(v) else str(v) for v in column], index=frame.index, dtype=object
            )
            continue
        try:
            out[feature.name] = pd.to_numeric(column, errors="raise").astype("float64")
        except (ValueError, TypeError) as exc:
            raise ModelContractError(
                f"feature column {feature.name!r} must be numeric ({feature.dtype}): {exc}"
            ) from exc
    return pd.DataFrame(out, index=frame.index)


def encode_features(
    frame: pd.DataFrame, spec: FeatureSpec, levels: dict[str, list[str]]
) -> np.ndarray:
    """Matrix (rows x spec features, float64) for LightGBM; categories become level codes.

    Args:
        frame: Feature table with the spec's columns.
        spec: The FeatureSpec, defining column order.
        levels: Category levels from training; an unseen level becomes NaN (missing).

    Returns:
        float64 array in spec order.
    """
    prepared = prepare_input(frame, spec)
    matrix = np.empty((len(prepared), len(spec)), dtype="float64")
    for j, feature in enumerate(spec):
        column = prepared[feature.name]
        if feature.dtype == "category":
            codes = {level: float(i) for i, level in enumerate(levels.get(feature.name, []))}
            matrix[:, j] = column.map(codes).astype("float64").to_numpy(na_value=np.nan)
        else:
            matrix[:, j] = column.to_numpy(dtype="float64", na_value=np.nan)
    return matrix


def apply_calibrator(calibrator: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    """Map raw LightGBM log-odds to calibrated probabilities.

    Args:
        calibrator: ``{"method": "isotonic", "x", "y"}`` or ``{"method": "sigmoid", "a", "b"}``.
        raw: Raw scores (log-odds) from the booster.

    Returns:
        Probabilities in [0, 1].
    """
    raw = np.asarray(raw, dtype="float64")
    method = calibrator.get("method")
    if method == "isotonic":
        # np.interp clamps outside the fitted range, exactly like isotonic out_of_bounds="clip".
        return np.interp(raw, np.asarray(calibrator["x"]), np.asarray(calibrator["y"]))
    if method == "sigmoid":
        return 1.0 / (1.0 + np.exp(-(calibrator["a"] * raw + calibrator["b"])))
    raise ModelContractError(f"unknown calibrator method {method!r}")


def _json_value(value: object) -> object:
    """A JSON-safe form of a feature value (NaN becomes null)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _display_values(values: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Feature values as people read them: counts as ints, flags as booleans, NaN as None."""
    out = values.astype(object).where(values.notna(), None)
    for feature in spec:
        if feature.dtype in ("int", "bool"):
            cast = int if feature.dtype == "int" else bool
            out[feature.name] = [None if v is None else cast(v) for v in out[feature.name]]
    return out


def reasons_frame(contributions: np.ndarray, values: pd.DataFrame, spec: FeatureSpec) -> dict:
    """Columns ``reason_1..3`` (text, empty if fewer) and ``reasons`` (JSON list) per row."""
    per_row = top_reasons(contributions, _display_values(values, spec), spec, top_k=TOP_REASONS)
    columns: dict[str, list[str]] = {name: [] for name in [*REASON_COLUMNS, "reasons"]}
    for reasons in per_row:
        for i, name in enumerate(REASON_COLUMNS):
            columns[name].append(reasons[i].text if i < len(reasons) else "")
        columns["reasons"].append(
            json.dumps(
                [
                    {
                        "feature": r.feature,
                        "value": _json_value(r.value),
                        "contribution": round(r.contribution, 6),
                        "text": r.text,
                    }
                    for r in reasons
                ]
            )
        )
    return columns


class CounterfeitScorer(mlflow.pyfunc.PythonModel):
    """Calibrated counterfeit-store score with SHAP reasons, as an MLflow pyfunc model.

    Build it in-process with ``from_parts`` (training) or let MLflow call ``load_context``
    (serving, ``spotcheck score``). ``predict`` returns one row per input row with
    ``score`` (calibrated probability), ``raw_score`` (log-odds, a tie-breaker for ranking),
    ``reason_1..3`` and ``reasons`` (JSON: feature, value, contribution, text).
    """

    # Input is checked against the FeatureSpec in ``predict`` and the model is logged with an
    # explicit signature, so MLflow's type-hint wrapping (and its warning) is not needed.
    _skip_type_hint_validation = True

    def __init__(self) -> None:
        self.booster_: lgb.Booster | None = None
        self.calibrator_: dict[str, Any] = {}
        self.spec_: FeatureSpec | None = None
        self.levels_: dict[str, list[str]] = {}

    @classmethod
    def from_parts(
        cls,
        booster: lgb.Booster,
        calibrator: dict[str, Any],
        spec: FeatureSpec,
        levels: dict[str, list[str]],
    ) -> CounterfeitScorer:
        """A ready scorer from fitted parts, without going through files."""
        scorer = cls()
        scorer.booster_, scorer.calibrator_, scorer.spec_, scorer.levels_ = (
            booster,
            calibrator,
            spec,
            levels,
        )
        return scorer

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the artifacts MLflow hands over (paths keyed like ``ARTIFACT_FILES``)."""
        # Imported here: lightgbm pulls in scikit-learn whenever it is installed, and merely
        # importing this module (e.g. to check a spec) should stay light.
        import lightgbm as lgb

        paths = context.artifacts
        self.booster_ = lgb.Booster(model_file=paths["booster"])
        self.calibrator_ = json.loads(Path(paths["calibrator"]).read_text())
        self.spec_ = FeatureSpec.from_json(Path(paths["feature_spec"]).read_text())
        self.levels_ = json.loads(Path(paths["category_levels"]).read_text())

    @property
    def spec(self) -> FeatureSpec:
        """The model's FeatureSpec."""
        if self.spec_ is None:
            raise ModelContractError("scorer is not loaded")
        return self.spec_

    def raw_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw booster log-odds for a feature table."""
        matrix = encode_features(frame, self.spec, self.levels_)
        return self.booster_.predict(matrix, raw_score=True)

    def predict(self, context, model_input, params=None) -> pd.DataFrame:  # noqa: D417
        """Score rows and explain each score.

        Args:
            model_input: DataFrame with the spec's feature columns (extra columns ignored).

        Returns:
            DataFrame with ``OUTPUT_COLUMNS``, same row order as the input.
        """
        frame = pd.DataFrame(model_input)
        values = prepare_input(frame, self.spec)
        matrix = encode_features(values, self.spec, self.levels_)
        raw = self.booster_.predict(matrix, raw_score=True)
        # Native TreeSHAP: one column per feature plus the bias, in log-odds units.
        contributions = self.booster_.predict(matrix, pred_contrib=True)
        out = pd.DataFrame(
            {"score": apply_calibrator(self.calibrator_, raw), "raw_score": raw},
            index=range(len(values)),
        )
        for name, column in reasons_frame(contributions, values, self.spec).items():
            out[name] = column
        return out[OUTPUT_COLUMNS]


def write_artifacts(
    directory: str | Path,
    booster: lgb.Booster,
    calibrator: dict[str, Any],
    spec: FeatureSpec,
    levels: dict[str, list[str]],
) -> dict[str, str]:
    """Write the model's artifacts into ``directory`` and return MLflow's artifacts mapping.

    Args:
        directory: An existing (temporary) directory.
        booster: Fitted LightGBM booster.
        calibrator: Calibrator JSON data.
        spec: FeatureSpec of the booster's columns.
        levels: Category levels.

    Returns:
        ``{artifact key: file path}`` for ``mlflow.pyfunc.log_model(artifacts=...)``.
    """
    directory = Path(directory)
    paths = {key: directory / name for key, name in ARTIFACT_FILES.items()}
    booster.save_model(str(paths["booster"]))
    paths["calibrator"].write_text(json.dumps(calibrator, indent=1))
    paths["feature_spec"].write_text(spec.to_json())
    paths["category_levels"].write_text(json.dumps(levels, indent=1, sort_keys=True))
    return {key: str(path) for key, path in paths.items()}


def model_spec(model: mlflow.pyfunc.PyFuncModel) -> FeatureSpec:
    """The FeatureSpec of a model loaded with ``mlflow.pyfunc.load_model``."""
    inner = model.unwrap_python_model()
    if not isinstance(inner, CounterfeitScorer):
        raise ModelContractError(f"not a spotcheck model: {type(inner).__name__}")
    return inner.spec
