"""Domain exceptions. Each says how it maps at the edge: a CLI exit code (and later a DLQ reason or HTTP status).

The CLI prints ``error: <message>`` and ``hint: <hint>`` on one line each and exits with ``exit_code``; it never
shows a traceback for a ``TagwatchError`` (run with ``-v`` / ``TAGWATCH_LOG_LEVEL=DEBUG`` to log one).
"""

from __future__ import annotations


class TagwatchError(Exception):
    """Base class. ``hint`` tells the user what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(TagwatchError):
    """Settings that cannot work: invalid values, missing config file, unwritable state dir. Exit 3."""

    exit_code = 3


class BinaryNotFoundError(ConfigError):
    """A server binary (weed, tansu, tritonserver) is not where settings say. Exit 3."""


class PortInUseError(ConfigError):
    """A port the stack wants to bind on 127.0.0.1 is taken by another process. Exit 3."""


class StackError(TagwatchError):
    """An embedded service failed to start, stop or become healthy. Exit 4."""

    exit_code = 4


class StackNotRunningError(StackError):
    """A command needs the embedded stack (or explicit endpoints) and neither is there. Exit 4."""


class CheckFailedError(TagwatchError):
    """`tagwatch stack check` found a service that does not work end to end. Exit 5."""

    exit_code = 5


class ManifestError(TagwatchError):
    """A dataset manifest, vocabulary or shard that fails verification (hash, schema). Exit 6."""

    exit_code = 6


class ManifestValidationError(TagwatchError):
    """Kubernetes manifests that cannot be rendered or fail validation (`tagwatch manifests validate`). Exit 7."""

    exit_code = 7


class CheckpointError(TagwatchError):
    """A training checkpoint that is missing, fails its sha256, or belongs to other data/config. Exit 8."""

    exit_code = 8


class PoisonInputError(TagwatchError):
    """A record that can never be decided (bad event, bad image). Maps to the dead-letter topic with ``reason``
    (a DeadLetterReason value), then its offset is committed. Never retried."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason: str = getattr(reason, "value", reason)  # plain string even when given the enum


class RetryableError(TagwatchError):
    """Transient trouble (Triton or S3 unavailable, broker hiccup). The consumer pauses, backs off and retries
    the same records; it never commits past them. CLI exit 4 if it gives up."""

    exit_code = 4


class TrainingError(TagwatchError):
    """Training cannot go on: a non-finite loss, or a dataset/model mismatch found at run time. Exit 9."""

    exit_code = 9
