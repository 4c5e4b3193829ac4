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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
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


class Unavailable(ServingError):
    """Work refused or stopped: the service is full, or the request passed its deadline."""


# When the request being handled must be answered by (``time.monotonic()``), set per request
# by the service; context variables follow the request into the handler's worker thread.
REQUEST_DEADLINE: ContextVar[float | None] = ContextVar("spotcheck_deadline", default=None)


def check_deadline() -> None:
    """Stop the work of a request whose deadline has passed.

    Raises:
        Unavailable: The request is past its deadline (the client got its 504 already).
    """
    deadline = REQUEST_DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        raise Unavailable("the request passed its timeout; its work was stopped")


class WorkLimit:
    """At most ``limit`` requests' work running at once, counted where the work runs.

    BentoML (1.4.39, issue #5642) answers a timed-out request 504 and frees its concurrency
    slot and its thread-limiter token while the handler thread runs on, so by BentoML's own
    count new requests start beside work it forgot. Counting in the handler itself keeps the
    limit true; ``check_deadline`` between chunks makes forgotten work stop soon after its
    504 instead of running to the end.

    Attributes:
        running: Requests whose work is running now.
        peak: The most that ever ran at once.
        refused: Requests refused because ``limit`` were running.
    """

    def __init__(self, limit: int, observer: Callable[[WorkLimit], None] | None = None) -> None:
        self.limit = limit
        self.running = 0
        self.peak = 0
        self.refused = 0
        self._observer = observer or (lambda work: None)
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``limit`` slots while a request's work runs.

        Raises:
            Unavailable: ``limit`` requests are running, or this one is past its deadline.
        """
        check_deadline()
        with self._lock:
            if self.running >= self.limit:
                self.refused += 1
                self._observer(self)
                raise Unavailable(f"busy: {self.running} requests running, the limit")
            self.running += 1
            self.peak = max(self.peak, self.running)
            self._observer(self)
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
                self._observer(self)


@dataclass(frozen=True)
class ServedModel:
    """The loaded model and what ``GET /model`` tells about it.

    Attributes:
        scorer: The spotcheck scorer inside the model.
        facts: ``model_facts`` of its URI (name, version, alias, run, holdout metrics).
        pyfunc: The MLflow pyfunc model around the scorer (reports are built from it).
    """

    scorer: CounterfeitScorer
    facts: dict[str, Any]
    pyfunc: Any = field(default=None, compare=False, repr=False)

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


def registered_version(uri: str) -> str | None:
    """The version a ``models:/`` URI names now (an alias moves), or None for other URIs.

    Raises:
        ServingError: The registry cannot resolve the URI.
    """
    from mlflow.exceptions import MlflowException

    try:
        return _registry_identity(uri)[1]
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
    sees either the old or the new snapshot, never a mix. A replacement built with another
    FeatureSpec than the model's is not loaded: the old snapshot keeps serving and ``error``
    says why, until the file changes again.
    """

    path: Path
    spec: FeatureSpec
    data_spec: FeatureSpec
    table: pd.DataFrame
    mtime_ns: int
    error: str | None = None
    _rejected_ns: int | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def rows(
        self, store_ids: Sequence[str], names: Sequence[str] | None = None
    ) -> tuple[list[dict], list[str]]:
        """Feature mappings (of ``names``, default the model's) of the known stores; unknown ids."""
        table = self.table  # one reference: a concurrent reload cannot mix two snapshots
        known = [s for s in store_ids if s in table.index]
        unknown = [s for s in store_ids if s not in table.index]
        frame = table.loc[known, list(names or self.spec.names)]
        return [_row_dict(frame.iloc[i]) for i in range(len(frame))], unknown

    def reload_if_changed(self) -> bool:
        """Load the file again if it changed; True if a new snapshot is in place."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return False  # being replaced or gone: keep serving the snapshot in hand
        if mtime in (self.mtime_ns, self._rejected_ns):
            return False
        with self._lock:
            if mtime in (self.mtime_ns, self._rejected_ns):
                return False
            try:
                fresh = load_snapshot(self.path, self.spec)
            except ServingError as exc:
                # Not retried per request: only a new write of the file is looked at again.
                self._rejected_ns, self.error = mtime, f"replacement not loaded: {exc}"
                return False
            self.table, self.data_spec, self.mtime_ns = fresh.table, fresh.data_spec, fresh.mtime_ns
            self.error = None
        return True

    @property
    def info(self) -> dict[str, Any]:
        """What ``GET /model`` tells about the snapshot: file, stores, FeatureSpec, error."""
        import datetime as dt

        modified = dt.datetime.fromtimestamp(self.mtime_ns / 1e9, tz=dt.UTC).isoformat()
        return {"path": str(self.path), "stores": len(self.table), "modified_at": modified,
                "feature_spec_hash": self.data_spec.hash, "error": self.error}  # fmt: skip


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
    # Values of these exact types are right for the feature whatever they are; anything else
    # goes through ``_type_problem``. (A 1,000-store batch has 131,000 values: checking
    # each one the long way cost half as much as scoring them.)
    fine = {f.name: _FINE_TYPES[f.dtype] for f in spec}
    floats = {f.name for f in spec if f.dtype in ("float", "int")}
    whole = {f.name for f in spec if f.dtype == "int"}
    records = []
    for i, store in enumerate(stores):
        where = f"stores[{i}]"
        features = store.get("features")
        if not isinstance(features, Mapping):
            raise RequestError(f"{where}.features: expected an object of feature values")
        if not features.keys() <= fine.keys():
            shown = ", ".join(repr(n) for n in sorted(set(features) - set(fine))[:5])
            raise RequestError(f"{where}.features: unknown feature(s) {shown}")
        for name, value in features.items():
            kind = type(value)
            if kind in fine[name] or (
                kind is float
                and name in floats
                and value - value == 0.0  # finite: NaN and infinity give NaN
                and (name not in whole or value.is_integer())
            ):
                continue
            problem = _type_problem(by_name[name].dtype, value)
            if problem:
                raise RequestError(f"{where}.features.{name}: {problem}, got {value!r}")
        records.append(dict(features))
    return records


# Per FeatureSpec dtype: value types that need no further look (see ``check_stores``).
_FINE_TYPES = {
    "float": frozenset({int, type(None)}),
    "int": frozenset({int, type(None)}),
    "bool": frozenset({bool, type(None)}),
    "category": frozenset({str, type(None)}),
}


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
