"""The champion as a BentoML prediction service; ``spotcheck serve`` starts it.

Routes (JSON; BentoML's own OpenAPI page at ``/`` and ``/docs.json`` documents them):

* ``POST /score``: ``{"stores": [{"store_id", "features": {...}}]}`` (1-1,000) -> per store
  the calibrated score, its band, base value, raw margin, reasons both ways and group sums;
* ``POST /score_stores``: ``{"store_ids": [...]}``, features from the online snapshot; an
  unknown id is an error on that item only;
* ``POST /explain``: the full contribution vector per store;
* ``GET /model``: name, version, alias, trained-at, holdout metrics, features, spec hash;
* ``GET /report/{store_id}``: the reviewer case report (HTML) of a store in the snapshot,
  built from the histories (``--histories``);
* ``/livez``, ``/readyz`` (ready once the model is loaded and TreeSHAP compiled),
  ``/metrics`` (BentoML's request counts and latencies plus the score distribution and the
  top reasons, for drift watching).

Set by ``spotcheck serve`` and read when a worker starts: ``SPOTCHECK_SERVE_BENTO_MODEL``
(the tag the MLflow model was imported under in BentoML's model store; its metadata holds
``serving.online.model_facts``), ``SPOTCHECK_SERVE_SNAPSHOT`` (optional feature table),
``SPOTCHECK_SERVE_HISTORIES`` (optional histories directory the snapshot was built from) and
``SPOTCHECK_API_TOKEN`` (optional bearer token for every route but health and metrics).
"""

from __future__ import annotations

import gc
import hmac
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument, NotFound, ServiceUnavailable
from fastapi import FastAPI
from pydantic import BaseModel, Field

from serving.online import (
    MAX_STORE_ID,
    MAX_STORES,
    REQUEST_DEADLINE,
    RequestError,
    ServedModel,
    Unavailable,
    WorkLimit,
    band,
    check_stores,
)

if TYPE_CHECKING:
    from serving.follow import ModelFollower

# Concurrency past which BentoML answers 429 at once, and the request timeout (seconds);
# `spotcheck serve --max-concurrency/--timeout` set them through the environment.
MAX_CONCURRENCY = 32
TIMEOUT_SECONDS = 30
# Stores scored between two looks at the request's deadline (~0.1 s of work).
CHUNK = 250
# Largest request body (SPOTCHECK_SERVE_MAX_BODY_BYTES): 1,000 stores fit 6 times over.
MAX_BODY_BYTES = 16 * 2**20
# Paths that stay open without a token: health, metrics and the API docs.
OPEN_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json", "/")
OPEN_PREFIXES = ("/static_content", "/assets")


def _timeout_seconds() -> float:
    return float(os.environ.get("SPOTCHECK_SERVE_TIMEOUT", TIMEOUT_SECONDS))


def _max_concurrency() -> int:
    return int(os.environ.get("SPOTCHECK_SERVE_MAX_CONCURRENCY", MAX_CONCURRENCY))


class StoreIn(BaseModel):
    """One store to score: its id and its feature values by FeatureSpec name."""

    store_id: Annotated[str, Field(min_length=1, max_length=MAX_STORE_ID)]
    features: dict[str, Any]


Stores = Annotated[list[StoreIn], Field(min_length=1, max_length=MAX_STORES)]
StoreIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_STORE_ID)]],
    Field(min_length=1, max_length=MAX_STORES),
]

# GET routes BentoML's API decorator does not make; mounted at the root after BentoML's own
# routes (no docs of its own: BentoML's OpenAPI page is the one).
info_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
# A Bento built by `spotcheck bento build` carries its model's tag as the argument `model`.
BENTO_ARGUMENTS = bentoml.use_arguments()


class BearerAuth:
    """ASGI middleware: 401 on every route but health, metrics and docs without the token."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        """Pass the request on, or answer 401 (the token is read per request)."""
        from serving.online import api_token

        token = api_token()
        if scope["type"] != "http" or token is None or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        expected = f"Bearer {token}".encode()
        if hmac.compare_digest(given, expected):
            await self.app(scope, receive, send)
            return
        await _refuse(
            send, 401, "missing or invalid bearer token", ((b"www-authenticate", b"Bearer"),)
        )


class RequestGuard:
    """ASGI middleware on POSTs: 415 unless JSON, 411 without a length, 413 over the limit.

    Checked on the headers, before any of the body is read: a refused request costs the
    server nothing. 1,000 stores of 131 features take about 2.5 MB of JSON. (Without the
    content-type check BentoML answered a multipart type without a boundary with a 500;
    schema fuzzing found it.)
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        """Pass the request on, or answer 411/413/415."""
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        limit = int(os.environ.get("SPOTCHECK_SERVE_MAX_BODY_BYTES", MAX_BODY_BYTES))
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        media = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media != b"application/json":
            await _refuse(send, 415, f"content-type {media.decode()!r}: send application/json")
        elif length is None:
            await _refuse(send, 411, "a POST needs a Content-Length header")
        elif not length.isdigit() or int(length) > limit:
            await _refuse(send, 413, f"body of {length.decode()} bytes: at most {limit}")
        else:
            await self.app(scope, receive, send)


