"""MLflow tracking for training and serving: where it is, and a connection that fails fast.

| setting | environment variable | default |
|---|---|---|
| MLflow tracking (and registry) URI | ``MLFLOW_TRACKING_URI`` | ``sqlite:///<cwd>/mlflow.db`` |
| registered model name | ``SPOTCHECK_MODEL_NAME`` | ``counterfeit-store-classifier`` |

Both are read when asked for, so a run started in another directory uses that directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from features import FeaturesError
from features.settings import env_text

DEFAULT_MODEL_NAME = "counterfeit-store-classifier"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
# How long the up-front reachability check may take against a tracking server.
CONNECT_TIMEOUT_SECONDS = 10


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or a SQLite store in the current working directory."""
    return env_text("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}")


def model_name() -> str:
    """``SPOTCHECK_MODEL_NAME``, or ``counterfeit-store-classifier``."""
    return env_text("SPOTCHECK_MODEL_NAME", DEFAULT_MODEL_NAME)


class TrackingError(FeaturesError):
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


def connect(uri: str | None = None, timeout: int = CONNECT_TIMEOUT_SECONDS) -> MlflowClient:
    """Point MLflow at ``uri`` (default ``tracking_uri()``) and prove it answers, early.

    Called before any long computation, so an unreachable server fails in seconds.

    Raises:
        TrackingError: The store cannot be reached (message names the URI and the cause).
    """
    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        with _fail_fast_http(timeout):
            client.search_experiments(max_results=1)
    except Exception as exc:
        cause = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise TrackingError(f"MLflow tracking store {uri} is unreachable: {cause}") from exc
    return client
