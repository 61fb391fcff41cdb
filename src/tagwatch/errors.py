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

    def __init__(self, reason: str, message: str, *, attempts: int = 1, first_seen=None) -> None:
        super().__init__(message)
        self.reason: str = getattr(reason, "value", reason)  # plain string even when given the enum
        self.attempts = attempts  # > 1 when a record's retryable failure repeated until it counted as poison
        self.first_seen = first_seen


class RetryableError(TagwatchError):
    """Transient trouble (Triton or S3 unavailable, broker hiccup). The consumer pauses, backs off and retries
    the same records; it never commits past them. CLI exit 4 if it gives up."""

    exit_code = 4


class TrainingError(TagwatchError):
    """Training cannot go on: a non-finite loss, or a dataset/model mismatch found at run time. Exit 9."""

    exit_code = 9


# Serving-side errors (export, registry, Triton). Exit codes 10-13 keep clear of the other parts' codes.
class ExportError(TagwatchError):
    """ONNX export failed or its outputs disagree with torch beyond the parity tolerance. Exit 10."""

    exit_code = 10


class RegistryError(TagwatchError):
    """A registry operation that cannot be done: unknown version or alias, version already exists, a lost race
    on an alias move, an unreadable metadata.json. Exit 11."""

    exit_code = 11


class IntegrityError(RegistryError):
    """A registered file whose sha256 differs from metadata.json (or a file missing/extra): the version is refused
    for loading and serving. Exit 12 (a consumer would map it to 'model unavailable', never to a DLQ reason)."""

    exit_code = 12


class ServingError(TagwatchError):
    """The Triton server cannot be reached or failed a request after the retries (HTTP 503 at an edge). Exit 13."""

    exit_code = 13


class ServingUnavailableError(ServingError, RetryableError):
    """Triton unreachable, overloaded or timing out after the client's retries. A RetryableError, so the
    moderation consumer backs off and retries the same records (never commits past them). Exit 13."""

    exit_code = 13


# Pipeline-side errors (Kubeflow components, cluster jobs, the promotion gate). Exit code 14.
class PipelineError(TagwatchError):
    """A pipeline step cannot go on: bad parameters, the local run's stack is down, a deploy that does not become
    ready. Exit 14 (a Kubeflow step fails with the message; the CLI prints error + hint)."""

    exit_code = 14


class ClusterJobError(PipelineError):
    """A TrainJob/PyTorchJob/InferenceService that failed (with the job's own reason), timed out, or could not be
    created (RBAC, missing CRD, name taken). Exit 14."""


# Shadow replay (`tagwatch shadow run`). Exit code 16 (issue 16).
class EmptyRangeError(TagwatchError):
    """A shadow replay's range (--from/--to, --ledger-range) holds no post.created record. Exit 16."""

    exit_code = 16


class PrivacyError(TagwatchError):
    """A deletion or lineage request that cannot be carried out as asked: an unknown post id, a datasets bucket
    that cannot be searched. Exit 15."""

    exit_code = 15