class Deadline:
    """ASGI middleware: the time by which BentoML will have answered 504 (``check_deadline``)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        """Pass the request on with its deadline set."""
        REQUEST_DEADLINE.set(time.monotonic() + _timeout_seconds())
        await self.app(scope, receive, send)


async def _refuse(send, status: int, message: str, headers: tuple = ()) -> None:
    """Answer ``status`` with ``{"error": message}`` (the request is not read further)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps({"error": message}).encode()})


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


# Read when the server imports this module (BentoML fixes a service's traffic settings in its
# definition); only `bentoml serve` imports it.
@bentoml.service(
    name="spotcheck",
    workers=1,
    traffic={
        "timeout": _timeout_seconds(),
        "max_concurrency": _max_concurrency(),
    },
)
@bentoml.asgi_app(info_app, path="/")
class CounterfeitService:
    """Scores and explains stores with the model imported under ``SPOTCHECK_SERVE_BENTO_MODEL``.

    Every request reads ``self.model`` once and uses that model throughout, so a model
    reloaded meanwhile never mixes with the one a response started with.
    """

    def __init__(self) -> None:
        from serving.bento import load_from_store
        from serving.metrics import ServiceMetrics
        from serving.online import load_snapshot

        self.model = load_from_store(_model_tag())
        snapshot = os.environ.get("SPOTCHECK_SERVE_SNAPSHOT")
        self.snapshot = load_snapshot(snapshot, self.model.scorer.spec) if snapshot else None
        histories = os.environ.get("SPOTCHECK_SERVE_HISTORIES")
        self.histories = Path(histories) if histories else None
        self.metrics = ServiceMetrics()
        self.work = WorkLimit(_max_concurrency(), self.metrics.work_changed)
        self.follower = _start_follower(self)
        self._scores = None  # (snapshot version, model, scores) for reports
        # Compile and warm TreeSHAP before /readyz says ready: the first request is not slow.
        self.model.scorer.score_records([{}])
        # Everything loaded so far lives as long as the worker: keep it out of the cyclic
        # garbage collector, whose full passes over it paused requests for 200-340 ms under
        # load (p99 69 ms at 100 requests/s; 8 ms frozen, experiments/RESULTS.md).
        gc.collect()
        gc.freeze()
        self.ready = True

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    @bentoml.api(route="/score")
    def score(self, stores: Stores) -> dict[str, Any]:
        """Score stores given with their features; reasons both ways with every score."""
        model = self.model
        records = _checked(stores, model)
        with _working(self.work):
            scored = self._scored(model, [s.store_id for s in stores], records)
        return {"model": model.label, "stores": scored}

    @bentoml.api(route="/score_stores")
    def score_stores(self, store_ids: StoreIds) -> dict[str, Any]:
        """Score stores by id with the snapshot's features; unknown ids are item errors."""
        if self.snapshot is None:
            raise NotFound("no feature snapshot: start the service with --snapshot FEATURES")
        model = self.model
        with _working(self.work):
            self.snapshot.reload_if_changed()
            rows, unknown = self.snapshot.rows(store_ids, model.scorer.spec.names)
            missing_ids = set(unknown)
            known = [s for s in store_ids if s not in missing_ids]
            scored = self._scored(model, known, rows) if known else []
        by_id = dict(zip(known, scored, strict=True))
        missing = {"error": "unknown store id: not in the feature snapshot"}
        out = [by_id.get(s) or {"store_id": s, **missing} for s in store_ids]
        return {"model": model.label, "stores": out}

    @bentoml.api(route="/explain")
    def explain(self, stores: Stores) -> dict[str, Any]:
        """The full contribution vector (log-odds per feature) of every store."""
        model = self.model
        records = _checked(stores, model)
        scorer = model.scorer
        with _working(self.work):
            contributions = np.vstack(
                [scorer.contributions(scorer.records_.matrix(part)) for part in _chunks(records)]
            )
        names = scorer.spec.names
        return {
            "model": model.label,
            "stores": [
                {
                    "store_id": store.store_id,
                    "base_value": float(row[-1]),
                    "raw_score": float(row.sum()),
                    "contributions": dict(zip(names, map(float, row[:-1]), strict=True)),
                }
                for store, row in zip(stores, contributions, strict=True)
            ],
        }

    @info_app.get("/model")
    def model_info(self) -> dict[str, Any]:
        """Name, version, alias, trained-at, holdout metrics, features and spec hash.

        Also the snapshot in use and, when the service follows an alias, what it follows
        and the last reload error (the previous model keeps serving after one).
        """
        info = dict(self.model.info)
        info["snapshot"] = self.snapshot.info if self.snapshot is not None else None
        info["follow"] = self.follower.info if self.follower is not None else None
        return info

    @info_app.get("/report/{store_id}")
    def report(self, store_id: str):
        """The reviewer case report of a store in the snapshot, as self-contained HTML."""
        from fastapi.responses import HTMLResponse, JSONResponse

        from serving.online import Unavailable
        from serving.report import build_cases, report_html

        if self.snapshot is None or self.histories is None:
            message = "no reports: start the service with --snapshot and --histories"
            return JSONResponse({"error": message}, status_code=404)
        model = self.model
        try:
            with self.work.slot():
                self.snapshot.reload_if_changed()
                table = self.snapshot.table  # one snapshot for the whole report
                if store_id not in table.index:
                    message = f"unknown store id {store_id!r}: not in the feature snapshot"
                    return JSONResponse({"error": message}, status_code=404)
                frame = table.reset_index()
                cases, _ = build_cases(
                    model.pyfunc, model.facts.get("uri", ""), self.histories, [store_id],
                    (frame, self.snapshot.data_spec), self._snapshot_scores(model, frame),
                )  # fmt: skip
        except Unavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return HTMLResponse(report_html(cases[0]))

    def _snapshot_scores(self, model: ServedModel, frame):
        """Every snapshot store's score (the reports' linked stores), once per snapshot."""
        from serving.report import table_scores

        key = (self.snapshot.mtime_ns, model.facts.get("version"), id(model))
        if self._scores is None or self._scores[0] != key:
            self._scores = (key, table_scores(model.scorer, frame))
        return self._scores[1]

    def _scored(self, model: ServedModel, ids: list[str], records: list[dict]) -> list[dict]:
        """Scores and reasons, a chunk at a time: work past its deadline stops between chunks."""
        from serving.online import check_deadline

        scored = []
        for part in _chunks(records):
            check_deadline()
            scored.extend(model.scorer.score_records(part))
        self.metrics.observe(scored)
        return [
            {"store_id": i, "band": band(s["score"]), **s} for i, s in zip(ids, scored, strict=True)
        ]

    def swap_model(self, model: ServedModel) -> None:
        """Serve ``model`` from the next request on (it is loaded and warm already)."""
        if self.snapshot is not None:
            self.snapshot.spec = model.scorer.spec
        self.model = model


