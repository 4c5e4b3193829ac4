"""MLflow: connect (failing fast), run lifecycle, and logging of data, metrics and the model.

Tracking goes wherever ``MLFLOW_TRACKING_URI`` points (default: SQLite in the working
directory); the registry uses the same URI. The training run is ended FAILED on any error,
so a crash never leaves a run RUNNING.
"""

from __future__ import annotations

import os
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
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

import features
from features.model_contract import CounterfeitScorer, prepare_input, write_artifacts
from features.spec import FeatureSpec

MODEL_ARTIFACT = "model"
HOLDOUT_ARTIFACT = "holdout/test.parquet"
# How long the up-front reachability check may take against a tracking server.
CONNECT_TIMEOUT_SECONDS = 10


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be reached or used."""


@contextmanager
def _fail_fast_http(timeout: int) -> Iterator[None]:
    """Temporarily make MLflow's HTTP client give up quickly instead of retrying for minutes."""
    overrides = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout),
    }
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect(tracking_uri: str, timeout: int = CONNECT_TIMEOUT_SECONDS) -> MlflowClient:
    """Point MLflow at ``tracking_uri`` and prove it answers, before any long computation.

    Raises:
        TrackingError: The store cannot be reached (message names the URI and the cause).
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        with _fail_fast_http(timeout):
            client.search_experiments(max_results=1)
    except Exception as exc:
        cause = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise TrackingError(
            f"MLflow tracking store {tracking_uri} is unreachable: {cause}"
        ) from exc
    return client


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


def _requirements() -> list[str]:
    """Pinned runtime requirements of the scoring model (skips MLflow's slow inference)."""
    import lightgbm
    import pyarrow

    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"pyarrow=={pyarrow.__version__}",
    ]


def log_scoring_model(
    scorer: CounterfeitScorer, example_rows: pd.DataFrame, metadata: dict[str, Any]
) -> ModelInfo:
    """Log the scorer as an MLflow pyfunc model with signature, input example and metadata.

    Args:
        scorer: A fitted scorer (``CounterfeitScorer.from_parts``).
        example_rows: A few feature rows for the input example and signature.
        metadata: Extra model metadata (spec hash, calibration method, ...).

    Returns:
        MLflow's ModelInfo (``model_uri`` is ``models:/<model id>``).
    """
    example = prepare_input(example_rows, scorer.spec).reset_index(drop=True)
    signature = infer_signature(example, scorer.predict(None, example))
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(
            tmp, scorer.booster_, scorer.calibrator_, scorer.spec, scorer.levels_
        )
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            # An empty scorer: everything it needs arrives through the artifacts.
            python_model=CounterfeitScorer(),
            artifacts=artifacts,
            signature=signature,
            input_example=example,
            code_paths=[str(Path(features.__file__).resolve().parent)],
            pip_requirements=_requirements(),
            metadata={
                "feature_spec_hash": scorer.spec.hash,
                "feature_spec": scorer.spec.to_dict(),
                **metadata,
            },
        )
