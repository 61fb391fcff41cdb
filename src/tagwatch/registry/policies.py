"""Policy versions of their own: thresholds that change without a new model version.

Keys under ``s3://<buckets.models>/registry/<model_name>/policies/`` (the rules of ``registry/store.py``)::

    versions/<NNNNNN>/_claim         claimed with If-None-Match: *
    versions/<NNNNNN>/policy.json    the policy document; its ``version`` is the id decisions record
                                     (``<model_name>-policy-<N>``), the document's own version kept as ``derived_from``
    versions/<NNNNNN>/metadata.json  written last (PolicyVersionMetadata): the model version and model.onnx sha256
                                     it was calibrated for, the sha256 of policy.json, source, reason, parent
    aliases/<alias>.json             AliasRecord, one compare-and-swap PUT with history

A policy alias has the name of the model alias whose consumers apply it (``production``). ``promote`` and
``rollback`` refuse a policy calibrated for other model bytes than the model alias of that name serves; the
consumers refuse it too (``moderation/policy_source.py``) and fall back to the served version's own policy.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from tagwatch.errors import ConfigError, IntegrityError, RegistryError
from tagwatch.registry.metadata import AliasRecord, PolicyVersionMetadata, VersionMetadata, sha256_bytes
from tagwatch.registry.registry import ModelRegistry
from tagwatch.registry.serving_view import read_version_file
from tagwatch.registry.store import VersionStore, dump_json, who

log = logging.getLogger(__name__)

POLICY_FILE = "policy.json"
SOURCES = ("calibrate", "import", "model-version")


def onnx_sha256(metadata: VersionMetadata) -> str:
    """The sha256 of a model version's model.onnx: what a policy is calibrated for."""
    return metadata.files[metadata.onnx_file()].sha256


class PolicyStore(VersionStore):
    """The policy versions and aliases of one model name, next to its model versions."""

    metadata_model = PolicyVersionMetadata
    noun = "policy version"
    cli = "policy"

    def __init__(self, models: ModelRegistry) -> None:
        super().__init__(models.s3, bucket=models.bucket, model_name=models.model_name, root=f"{models.root}/policies")
        self.models = models

    def policy_id(self, number: int) -> str:
        return f"{self.model_name}-policy-{number}"

    # -- register -----------------------------------------------------------------------------------
    def register(self, document: dict[str, Any], *, model_version: int, source: str, reason: str = "",
                 alias: str | None = None, parent: int | None = None) -> PolicyVersionMetadata:
        """Store ``document`` as the next policy version, calibrated for ``model_version``; optionally promote it.

        ConfigError if the document fails its schema or names a category the model does not score;
        RegistryError if the model version does not exist. ``parent`` defaults to what ``alias`` (or
        ``production``) names now.
        """
        if source not in SOURCES:
            raise ValueError(f"source {source!r} is not one of {SOURCES}")
        check_document(document)
        model, _ = self.models.metadata(model_version)
        categories = read_version_file(self.models, model, f"repository/{model.model_name}/categories.txt",
                                       required=True).decode("utf-8").split()
        check_signal_inputs(document, categories, f"{model.model_name} version {model_version}")
        if parent is None and (current := self.read_alias(alias or "production")) is not None:
            parent = current.version
        number = self._claim_next_version()
        stored = {**document, "version": self.policy_id(number), "derived_from": str(document["version"])}
        if isinstance(stored.get("model"), dict):
            stored["model"] = {**stored["model"], "registry_version": str(model_version)}
        check_document(stored)
        body = json.dumps(stored, indent=2, sort_keys=True).encode()
        metadata = PolicyVersionMetadata(
            model_name=self.model_name, number=number, policy_id=self.policy_id(number), model_version=model_version,
            model_sha256=onnx_sha256(model), created_at=datetime.now(timezone.utc), created_by=who(),
            policy_sha256=sha256_bytes(body), source=source, derived_from=str(document["version"]), reason=reason,
            parent=parent, constraints=dict(document.get("constraints") or {}))
        prefix = self.version_prefix(number)
        self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/{POLICY_FILE}", Body=body)
        self._put(self.metadata_key(number), dump_json(metadata), if_none_match=True)  # last: now it exists
        log.info("registered %s (policy version %d, for model version %d)", metadata.policy_id, number, model_version)
        if alias:
            self.promote(number, alias=alias, reason=reason or f"register ({source})")
        return metadata

    # -- read ---------------------------------------------------------------------------------------
    def read(self, ref: str | int) -> tuple[PolicyVersionMetadata, dict[str, Any]]:
        """(metadata, policy document) of a number, alias or ``latest``; policy.json sha256-checked."""
        metadata, _ = self.resolve(ref)
        return metadata, self._document(metadata)

    def _document(self, metadata: PolicyVersionMetadata) -> dict[str, Any]:
        body = self._get(f"{self.version_prefix(metadata.number)}/{POLICY_FILE}")
        if body is None:
            raise IntegrityError(f"{metadata.policy_id}: policy.json is missing in S3",
                                 hint="the policy version is damaged; promote another one")
        if sha256_bytes(body) != metadata.policy_sha256:
            raise IntegrityError(f"refusing {metadata.policy_id}: policy.json differs from metadata.json",
                                 hint="the policy version was tampered with; promote another one")
        return json.loads(body)

    # -- aliases ------------------------------------------------------------------------------------
    def promote(self, ref: str | int, *, alias: str = "production", reason: str = "") -> AliasRecord:
        """Point the policy alias ``alias`` at a policy version (number, alias or ``latest``), refusing one that
        is damaged or calibrated for another model than the model alias of the same name serves."""
        metadata, _ = self.resolve(ref)
        self._check_promotable(metadata, alias)
        return self._move_alias(metadata.number, alias=alias, reason=reason)

    def rollback(self, alias: str = "production") -> AliasRecord:
        """Move the policy alias back to the policy version it named before (checked like a promote)."""
        return self._roll_back_alias(alias, lambda number: self._check_promotable(self.metadata(number)[0], alias))

    def _check_promotable(self, metadata: PolicyVersionMetadata, alias: str) -> None:
        self._document(metadata)  # integrity
        if (problem := self.served_mismatch(metadata, alias)) is not None:
            raise RegistryError(problem, hint=f"promote model version {metadata.model_version} first (`tagwatch "
                                f"model promote {metadata.model_version} --alias {alias}`), or calibrate a policy for "
                                f"the served model (`tagwatch policy calibrate --model-version "
                                f"{self._served_version(alias) or 'V'} --alias {alias}`)")

    def _served_version(self, alias: str) -> int | None:
        record = self.models.read_alias(alias)
        return record.version if record is not None else None

    def served_mismatch(self, metadata: PolicyVersionMetadata, alias: str) -> str | None:
        """Why ``metadata``'s policy may not decide for the model alias ``alias`` (None: it may)."""
        if self.models.read_alias(alias) is None:
            return (f"{metadata.policy_id} is for {self.model_name} version {metadata.model_version}, but model alias "
                    f"{alias!r} names no model version")
        served, _ = self.models.resolve(alias)
        if onnx_sha256(served) == metadata.model_sha256:
            return None
        return (f"{metadata.policy_id} was calibrated for {self.model_name} version {metadata.model_version}, but "
                f"model alias {alias!r} serves version {served.version} (another model.onnx)")

    def model_promotion_warning(self, alias: str, model: VersionMetadata) -> str | None:
        """What to tell someone who just pointed the model alias ``alias`` at ``model`` when the policy alias of
        that name holds a policy for other model bytes (consumers then apply the model's own policy)."""
        record = self.read_alias(alias)
        if record is None:
            return None
        policy, _ = self.metadata(record.version)
        if policy.model_sha256 == onnx_sha256(model):
            return None
        return (f"policy alias {alias!r} names {policy.policy_id}, calibrated for model version {policy.model_version}; "
                f"consumers apply model version {model.version}'s own policy ({model.policy_version or 'none'}) until a "
                f"policy for it is promoted (`tagwatch policy calibrate --model-version {model.version} --alias {alias}`)")


