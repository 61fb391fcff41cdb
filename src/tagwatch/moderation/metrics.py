"""Prometheus metrics and the probe endpoints of one consumer process, on ``settings.http.bind_host``.

- ``/metrics``: Prometheus text.
- ``/healthz`` (liveness): 503 when the consumer is wedged (a partition undecided past the stuck bound, or the
  loop marked unhealthy); a restart is the cure.
- ``/readyz`` (readiness): 503 until the member holds a partition assignment (it joined the group; none during a
  rebalance) and every dependency check passes (the scorer reaches its model on Triton); a restart would not help.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
        self.policy_refused = Counter("tagwatch_policy_refused", "batches decided with the served model version's "
                                      "own policy because the policy alias names a policy calibrated for another "
                                      "model", ["policy"], registry=r)
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
        self.joined = False  # an assignment is held (set at assignment, cleared at a revoke)
        # name -> check that raises when the dependency is unreachable; run at most every ready_cache_s
        self.dependencies: dict[str, Callable[[], None]] = {}
        self.ready_cache_s = 5.0
        self._ready_seen: tuple[float, list[str]] = (float("-inf"), [])
        self._ready_lock = threading.Lock()
        # "topic[partition]@first undecided offset" -> monotonic time it became undecided (the consumer keeps it)
        self.stuck: dict[str, float] = {}
        self.stuck_after_s = 60.0
        Gauge("tagwatch_stuck_partitions", "partitions with records undecided for longer than the stuck bound",
              registry=r).set_function(lambda: len(self.stuck_now()))

    def assignment_changed(self, owned: list[str] | None) -> None:
        """``owned``: partition names after an assignment; None at a revoke (a rebalance is in progress)."""
        self.owned.clear()
        self.joined = owned is not None
        self.assigned.set(0 if owned is None else 1)
        for name in owned or []:
            self.owned.labels(partition=name).set(1)

    def stuck_now(self) -> list[str]:
        """Partitions undecided past the bound, with for how long."""
        now = time.monotonic()
        return [f"{name} undecided for {now - since:.0f}s" for name, since in sorted(self.stuck.items())
                if now - since > self.stuck_after_s]

    def not_ready(self) -> list[str]:
        """Why this member should not receive traffic now (empty: ready)."""
        problems = [] if self.joined else ["no partition assignment yet (joining the group or rebalancing)"]
        with self._ready_lock:
            when, failed = self._ready_seen
            if time.monotonic() - when > self.ready_cache_s:
                failed = []
                for name, check in self.dependencies.items():
                    try:
                        check()
                    except Exception as error:  # any failure means not ready; say which and why, briefly
                        failed.append(f"{name}: {' '.join(str(error).split())[:200]}")
                self._ready_seen = (time.monotonic(), failed)
        return problems + failed

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """Serve the endpoints on ``host:port`` (pass ``settings.http.bind_host``) in a daemon thread."""
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
                elif self.path.startswith("/readyz"):
                    problems = metrics.not_ready()
                    text = "ready\n" if not problems else "not ready\n" + "".join(f"{p}\n" for p in problems)
                    body, ctype, code = text.encode(), "text/plain", 503 if problems else 200
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
