"""Follow a registry alias: when ``champion`` moves, the running service switches models.

With ``spotcheck serve --model models:/NAME@ALIAS --follow-seconds N`` the worker asks the
registry every N seconds which version the alias names. A new version is imported into
BentoML's model store, checked against the snapshot's FeatureSpec, loaded and warmed while
the old model keeps serving, then put in place with one reference assignment: a request
uses the model it started with throughout, so no response mixes two versions. A version
that fails (does not load, is not spotcheck's, another FeatureSpec than the snapshot's) is
not tried again until the alias moves on; the old model keeps serving and ``GET /model``
shows the error.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.online import ServedModel

logger = logging.getLogger("spotcheck.serve")


class ModelFollower:
    """Polls an alias URI and swaps a newly named version into ``service``.

    Attributes:
        uri: The ``models:/NAME@ALIAS`` URI followed.
        seconds: Seconds between two looks at the registry.
        reloads: Versions put in place since start.
        error: Why the last version tried was not put in place (None after a success).
    """

    def __init__(self, uri: str, seconds: float, service: Any) -> None:
        self.uri = uri
        self.seconds = seconds
        self.service = service
        self.reloads = 0
        self.error: str | None = None
        self.checked_at: str | None = None
        self._failed_version: str | None = None

    def start(self) -> None:
        """Poll in a daemon thread (it dies with the worker)."""
        threading.Thread(target=self._run, name="spotcheck-follow", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.seconds)
            self.check()

    def check(self) -> bool:
        """Look at the registry once; True if a new version was put in place."""
        from serving.online import registered_version

        version = None
        try:
            version = registered_version(self.uri)
            current = self.service.model.facts.get("version")
            self.checked_at = dt.datetime.now(dt.UTC).isoformat()
            if version in (None, current, self._failed_version):
                return False
            started = time.monotonic()
            model = self._load()
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model serving
            self._failed_version = version
            self.error = f"version {version} of {self.uri} not loaded: {exc}"
            self.service.metrics.reloads.labels(outcome="failed").inc()
            logger.error("%s; still serving version %s", self.error, self._current())
            return False
        previous = self._current()
        self.service.swap_model(model)
        self.reloads += 1
        self.error = self._failed_version = None
        self.service.metrics.reloads.labels(outcome="loaded").inc()
        _refreeze()
        logger.warning(
            "now serving %s version %s (was %s), loaded in %.1f s",
            self.uri, model.facts.get("version"), previous, time.monotonic() - started,
        )  # fmt: skip
        return True

    def _load(self) -> ServedModel:
        """The version the alias names now: imported, checked and warm."""
        from serving.batch import check_spec_against
        from serving.bento import import_to_store, load_from_store

        model = load_from_store(import_to_store(self.uri, None))
        snapshot = self.service.snapshot
        if snapshot is not None:
            check_spec_against(model.scorer.spec, snapshot.data_spec)
        model.scorer.score_records([{}])  # compile and warm before it takes requests
        return model

    def _current(self) -> str | None:
        return self.service.model.facts.get("version")

    @property
    def info(self) -> dict[str, Any]:
        """What ``GET /model`` tells about the following: URI, interval, reloads, error."""
        return {"uri": self.uri, "seconds": self.seconds, "reloads": self.reloads,
                "checked_at": self.checked_at, "error": self.error}  # fmt: skip


def _refreeze() -> None:
    """Collect the old model's cycles and freeze the new model out of the collector's reach.

    One full collection (a pause of a few hundred ms) per model change, instead of a pause
    at every full collection for as long as the worker lives (see ``CounterfeitService``).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
