"""Online scoring without the web framework: the served model, the snapshot, request checks.

``serving.service`` (BentoML) wires these to HTTP routes; everything here is plain Python so
it can be tested, and reused by another framework, without a server.

A request's stores are checked against the model's FeatureSpec before anything is scored:
unknown feature names, values of the wrong type, NaN or infinity are a ``RequestError``
naming the store and the field. Every feature may be missing (``null`` or left out):
LightGBM routes missing values the way it learned to.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving import ServingError

if TYPE_CHECKING:
    import pandas as pd

    from features.scoring.model import CounterfeitScorer
    from features.spec import FeatureSpec

MAX_STORES = 1000
# Probability bands of a score, from the floor up; reports and the service both use them.
BANDS = ((0.9, "very high"), (0.5, "high"), (0.2, "elevated"), (0.0, "low"))
# Scorers whose holdout metrics the training run logs (``<scorer>.<metric>``).
HOLDOUT_SCORERS = ("model", "logistic_regression", "price_rule")
MAX_STORE_ID = 200


def band(probability: float) -> str:
    """The probability band of a score ("very high" .. "low")."""
    return next(name for floor, name in BANDS if probability >= floor)


class RequestError(ServingError):
    """A request the service cannot score; the message names the field and the problem."""


@dataclass(frozen=True)
class ServedModel:
    """The loaded model and what ``GET /model`` tells about it.

    Attributes:
        scorer: The spotcheck scorer inside the model.
        facts: ``model_facts`` of its URI (name, version, alias, run, holdout metrics).
    """

    scorer: CounterfeitScorer
    facts: dict[str, Any]

    @property
    def label(self) -> dict[str, Any]:
        """Name, version and URI: what every response carries once."""
        return {k: self.facts.get(k) for k in ("name", "version", "uri")}

    @property
    def info(self) -> dict[str, Any]:
        """Everything ``GET /model`` answers: the facts plus the features and spec hash."""
        return {
            **dict.fromkeys(("uri", "name", "version", "alias", "run_id", "trained_at")),
            **self.facts,
            "feature_spec_hash": self.scorer.spec.hash,
            "features": [
                {"name": f.name, "group": f.group, "dtype": f.dtype, "description": f.description}
                for f in self.scorer.spec
            ],
        }


def model_facts(uri: str) -> dict[str, Any]:
    """Name, version, alias, run, trained-at and holdout metrics of a model URI.

    Registry lookups only (the model itself is not loaded); ``runs:/`` URIs give the URI.

    Raises:
        ServingError: The tracking store cannot resolve the URI.
    """
    from mlflow.exceptions import MlflowException

    try:
        name, version, alias = _registry_identity(uri)
        return {"uri": uri, "name": name, "version": version, "alias": alias,
                **_run_facts(name, version)}  # fmt: skip
    except MlflowException as exc:
        raise ServingError(f"cannot resolve model {uri}: {exc.message}") from exc


def _registry_identity(uri: str) -> tuple[str | None, str | None, str | None]:
    """``(name, version, alias)`` of a ``models:/NAME/V`` or ``models:/NAME@ALIAS`` URI."""
    if not uri.startswith("models:/"):
        return None, None, None
    from features.tracking import connect

    ref = uri.removeprefix("models:/")
    client = connect()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version), alias
    name, _, version = ref.partition("/")
    return name, version, None


def _run_facts(name: str | None, version: str | None) -> dict[str, Any]:
    """Trained-at and holdout metrics of a registered version's training run."""
    if name is None:
        return {}
    from features.tracking import connect

    client = connect()
    model_version = client.get_model_version(name, version)
    if not model_version.run_id:
        return {}
    run = client.get_run(model_version.run_id)
    # The training run logs the holdout metrics per scorer: model.pr_auc, price_rule.roc_auc...
    metrics: dict[str, dict[str, float]] = {}
    for key, value in run.data.metrics.items():
        scorer, _, metric = key.partition(".")
        if scorer in HOLDOUT_SCORERS:
            metrics.setdefault(scorer, {})[metric] = value
    return {
        "run_id": model_version.run_id,
        "trained_at": _iso(run.info.start_time),
        "holdout_metrics": metrics,
    }


def _iso(millis: int | None) -> str | None:
    import datetime as dt

    if millis is None:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC).isoformat()


