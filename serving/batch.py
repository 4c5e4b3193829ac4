"""Batch scoring: every store gets a calibrated score, a rank and its top reasons.

The model is whatever MLflow resolves the URI to (``models:/NAME@champion``,
``models:/NAME/3``, ``runs:/RUN/model``), loaded through the pyfunc contract. Features come
from a histories directory (as of its end) or a team's own feature file; link features are
added the same way as in training (``features.byo``).
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException

from features import FeaturesError
from features.scoring.model import scorer_of
from features.scoring.reasons import EXPLANATION_COLUMNS, MITIGATING_REASONS, RISK_REASONS
from features.spec import KEY, FeatureSpec
from serving import ServingError

OUTPUT_COLUMNS = [KEY, "score", "rank", "raw_score", *EXPLANATION_COLUMNS]


def load_model(uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a registered or logged spotcheck model.

    Raises:
        ServingError: The URI resolves to nothing, or to a model that is not spotcheck's.
    """
    try:
        model = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise ServingError(f"cannot load model {uri}: {exc.message}") from exc
    try:
        scorer_of(model)
    except FeaturesError as exc:
        raise ServingError(f"model {uri} is {exc}") from exc
    return model


def features_from_histories(directory: str | Path) -> tuple[pd.DataFrame, FeatureSpec]:
    """Feature rows of every store as of the end of a histories directory, and their spec."""
    from features.build import build_feature_table

    return build_feature_table(Path(directory))


def check_model_spec(model: mlflow.pyfunc.PyFuncModel, data_spec: FeatureSpec) -> None:
    """Refuse a model whose features are defined differently from the data's.

    The model's FeatureSpec must equal the data's spec restricted to the model's features
    (a model may use a subset). A difference means the feature code changed since the model
    was trained: its scores would be computed on features it never saw.

    Raises:
        ServingError: Naming both hashes and the features that differ.
    """
    check_spec_against(scorer_of(model).spec, data_spec)


def check_spec_against(spec: FeatureSpec, data_spec: FeatureSpec) -> None:
    """``check_model_spec`` for a model's FeatureSpec ``spec`` already in hand.

    Raises:
        ServingError: Naming both hashes and the features that differ.
    """
    missing = [name for name in spec.names if name not in data_spec.names]
    if missing:
        raise ServingError(
            f"the data has no feature(s) {', '.join(missing[:10])} that the model uses "
            f"(model FeatureSpec {spec.hash[:12]}, data FeatureSpec {data_spec.hash[:12]})"
        )
    mine = data_spec.select(spec.names)
    if mine.hash == spec.hash:
        return
    differ = [f.name for f in spec if f != mine[f.name]]
    order = "" if differ else " (the same features in a different order)"
    raise ServingError(
        f"model FeatureSpec hash {spec.hash} differs from the data's {mine.hash}{order}: "
        f"defined differently: {', '.join(differ[:10]) or '-'}; retrain the model on "
        "features built by this version"
    )


def score_stores(
    model: mlflow.pyfunc.PyFuncModel,
    features: pd.DataFrame,
    risk_k: int = RISK_REASONS,
    mitigating_k: int = MITIGATING_REASONS,
) -> pd.DataFrame:
    """Score and rank every store (rank 1 = riskiest) with its reasons both ways.

    The scorer inside the model converts the table once (``CounterfeitScorer.score_frame``,
    the same code ``model.predict`` runs). Ties in the calibrated score (a step-shaped
    calibrator maps many raw scores to one) are broken by the raw booster score, then by
    store id, so the order is total and reproducible. ``risk_k`` and ``mitigating_k`` cap
    the reasons each way.

    Raises:
        ScoringError: The table lacks a feature column of the model, or has a bad value.
    """
    if KEY not in features.columns:
        raise ServingError(f"the feature table has no {KEY!r} column")
    scored = scorer_of(model).score_frame(features, risk_k, mitigating_k)
    scored.insert(0, KEY, features[KEY].to_numpy())
    return rank(scored)[OUTPUT_COLUMNS]


def rank(scored: pd.DataFrame) -> pd.DataFrame:
    """``scored`` in queue order (score, then raw score, descending; then store id) with ranks."""
    ordered = scored.sort_values(
        ["score", "raw_score", KEY], ascending=[False, False, True], kind="stable"
    ).reset_index(drop=True)
    ordered["rank"] = range(1, len(ordered) + 1)
    return ordered