def check_document(document: Any) -> None:
    """ConfigError unless ``document`` is a policy that passes its packaged JSON Schema."""
    import jsonschema

    from tagwatch.train.policy import validate_policy

    if not isinstance(document, dict):
        raise ConfigError("a policy must be a JSON object", hint="see src/tagwatch/schemas/policy.v2.json")
    try:
        validate_policy(document)
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"the policy fails its schema at {where}: {error.message[:300]}",
                          hint="see src/tagwatch/schemas/policy.v2.json; `tagwatch policy show --json` prints a "
                               "valid one to start from") from error


def check_signal_inputs(document: dict[str, Any], categories: list[str], model: str) -> None:
    """ConfigError unless every rule reads something that exists: a category the model scores (no ``inputs``), or
    ``signal:score`` inputs of known signals (``image:<category>`` again only for the model's categories)."""
    from tagwatch.moderation.signals import KNOWN_SIGNALS

    unknown, bad_inputs = [], []
    for name, rule in document["categories"].items():
        inputs = rule.get("inputs") or []
        if not inputs and name not in categories:
            unknown.append(name)
        for ref in inputs:
            signal, _, key = ref.partition(":")
            if signal not in KNOWN_SIGNALS or (signal == "image" and key not in categories):
                bad_inputs.append(f"{name}: {ref}")
    if unknown:
        raise ConfigError(f"the policy names categories {model} does not score: {', '.join(sorted(unknown))}",
                          hint=f"its categories: {', '.join(categories)}; a rule for another signal's category "
                               "names it in `inputs` (policy.v3, docs/policy.md)")
    if bad_inputs:
        raise ConfigError(f"the policy's inputs name unknown signals or scores: {', '.join(bad_inputs)}",
                          hint=f"signals: {', '.join(KNOWN_SIGNALS)}; image:<one of {', '.join(categories)}>")


def open_policies(settings) -> PolicyStore:
    """The policy store of ``settings.triton.model_name`` (next to its model registry)."""
    from tagwatch.registry.registry import open_registry

    return PolicyStore(open_registry(settings))
