"""BentoML plumbing of ``spotcheck serve``: the model store import and the server command."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from serving import ServingError

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


def _plain(facts: dict) -> dict:
    """Metadata BentoML accepts: no None values."""
    return {k: v for k, v in facts.items() if v is not None}


def server_command(host: str, port: int) -> list[str]:
    """``bentoml serve`` of the service, from this environment."""
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port)]
