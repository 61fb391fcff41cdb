"""Checkpoints: ``<root>/step-<NNNNNNN>.pt`` (a torch.save dict) and a ``latest.json`` pointer written only
after the checkpoint object is complete, so a reader (or a resumed run) never follows a pointer to half a file.

``root`` is ``s3://<buckets.checkpoints>/<run_id>`` on the platform, or a local directory (unit tests, laptops).

Checkpoint dict keys (the seam; export and the registry read ``model`` and ``model_config``):
    model, model_config, optimizer, scheduler, step, epoch, stream, rng (one entry per rank), config,
    manifest_hash, vocabulary_version, run_id, task, metrics, torch_version, saved_at
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tagwatch.errors import CheckpointError
from tagwatch.settings import S3Settings

CHECKPOINT_FORMAT = 1


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.pt"


class CheckpointStore:
    """Where one run's checkpoints live: an S3 prefix or a local directory."""

    def __init__(self, root: str, *, s3: S3Settings | None = None) -> None:
        self.root = root.rstrip("/")
        self.s3 = s3
        self._client: Any = None
        if self.is_s3:
            bucket, _, prefix = self.root[len("s3://"):].partition("/")
            self.bucket, self.prefix = bucket, prefix
        else:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def client(self) -> Any:
        if self._client is None:
            from tagwatch.clients import s3_client

            if self.s3 is None:
                raise CheckpointError("an s3:// checkpoint root needs S3 settings", hint="configure TAGWATCH_S3__*")
            self._client = s3_client(self.s3)
        return self._client

    def _put(self, name: str, blob: bytes) -> None:
        if self.is_s3:
            self.client().put_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}", Body=blob)
            return
        handle, temp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.")
        with os.fdopen(handle, "wb") as out:
            out.write(blob)
        os.replace(temp, os.path.join(self.root, name))

    def _get(self, name: str) -> bytes | None:
        if self.is_s3:
            try:
                return self.client().get_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}")["Body"].read()
            except self.client().exceptions.NoSuchKey:
                return None
        path = Path(self.root) / name
        return path.read_bytes() if path.exists() else None

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def save(self, checkpoint: dict[str, Any]) -> str:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        blob = buffer.getvalue()
        name = checkpoint_name(int(checkpoint["step"]))
        self._put(name, blob)
        pointer = {"step": int(checkpoint["step"]), "path": name, "sha256": hashlib.sha256(blob).hexdigest(),
                   "bytes": len(blob), "saved_at": datetime.now(timezone.utc).isoformat()}
        self._put("latest.json", json.dumps(pointer, indent=1).encode())
        return self.uri(name)

    def put_json(self, name: str, data: Any) -> None:
        self._put(name, json.dumps(data, indent=1, default=str).encode())

    def latest(self) -> dict[str, Any] | None:
        raw = self._get("latest.json")
        return json.loads(raw) if raw else None

    def load(self, which: str = "latest") -> dict[str, Any]:
        """``latest`` or a ``step-NNNNNNN.pt`` name; verified against the pointer's sha256 when loading latest."""
        expected = None
        name = which
        if which == "latest":
            pointer = self.latest()
            if pointer is None:
                raise CheckpointError(f"no latest.json under {self.root}",
                                      hint="nothing to resume: start without --resume, or check --run-id")
            name, expected = pointer["path"], pointer["sha256"]
        blob = self._get(name)
        if blob is None:
            raise CheckpointError(f"checkpoint {self.uri(name)} does not exist", hint="list the run's checkpoints")
        if expected and hashlib.sha256(blob).hexdigest() != expected:
            raise CheckpointError(f"checkpoint {self.uri(name)} fails its sha256", hint="resume from an earlier step")
        return load_checkpoint_bytes(blob)


def load_checkpoint_bytes(blob: bytes) -> dict[str, Any]:
    # weights_only=False: our own files carry numpy RNG states and the resolved config.
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=False)


def load_checkpoint_uri(uri: str, *, s3: S3Settings | None = None) -> dict[str, Any]:
    """Load ``s3://.../run/step-N.pt``, ``s3://.../run`` (its latest) or a local file/directory."""
    if uri.endswith(".pt"):
        root, _, name = uri.rpartition("/")
        if not uri.startswith("s3://") and not root:
            root = "."
        return CheckpointStore(root, s3=s3).load(name)
    return CheckpointStore(uri, s3=s3).load("latest")


def capture_rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
