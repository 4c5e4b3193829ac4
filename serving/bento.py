"""BentoML plumbing of ``spotcheck serve``: the model store import and the server command."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from serving import ServingError

if TYPE_CHECKING:
    from serving.online import ServedModel

SERVICE = "serving.service:CounterfeitService"


def bento_tag(facts: dict) -> str:
    """BentoML model tag of a model: ``spotcheck-<name>:v<version>`` or ``...:run-<id>``."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", str(facts.get("name") or "run").lower()).strip("-")
    version = f"v{facts['version']}" if facts.get("version") else f"run-{_run_of(facts['uri'])}"
    return f"spotcheck-{name}:{version}"


def _run_of(uri: str) -> str:
    match = re.match(r"runs:/([0-9a-f]+)/", uri)
    if not match:
        raise ServingError(f"model URI {uri}: expected models:/NAME/VERSION, @ALIAS or runs:/")
    return match.group(1)[:16]


def import_to_store(uri: str, snapshot: Path | None) -> str:
    """Check the model (and snapshot), import it into BentoML's model store; its tag.

    The model is loaded once here so that a model that is not spotcheck's, or a snapshot
    built with another FeatureSpec, is refused before any server starts. A version already
    in the store is reused (a registered version never changes).

    Raises:
        ServingError: The model does not load, is not spotcheck's, or the snapshot differs.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    from features.scoring.model import scorer_of
    from serving.batch import load_model
    from serving.online import load_snapshot, model_facts

    facts = model_facts(uri)
    spec = scorer_of(load_model(uri)).spec
    if snapshot is not None:
        load_snapshot(snapshot, spec)
    tag = bento_tag(facts)
    try:
        bentoml.models.get(tag)
    except NotFound:
        # Import the resolved version, not the alias: the tag must name what it holds.
        source = f"models:/{facts['name']}/{facts['version']}" if facts.get("name") else uri
        bentoml.mlflow.import_model(tag, source, metadata=_plain(facts))
    return tag


def load_from_store(tag: str) -> ServedModel:
    """The model imported into BentoML's model store under ``tag``, ready to serve."""
    import bentoml

    from features.scoring.model import scorer_of
    from serving.online import ServedModel

    stored = bentoml.models.get(tag)
    pyfunc = bentoml.mlflow.load_model(stored)
    return ServedModel(scorer_of(pyfunc), dict(stored.info.metadata), pyfunc)


def _plain(facts: dict) -> dict:
    """Metadata BentoML accepts: no None values."""
    return {k: v for k, v in facts.items() if v is not None}


def server_command(host: str, port: int) -> list[str]:
    """``bentoml serve`` of the service, from this environment."""
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port)]


# What a Bento carries: the service and the code it imports, nothing of training or of the
# feature build (reports, which need DuckDB and the histories, are a --with-reports option).
# mlflow-skinny, not mlflow: loading a pyfunc model needs no server, UI or scikit-learn.
BENTO_CODE = [
    "serving/__init__.py", "serving/service.py", "serving/online.py", "serving/metrics.py",
    "serving/batch.py", "serving/bento.py", "serving/follow.py", "features/__init__.py",
    "features/spec.py", "features/scoring/*.py",
]  # fmt: skip
BENTO_REPORT_CODE = [
    "serving/report.py", "features/settings.py", "features/build.py", "features/byo.py",
    "features/io.py", "features/contract/**/*.py", "features/store/**/*.py",
    "features/links/**/*.py",
]  # fmt: skip
BENTO_PACKAGES = [
    "bentoml", "mlflow-skinny", "lightgbm", "numba", "numpy", "pandas", "pyarrow", "fastapi",
    "pydantic", "prometheus-client",
]  # fmt: skip


def build_bento(uri: str, with_reports: bool = False) -> str:
    """Build a Bento of the service and the model; its tag (``spotcheck:<version>``).

    The Bento carries the model (imported as by ``spotcheck serve``), the serving code and the
    scoring code it imports, and pinned runtime requirements: no Optuna, scikit-learn, shap or
    training code; DuckDB and the feature build only ``with_reports``. It serves with
    ``bentoml serve TAG`` (or a container from ``bentoml containerize``).

    Raises:
        ServingError: The model does not load or is not spotcheck's.
    """
    import json
    import tempfile
    from importlib.metadata import version

    import bentoml

    tag = import_to_store(uri, None)
    packages = [*BENTO_PACKAGES, *(["duckdb", "scipy"] if with_reports else [])]
    config = {
        "service": SERVICE,
        "name": "spotcheck",
        "labels": {"mlflow_model": re.sub(r"[^A-Za-z0-9_.-]+", "_", uri)},
        "include": [*BENTO_CODE, *(BENTO_REPORT_CODE if with_reports else [])],
        "python": {"packages": [f"{p}=={version(p)}" for p in packages]},
        "models": [tag],
    }
    # A bentofile (JSON is YAML) outside the source tree: the build reads nothing else.
    with tempfile.TemporaryDirectory() as tmp:
        bentofile = Path(tmp) / "bentofile.yaml"
        bentofile.write_text(json.dumps(config))
        bento = bentoml.bentos.build_bentofile(
            str(bentofile),
            build_ctx=str(Path(__file__).resolve().parent.parent),
            args={"model": tag},  # the service's bentoml.use_arguments(): what to load
        )
    return str(bento.tag)
