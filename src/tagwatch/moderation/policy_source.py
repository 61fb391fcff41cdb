"""Which policy decides the next batch: the promoted policy version, hot-reloaded, or the model version's own.

Before each batch the consumer asks ``PolicySource.current(model, embedded)``. At most every
``settings.moderation.policy_poll_s`` seconds it GETs the policy alias (registry/policies.py; the same name as
the model alias the consumer serves, e.g. ``production``) and reloads only when the record changed, so a
promoted policy decides the next batch after at most one poll interval, without a restart.

The effective policy:
- the policy alias's version, if it was calibrated for the served model's bytes (``model.sha256``);
- else the served version's own policy (``embedded``): a policy for another model is refused, with one error
  log per (policy, model) pair and ``tagwatch_policy_refused_total{policy}`` counted per batch;
- no policy alias (or a damaged policy version): the served version's own policy, as before policies had
  versions of their own.

A registered policy's ``version`` is its registry id (``<model>-policy-<N>``), which every decision records as
``policy_version``. An S3 error while reading the alias is a RetryableError: the batch waits rather than being
decided by a policy that may have been replaced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tagwatch.errors import RetryableError, TagwatchError
from tagwatch.moderation.events import ModelRef
from tagwatch.moderation.policy import Policy

log = logging.getLogger(__name__)


class PolicySource:
    def __init__(self, store, alias: str, *, poll_s: float, metrics=None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.alias, self.poll_s, self.metrics, self.clock = store, alias, poll_s, metrics, clock
        self._lock = threading.Lock()  # two batches may be decided at once
        self._checked_at = float("-inf")
        self._raw: bytes | None = None  # the alias record last read
        self._loaded: tuple[object, Policy] | None = None  # (PolicyVersionMetadata, Policy) it names
        self._refused: set[tuple[str, str]] = set()  # (policy id, model sha256) pairs already logged

    def current(self, model: ModelRef, embedded: Policy) -> Policy:
        """The policy that decides a batch scored by ``model`` (``embedded``: that model version's own)."""
        with self._lock:
            self._refresh()
            loaded = self._loaded
        if loaded is None:
            return embedded
        metadata, policy = loaded
        if metadata.model_sha256 == model.sha256:
            return policy
        self._refuse(metadata, model, embedded)
        return embedded

    def _refresh(self) -> None:
        now = self.clock()
        if now - self._checked_at < self.poll_s:
            return
        raw = self._guarded(lambda: self.store.alias_bytes(self.alias))
        self._checked_at = now
        if raw == self._raw:
            return
        self._raw = raw
        if raw is None:
            if self._loaded is not None:
                log.warning("policy alias %r is gone: the served model version's own policy decides", self.alias)
            self._loaded = None
            return
        try:
            metadata, document = self._guarded(lambda: self.store.read(self.alias))
            policy = Policy.model_validate(document)
        except (TagwatchError, ValueError) as error:
            if isinstance(error, RetryableError):
                self._raw = None  # read it again next time
                raise
            message = getattr(error, "message", str(error))
            log.error("policy alias %r is unusable (%s): the served model version's own policy decides",
                      self.alias, message)
            if self.metrics is not None:
                self.metrics.policy_refused.labels(policy=f"alias:{self.alias}").inc()
            self._loaded = None
            return
        self._loaded = (metadata, policy)
        log.info("policy %s (policy version %d, calibrated for model version %d) loaded from policy alias %r",
                 metadata.policy_id, metadata.number, metadata.model_version, self.alias)

    def _guarded(self, read):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return read()
        except (BotoCoreError, ClientError) as error:
            raise RetryableError(f"policy alias {self.alias!r} unreadable: {type(error).__name__}") from error

    def _refuse(self, metadata, model: ModelRef, embedded: Policy) -> None:
        if self.metrics is not None:
            self.metrics.policy_refused.labels(policy=metadata.policy_id).inc()
        pair = (metadata.policy_id, model.sha256)
        with self._lock:
            if pair in self._refused:
                return
            self._refused.add(pair)
        log.error("refusing policy %s of policy alias %r: it was calibrated for %s version %d, this consumer "
                  "serves version %s (another model.onnx); deciding with that version's own policy %s until a "
                  "policy for it is promoted (`tagwatch policy calibrate --model-version %s --alias %s`)",
                  metadata.policy_id, self.alias, metadata.model_name, metadata.model_version, model.version,
                  embedded.version, model.version, self.alias)


def policy_source_for(scorer, settings, metrics=None) -> PolicySource | None:
    """The policy source of a registry-backed scorer (TritonScorer: its registry and alias); None for a scorer
    that names no registry (``--onnx``: the policy file given decides)."""
    registry, alias = getattr(scorer, "registry", None), getattr(scorer, "alias", None)
    if registry is None or alias is None:
        return None
    from tagwatch.registry.policies import PolicyStore

    return PolicySource(PolicyStore(registry), alias, poll_s=settings.moderation.policy_poll_s, metrics=metrics)
