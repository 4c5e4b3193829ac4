"""Prometheus metrics of the prediction service, beside BentoML's request counts and latency.

The score distribution and the share of each feature among the top reasons move when the
stores, or the features computed for them, drift away from what the model was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.online import WorkLimit

SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)

# One set per process: prometheus_client refuses to register a metric name twice.
_METRICS: dict[str, Any] = {}


class ServiceMetrics:
    """Scores and top reasons of every scored store; work in progress; model reloads."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        if not _METRICS:
            _METRICS["scores"] = Histogram(
                "spotcheck_score",
                "Calibrated counterfeit probability of each scored store.",
                buckets=SCORE_BUCKETS,
            )
            _METRICS["top_reasons"] = Counter(
                "spotcheck_top_reason",
                "Scored stores whose strongest risk-raising reason is this feature.",
                ["feature"],
            )
            _METRICS["reloads"] = Counter(
                "spotcheck_model_reloads",
                "Model versions the service tried to put in place while running.",
                ["outcome"],
            )
            # Counted where the work runs, unlike BentoML's own in-progress count: work of
            # a request answered 504 still shows here until it stops. (BentoML collects
            # metrics across processes from files: gauges say how to combine them.)
            for name, mode, text in (
                ("running", "livesum", "Requests whose scoring work is running now."),
                ("peak", "max", "The most requests whose work ran at once since start."),
                ("refused", "livesum", "Requests answered 503: the work limit was reached."),
            ):
                _METRICS[name] = Gauge(f"spotcheck_work_{name}", text, multiprocess_mode=mode)
        self.scores = _METRICS["scores"]
        self.top_reasons = _METRICS["top_reasons"]
        self.reloads = _METRICS["reloads"]

    def work_changed(self, work: WorkLimit) -> None:
        """Publish the work in progress, its peak and the refusals (``WorkLimit`` observer)."""
        for name in ("running", "peak", "refused"):
            _METRICS[name].set(getattr(work, name))

    def observe(self, scored: list[dict[str, Any]]) -> None:
        """Record the scores and top reasons of one response."""
        for store in scored:
            self.scores.observe(store["score"])
            reasons = store.get("reasons") or []
            self.top_reasons.labels(feature=reasons[0]["feature"] if reasons else "none").inc()
