"""Training defaults, read from the environment when asked for, never at import time.

| setting | environment variable | default |
|---|---|---|
| MLflow tracking URI | ``MLFLOW_TRACKING_URI`` | ``sqlite:///<cwd>/mlflow.db`` |
| registered model name | ``SPOTCHECK_MODEL_NAME`` | ``counterfeit-store-classifier`` |
| MLflow experiment | ``SPOTCHECK_EXPERIMENT`` | ``spotcheck`` |
| Optuna study storage | ``SPOTCHECK_OPTUNA_STORAGE`` | ``sqlite:///<cwd>/optuna.db`` |
| ECE promotion threshold | ``SPOTCHECK_ECE_THRESHOLD`` | ``0.05`` |
| sigmoid (not isotonic) calibration below this many positives | ``SPOTCHECK_SIGMOID_BELOW`` | 50 |
| minimum positive labels in each of train, validation, test | ``SPOTCHECK_MIN_POSITIVES`` | 5 |
| LightGBM threads | ``SPOTCHECK_NUM_THREADS`` | the CPU cores this process may use |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from features.build import available_cores

DEFAULT_MODEL_NAME = "counterfeit-store-classifier"
DEFAULT_EXPERIMENT = "spotcheck"
# Share of labelled rows (by time when labels carry one) held out for validation and test.
VALIDATION_FRACTION = 0.2
TEST_FRACTION = 0.2
# Spot-check budgets as shares of the scored stores.
BUDGET_FRACTIONS = (0.005, 0.01, 0.02)
CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"
# Exit code of ``spotcheck promote`` when the gates reject the challenger (1 means error).
EXIT_REJECTED = 3


@dataclass(frozen=True)
class Settings:
    """Resolved training settings (see the module docstring for the sources)."""

    tracking_uri: str
    model_name: str
    experiment: str
    study_storage: str
    ece_threshold: float
    sigmoid_below_positives: int
    min_positives_per_split: int
    num_threads: int


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def load_settings() -> Settings:
    """Read the settings from the environment and the current working directory."""
    cwd = Path.cwd()
    return Settings(
        tracking_uri=_env("MLFLOW_TRACKING_URI", f"sqlite:///{cwd / 'mlflow.db'}"),
        model_name=_env("SPOTCHECK_MODEL_NAME", DEFAULT_MODEL_NAME),
        experiment=_env("SPOTCHECK_EXPERIMENT", DEFAULT_EXPERIMENT),
        study_storage=_env("SPOTCHECK_OPTUNA_STORAGE", f"sqlite:///{cwd / 'optuna.db'}"),
        ece_threshold=float(_env("SPOTCHECK_ECE_THRESHOLD", "0.05")),
        sigmoid_below_positives=int(_env("SPOTCHECK_SIGMOID_BELOW", "50")),
        min_positives_per_split=int(_env("SPOTCHECK_MIN_POSITIVES", "5")),
        # Predictions are bit-identical for a given thread count; a different count changes
        # floating-point sums in the last bits, so the count is logged with every run.
        num_threads=int(_env("SPOTCHECK_NUM_THREADS", str(available_cores()))),
    )
