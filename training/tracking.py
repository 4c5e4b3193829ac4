"""MLflow for training: run lifecycle, and logging of data, metrics and the model.

Tracking goes wherever ``MLFLOW_TRACKING_URI`` points (``features.tracking``); the registry
uses the same URI. The training run is ended FAILED on any error, so a crash never leaves a
run RUNNING.
"""

from __future__ import annotations

import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models.model import ModelInfo

import features
from features.scoring.model import CounterfeitScorer, log_scorer
from features.spec import FeatureSpec

MODEL_ARTIFACT = "model"
HOLDOUT_ARTIFACT = "holdout/test.parquet"
# The (store, as-of) keys the registered model was fit on: gates compare on other rows.
TRAINING_KEYS_ARTIFACT = "training/keys.parquet"


@contextmanager
def training_run(experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[str]:
    """Start the parent training run; end it FINISHED, or FAILED/KILLED on any exception.

    Yields:
        The run id.
    """
    mlflow.set_experiment(experiment)
    run = mlflow.start_run(run_name=run_name, tags=tags)
    try:
        yield run.info.run_id
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def git_commit() -> dict[str, str]:
    """Commit (and whether the tree is dirty) of the code that trains, for the run's tags."""
    repo = Path(features.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"mlflow.source.git.commit": "unknown"}
    return {"mlflow.source.git.commit": commit, "git_dirty": str(dirty).lower()}


def log_dataset(frame: pd.DataFrame, source: str, digest: str, name: str) -> None:
    """Log the training table as an MLflow dataset input with its digest and source."""
    with warnings.catch_warnings():
        # MLflow warns about integer columns and ambiguous local sources; neither applies.
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=source, name=name, targets="is_counterfeit")
        mlflow.log_input(dataset, context="training")
    mlflow.set_tags({"data.digest": digest, "data.source": source, "data.rows": str(len(frame))})


def log_spec(spec: FeatureSpec) -> None:
    """Log the FeatureSpec JSON as an artifact and its hash as a tag."""
    mlflow.log_text(spec.to_json(), "feature_spec.json")
    mlflow.set_tag("feature_spec.hash", spec.hash)


def log_frame(frame: pd.DataFrame, artifact_path: str) -> None:
    """Log a DataFrame as a Parquet artifact at ``artifact_path``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_path).name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(artifact_path).parent))


def log_metrics(metrics: dict[str, float]) -> None:
    """Log finite metrics (NaN, e.g. a slice with one class, is skipped)."""
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})


def log_scoring_model(
    scorer: CounterfeitScorer, example_rows: pd.DataFrame, metadata: dict[str, Any]
) -> ModelInfo:
    """Log the scorer as an MLflow pyfunc model with signature, input example and metadata.

    Args:
        scorer: A fitted scorer (``CounterfeitScorer.from_parts``).
        example_rows: A few feature rows for the input example and signature.
        metadata: Extra model metadata (calibration method, data digest, ...).

    Returns:
        MLflow's ModelInfo (``model_uri`` is ``models:/<model id>``).
    """
    return log_scorer(scorer, example_rows, MODEL_ARTIFACT, metadata)
