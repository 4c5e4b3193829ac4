"""Prometheus metrics of the prediction service, beside BentoML's request counts and latency.

The score distribution and the share of each feature among the top reasons move when the
stores, or the features computed for them, drift away from what the model was trained on.
"""

from __future__ import annotations

from typing import Any

SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)

# One set per process: prometheus_client refuses to register a metric name twice.
_METRICS: dict[str, Any] = {}


class ServiceMetrics:
    """Scores and top reasons of every scored store."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

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
        self.scores = _METRICS["scores"]
        self.top_reasons = _METRICS["top_reasons"]

    def observe(self, scored: list[dict[str, Any]]) -> None:
        """Record the scores and top reasons of one response."""
        for store in scored:
            self.scores.observe(store["score"])
            reasons = store.get("reasons") or []
            self.top_reasons.labels(feature=reasons[0]["feature"] if reasons else "none").inc()