@dataclass
class Snapshot:
    """The online feature snapshot: one row per store, reloaded when its file changes.

    A reload builds the new table completely before it replaces the old one, so a request
    sees either the old or the new snapshot, never a mix.
    """

    path: Path
    spec: FeatureSpec
    data_spec: FeatureSpec
    table: pd.DataFrame
    mtime_ns: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def rows(self, store_ids: Sequence[str]) -> tuple[list[dict], list[str]]:
        """Feature mappings of the known stores and the list of unknown ids."""
        table = self.table  # one reference: a concurrent reload cannot mix two snapshots
        known = [s for s in store_ids if s in table.index]
        unknown = [s for s in store_ids if s not in table.index]
        frame = table.loc[known, list(self.spec.names)]
        return [_row_dict(frame.iloc[i]) for i in range(len(frame))], unknown

    def reload_if_changed(self) -> bool:
        """Load the file again if it changed; True if a new snapshot is in place."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return False  # being replaced or gone: keep serving the snapshot in hand
        if mtime == self.mtime_ns:
            return False
        with self._lock:
            if mtime == self.mtime_ns:
                return False
            fresh = load_snapshot(self.path, self.spec)
            self.table, self.data_spec, self.mtime_ns = fresh.table, fresh.data_spec, fresh.mtime_ns
        return True


def _row_dict(row: pd.Series) -> dict[str, Any]:
    return {k: (None if _is_missing(v) else v) for k, v in row.items()}


def _is_missing(value: object) -> bool:
    try:
        return value is None or bool(value != value)  # NaN and pandas NA
    except TypeError:
        return False


def load_snapshot(path: str | Path, model_spec: FeatureSpec) -> Snapshot:
    """Read a feature table written by ``spotcheck features`` as the online snapshot.

    Raises:
        ServingError: The file or its FeatureSpec sidecar is missing, or the snapshot's
            features are defined differently from the model's (train/serve skew).
    """
    import pandas as pd

    from features.spec import FeatureSpec
    from serving.batch import check_spec_against

    path = Path(path)
    sidecar = path.with_name(path.name + ".spec.json")
    if not path.is_file():
        raise ServingError(f"snapshot {path} does not exist")
    if not sidecar.is_file():
        raise ServingError(f"snapshot {path} has no FeatureSpec ({sidecar.name} is missing)")
    data_spec = FeatureSpec.from_json(sidecar.read_text())
    check_spec_against(model_spec, data_spec)
    mtime = path.stat().st_mtime_ns
    table = pd.read_parquet(path)
    if "store_id" not in table.columns:
        raise ServingError(f"snapshot {path} has no store_id column")
    table = table.assign(store_id=table["store_id"].astype(str)).set_index("store_id")
    # The whole table is kept (as_of and features the model does not use included): case
    # reports are built from it as ``spotcheck report`` builds them from a feature table.
    return Snapshot(path, model_spec, data_spec, table, mtime)


def check_stores(stores: Sequence[Mapping[str, Any]], spec: FeatureSpec) -> list[dict]:
    """Check a request's stores against the FeatureSpec; their feature mappings.

    Raises:
        RequestError: Naming the store (index and id) and the field at fault.
    """
    if not stores:
        raise RequestError("stores: the batch is empty; send 1 to 1,000 stores")
    if len(stores) > MAX_STORES:
        raise RequestError(f"stores: {len(stores)} stores, at most {MAX_STORES} per request")
    by_name = {f.name: f for f in spec}
    records = []
    for i, store in enumerate(stores):
        where = f"stores[{i}]"
        features = store.get("features")
        if not isinstance(features, Mapping):
            raise RequestError(f"{where}.features: expected an object of feature values")
        unknown = sorted(set(features) - set(by_name))
        if unknown:
            shown = ", ".join(repr(n) for n in unknown[:5])
            raise RequestError(f"{where}.features: unknown feature(s) {shown}")
        for name, value in features.items():
            problem = _type_problem(by_name[name].dtype, value)
            if problem:
                raise RequestError(f"{where}.features.{name}: {problem}, got {value!r}")
        records.append(dict(features))
    return records


def _type_problem(dtype: str, value: object) -> str | None:
    """What is wrong with a value for a feature of ``dtype`` (None: nothing)."""
    if value is None:
        return None
    if dtype == "category":
        return None if isinstance(value, str) else "expected a string category"
    if dtype == "bool":
        return None if isinstance(value, bool) or value in (0, 1) else "expected true or false"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "expected a number"
    if not math.isfinite(value):
        return "expected a finite number (NaN and infinity are not allowed; send null)"
    if dtype == "int" and float(value) != int(value):
        return "expected a whole number"
    return None


def api_token() -> str | None:
    """The bearer token scoring routes require (``SPOTCHECK_API_TOKEN``), if one is set."""
    return os.environ.get("SPOTCHECK_API_TOKEN") or None