# Added last runs first: the deadline is set on arrival, the headers are checked before the
# token.
CounterfeitService.add_asgi_middleware(BearerAuth)
CounterfeitService.add_asgi_middleware(RequestGuard)
CounterfeitService.add_asgi_middleware(Deadline)


def _chunks(records: list, size: int = CHUNK) -> list[list]:
    return [records[i : i + size] for i in range(0, len(records), size)] or [records]


@contextmanager
def _working(work: WorkLimit) -> Iterator[None]:
    """Hold a work slot; a full service or a passed deadline is a 503."""
    try:
        with work.slot():
            yield
    except Unavailable as exc:
        raise ServiceUnavailable(str(exc)) from exc


def _start_follower(service: CounterfeitService) -> ModelFollower | None:
    """Follow ``SPOTCHECK_SERVE_FOLLOW`` (an alias URI) if set, checking every few seconds."""
    from serving.follow import ModelFollower

    uri = os.environ.get("SPOTCHECK_SERVE_FOLLOW")
    seconds = float(os.environ.get("SPOTCHECK_SERVE_FOLLOW_SECONDS", 0) or 0)
    if not uri or seconds <= 0:
        return None
    follower = ModelFollower(uri, seconds, service)
    follower.start()
    return follower


def _checked(stores: list[StoreIn], model: ServedModel) -> list[dict]:
    """The stores' feature mappings, or a 400 naming the field at fault."""
    try:
        return check_stores([{"features": s.features} for s in stores], model.scorer.spec)
    except RequestError as exc:
        raise InvalidArgument(str(exc)) from exc


def _model_tag() -> str:
    """The BentoML model to serve: set by ``spotcheck serve``, or a built Bento's argument."""
    tag = os.environ.get("SPOTCHECK_SERVE_BENTO_MODEL") or getattr(BENTO_ARGUMENTS, "model", None)
    if not tag:
        raise RuntimeError(
            "no model to serve: start with `spotcheck serve`, or serve a Bento built by "
            "`spotcheck bento build` (SPOTCHECK_SERVE_BENTO_MODEL names a BentoML model tag)"
        )
    return tag
