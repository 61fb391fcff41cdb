"""`tagwatch review serve`: build the review app from settings, run it with uvicorn, feed the queue meanwhile.

The feeder thread starts with the server and stops (committing nothing it has not enqueued) when uvicorn shuts
down on SIGTERM / SIGINT.
"""

from __future__ import annotations

import ipaddress
import logging
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from tagwatch.errors import ConfigError
from tagwatch.settings import ReviewSettings, Settings

log = logging.getLogger(__name__)


@dataclass
class ReviewService:
    """Everything the app talks to, built from settings once."""

    s3: Any
    queue: Any
    ledger: Any
    history: Any
    producer: Any
    recorder: Any
    metrics: Any


def build_service(settings: Settings) -> ReviewService:
    from kafka import KafkaProducer

    from tagwatch.clients import kafka_config, s3_client
    from tagwatch.moderation.ledger import Ledger, LedgerHistory
    from tagwatch.review.metrics import ReviewMetrics
    from tagwatch.review.outcomes import OutcomeRecorder
    from tagwatch.review.queue import ReviewQueue

    metrics = ReviewMetrics()
    s3 = s3_client(settings.s3)
    bucket = settings.s3.buckets.ledger
    queue = ReviewQueue(s3, bucket, lease_s=settings.review.lease_s,
                        on_lease_expired=lambda lease: metrics.lease_expiries.inc())
    ledger, history = Ledger(s3, bucket), LedgerHistory(s3, bucket)
    producer = KafkaProducer(acks="all", retries=5, linger_ms=0,
                             **kafka_config(settings.kafka, client_id="tagwatch-review"))
    recorder = OutcomeRecorder(queue=queue, ledger=ledger, history=history, producer=producer,
                               topic=settings.kafka.topics.review_outcomes)
    return ReviewService(s3, queue, ledger, history, producer, recorder, metrics)


def check_serving_settings(settings: Settings) -> None:
    """Refuse a reachable app that signs sessions with the well-known default key."""
    host = settings.http.bind_host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    default = ReviewSettings.model_fields["session_secret"].default.get_secret_value()
    if not loopback and settings.review.session_secret.get_secret_value() == default:
        raise ConfigError(f"the review app would listen on {host} with the default session secret",
                          hint="set TAGWATCH_REVIEW__SESSION_SECRET (a cluster: the tagwatch-review Secret), "
                               "e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(48))'`")


def serve(settings: Settings, *, port: int | None = None, feed: bool = True) -> None:
    from tagwatch.review.app import create_app
    from tagwatch.review.feeder import Feeder

    check_serving_settings(settings)
    service = build_service(settings)
    feeder = Feeder(settings, service.queue,
                    on_invalid=lambda reason: service.metrics.invalid.labels(reason).inc()) if feed else None
    app = create_app(settings, queue=service.queue, recorder=service.recorder, ledger=service.ledger,
                     history=service.history, s3=service.s3, metrics=service.metrics,
                     ready=(lambda: feeder.alive) if feeder else None)

    @asynccontextmanager
    async def lifespan(_app):
        if feeder is not None:
            feeder.start()
        log.info("review app on http://%s:%d (queue s3://%s/review/, outcomes -> %s)", settings.http.bind_host,
                 port if port is not None else settings.review.port, settings.s3.buckets.ledger,
                 settings.kafka.topics.review_outcomes)
        try:
            yield
        finally:
            if feeder is not None:
                feeder.stop()
            service.producer.close(timeout=10)
            log.info("review app stopped")

    app.router.lifespan_context = lifespan
    config = uvicorn.Config(app, host=settings.http.bind_host,
                            port=port if port is not None else settings.review.port, log_config=None,
                            access_log=False, proxy_headers=False, server_header=False)
    GracefulServer(config).run()


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises a SIGTERM it handled once it has shut down (exit -15); a drained shutdown is a clean exit
    here (status 0), as for `tagwatch moderate`."""

    @contextmanager
    def capture_signals(self):
        with super().capture_signals():
            yield
            self._captured_signals.clear()
