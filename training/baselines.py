"""The two baselines the tuned model must beat, scored on the same rows.

* The price rule from the seeds: flag stores whose listings sell far below the brand's
  reference price, i.e. rank by the price-to-reference ratio, lowest first.
* A logistic regression on all features (imputed, scaled, categories one-hot encoded),
  fitted on the same development rows as the model the holdout is measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.byo import LABEL
from features.scoring.encoding import model_input
from features.spec import FeatureSpec

PRICE_RULE = "price_rule"
LOGISTIC = "logistic_regression"


def price_rule_scores(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Risk by the price rule: the lower the price ratio, the higher the score.

    A store with no priced branded listing cannot trip the rule, so missing ratios rank
    below every store that has one.
    """
    ratio = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
    scores = -ratio
    finite = scores[np.isfinite(scores)]
    floor = (finite.min() if len(finite) else 0.0) - 1.0
    return np.where(np.isfinite(scores), scores, floor)


def fit_logistic(frame: pd.DataFrame, spec: FeatureSpec, seed: int) -> Pipeline:
    """Fit the logistic-regression baseline (balanced class weights, seeded).

    Args:
        frame: Labelled rows with the spec's columns.
        spec: FeatureSpec.
        seed: Random state.

    Returns:
        A fitted pipeline taking ``model_input`` frames.
    """
    numeric = [f.name for f in spec if f.dtype != "category"]
    categorical = spec.categorical
    transformer = ColumnTransformer(
        [
            (
                "numeric",
                # keep_empty_features: an all-missing column becomes zeros instead of vanishing.
                make_pipeline(
                    SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
                ),
                numeric,
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ],
        remainder="drop",
    )
    model = Pipeline(
        [
            ("features", transformer),
            (
                "logistic",
                LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed),
            ),
        ]
    )
    return model.fit(_inputs(frame, spec), frame[LABEL].to_numpy())


def _inputs(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    prepared = model_input(frame, spec)
    for name in spec.categorical:
        prepared[name] = prepared[name].astype(object).where(prepared[name].notna(), np.nan)
    for name in spec.names:
        if prepared[name].dtype == bool:
            prepared[name] = prepared[name].astype("float64")
    return prepared


def logistic_scores(model: Pipeline, frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Predicted probabilities of the logistic baseline."""
    return model.predict_proba(_inputs(frame, spec))[:, 1]


@dataclass(frozen=True)
class Baselines:
    """Both baselines, fitted once, scoring any rows with the spec's columns."""

    logistic: Pipeline
    spec: FeatureSpec
    price_column: str | None

    def scores(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Scores of each baseline (the price rule only when there is a price column)."""
        out = {}
        if self.price_column is not None:
            out[PRICE_RULE] = price_rule_scores(frame, self.price_column)
        out[LOGISTIC] = logistic_scores(self.logistic, frame, self.spec)
        return out


def fit_baselines(
    development: pd.DataFrame, spec: FeatureSpec, price_column: str | None, seed: int
) -> Baselines:
    """Fit the baselines on the development rows."""
    return Baselines(fit_logistic(development, spec, seed), spec, price_column)
