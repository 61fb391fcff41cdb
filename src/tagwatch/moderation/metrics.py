"""Prometheus metrics and a health endpoint for one consumer process (127.0.0.1 only)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("tagwatch_records_consumed", "records polled from the posts topic", registry=r)
        self.decided = Counter("tagwatch_decisions", "decisions produced", ["action"], registry=r)
        self.monitor_hits = Counter("tagwatch_monitor_hits", "posts a monitor-mode category would have flagged "
                                    "(never actioned)", ["category"], registry=r)
        self.dead_lettered = Counter("tagwatch_dead_letters", "records sent to the DLQ", ["reason"], registry=r)
        self.retries = Counter("tagwatch_batch_retries", "batches retried after transient errors", ["cause"], registry=r)
        self.batch_size = Histogram("tagwatch_batch_size", "records per processed batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.e2e_latency = Histogram("tagwatch_post_to_decision_seconds", "post created_at -> decision produced",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.model_latency = Histogram("tagwatch_model_seconds", "one model call (a micro-batch)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("tagwatch_in_flight", "records polled but not yet committed", registry=r)
        self.assigned = Gauge("tagwatch_assigned", "1 after a partition assignment, 0 from a revoke until the next",
                              registry=r)
        self.owned = Gauge("tagwatch_partitions_owned", "1 for each partition this member owns (its last assignment)",
                           ["partition"], registry=r)
        self.healthy = True
        # "topic[partition]@first undecided offset" -> monotonic time it became undecided (the consumer keeps it)
        self.stuck: dict[str, float] = {}
        self.stuck_after_s = 60.0
        Gauge("tagwatch_stuck_partitions", "partitions with records undecided for longer than the stuck bound",
              registry=r).set_function(lambda: len(self.stuck_now()))

    def assignment_changed(self, owned: list[str] | None) -> None:
        """``owned``: partition names after an assignment; None at a revoke (a rebalance is in progress)."""
        self.owned.clear()
        self.assigned.set(0 if owned is None else 1)
        for name in owned or []:
            self.owned.labels(partition=name).set(1)

    def stuck_now(self) -> list[str]:
        """Partitions undecided past the bound, with for how long."""
        import time

        now = time.monotonic()
        return [f"{name} undecided for {now - since:.0f}s" for name, since in sorted(self.stuck.items())
                if now - since > self.stuck_after_s]

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.startswith("/metrics"):
                    body, ctype, code = generate_latest(metrics.registry), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/healthz"):
                    stuck = metrics.stuck_now()
                    ok = metrics.healthy and not stuck
                    text = "ok\n" if ok else "unhealthy\n" + "".join(f"stuck: {s}\n" for s in stuck)
                    body, ctype, code = text.encode(), "text/plain", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return server
