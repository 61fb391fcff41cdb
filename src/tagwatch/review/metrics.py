"""The review app's Prometheus metrics, in a registry of its own (one app per process, tests build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tagwatch.review.queue import QueueStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ReviewMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.depth = Gauge("tagwatch_review_queue_depth", "Review items not yet reviewed (pending)", registry=r)
        self.leased = Gauge("tagwatch_review_leased", "Pending items under a live lease", registry=r)
        self.lease_expiries = Counter("tagwatch_review_lease_expiries_total",
                                      "Leases that ran out and were taken over", registry=r)
        self.outcomes = Counter("tagwatch_review_outcomes_total", "Review outcomes recorded", ["action"], registry=r)
        self.time_to_decision = Histogram(
            "tagwatch_review_time_to_decision_seconds", "Review requested -> outcome recorded", registry=r,
            buckets=(10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600))
        self.invalid = Counter("tagwatch_review_invalid_requests_total", "Requests refused or skipped, by reason "
                               "(csrf, invalid_verdict, invalid_request: a review record that is not a request)",
                               ["reason"], registry=r)
        for action in ("allow", "remove"):
            self.outcomes.labels(action)
        for reason in ("csrf", "invalid_verdict", "invalid_request"):
            self.invalid.labels(reason)

    def render(self, stats: QueueStats | None) -> bytes:
        if stats is not None:
            self.depth.set(stats.pending)
            self.leased.set(stats.leased)
        return generate_latest(self.registry)
