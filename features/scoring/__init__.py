"""The model that travels inside MLflow: input encoding, calibrator, TreeSHAP reasons.

A registered spotcheck model carries this subpackage and ``features/spec.py`` as its only
code, so everything here imports nothing of the project but ``features.spec``, and loading
and scoring a model needs LightGBM, MLflow, numpy and pandas only (no Optuna, scikit-learn,
shap, DuckDB or ``training``). Modules:

* ``encoding``: feature tables and plain records to the booster's float matrix, in one pass;
* ``calibrator``: raw log-odds to calibrated probabilities;
* ``reasons``: SHAP contributions to plain-language reasons;
* ``model``: ``CounterfeitScorer`` (the MLflow pyfunc model), its artifacts and signature.
"""

from features import FeaturesError


class ScoringError(FeaturesError):
    """Input does not match what the model was trained on, or its artifacts are malformed."""
