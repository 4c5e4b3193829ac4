"""Training: datasets and time-aware splits, LightGBM, Optuna, calibration, evaluation.

Also baselines, MLflow logging and reports, and the registry with its promotion gates. It
imports ``features`` and never ``serving``; the model it registers carries only
``features/spec.py`` and ``features/scoring`` as code.
"""


class TrainingError(Exception):
    """Base of every error the ``training`` package raises (data, tracking, promotion)."""
