"""Training defaults, read from the environment when asked for, never at import time.

A bad value is an error that names the variable (``features.settings.SettingsError``). The
tracking URI and model name are shared with serving (``features.tracking``).

| setting | environment variable | default |
|---|---|---|
| MLflow tracking URI | ``MLFLOW_TRACKING_URI`` | ``sqlite:///<cwd>/mlflow.db`` |
| registered model name | ``SPOTCHECK_MODEL_NAME`` | ``counterfeit-store-classifier`` |
| MLflow experiment | ``SPOTCHECK_EXPERIMENT`` | ``spotcheck`` |
| Optuna study storage | ``SPOTCHECK_OPTUNA_STORAGE`` | ``sqlite:///<cwd>/optuna.db`` |
| ECE promotion threshold (the lower end of its interval) | ``SPOTCHECK_ECE_THRESHOLD`` | ``0.05`` |
| PR-AUC non-inferiority margin of the gates | ``SPOTCHECK_PR_AUC_MARGIN`` | ``0.02`` |
| bootstrap resamples of the gates' intervals | ``SPOTCHECK_BOOTSTRAP_SAMPLES`` | 1000 |
| sigmoid (not isotonic) calibration below this many positives | ``SPOTCHECK_SIGMOID_BELOW`` | 50 |
| minimum positive labels in the holdout | ``SPOTCHECK_MIN_POSITIVES`` | 5 |
| LightGBM threads | ``SPOTCHECK_NUM_THREADS`` | 1 (see ``DEFAULT_THREADS``) |
| depth cap of every tree (-1: none) | ``SPOTCHECK_MAX_DEPTH`` | -1 (``training.model``) |
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from features.settings import SettingsError, env_float, env_int, env_text
from features.tracking import model_name, tracking_uri

DEFAULT_EXPERIMENT = "spotcheck"
# Share of labelled rows (the most recent when labels carry times) held out for evaluation.
TEST_FRACTION = 0.2
# Spot-check budgets as shares of the scored stores.
BUDGET_FRACTIONS = (0.005, 0.01, 0.02)
# LightGBM threads unless SPOTCHECK_NUM_THREADS says otherwise. One: on a 2-core machine two
# threads cross-validate 1.65x faster when the machine is idle but 2.5x SLOWER than one when
# another process holds a core (OpenMP threads spin waiting for the one that lost its core;
# experiments/RESULTS.md, bench_threads). Give a dedicated machine's cores explicitly.
DEFAULT_THREADS = 1
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
    pr_auc_margin: float
    bootstrap_samples: int
    sigmoid_below_positives: int
    min_positives_per_split: int
    num_threads: int
    max_depth: int


def load_settings() -> Settings:
    """Read the settings from the environment and the current working directory.

    Raises:
        SettingsError: A variable holds a value of the wrong kind (the message names it).
    """
    cwd = Path.cwd()
    return Settings(
        tracking_uri=tracking_uri(),
        model_name=model_name(),
        experiment=env_text("SPOTCHECK_EXPERIMENT", DEFAULT_EXPERIMENT),
        study_storage=env_text("SPOTCHECK_OPTUNA_STORAGE", f"sqlite:///{cwd / 'optuna.db'}"),
        ece_threshold=env_float("SPOTCHECK_ECE_THRESHOLD", 0.05),
        pr_auc_margin=env_float("SPOTCHECK_PR_AUC_MARGIN", 0.02),
        bootstrap_samples=env_int("SPOTCHECK_BOOTSTRAP_SAMPLES", 1000, minimum=100),
        sigmoid_below_positives=env_int("SPOTCHECK_SIGMOID_BELOW", 50, minimum=0),
        min_positives_per_split=env_int("SPOTCHECK_MIN_POSITIVES", 5),
        # Predictions are bit-identical for a given thread count; a different count changes
        # floating-point sums in the last bits, so the count is logged with every run.
        num_threads=env_int("SPOTCHECK_NUM_THREADS", DEFAULT_THREADS),
        max_depth=_max_depth(),
    )


def _max_depth() -> int:
    """``SPOTCHECK_MAX_DEPTH``: -1 for no cap, else at least 1."""
    from training.model import DEFAULT_MAX_DEPTH

    depth = env_int("SPOTCHECK_MAX_DEPTH", DEFAULT_MAX_DEPTH, minimum=-1)
    if depth == 0:
        raise SettingsError("SPOTCHECK_MAX_DEPTH='0': use -1 for no cap, or at least 1")
    return depth
