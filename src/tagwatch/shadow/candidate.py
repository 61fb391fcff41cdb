"""The candidate of a shadow run: ``MODEL@VERSION`` resolved, its policy, and the shadow scorer serving it.

Locally the stack's Triton serves the shadow model (``settings.triton.shadow_name``) from registry alias
``settings.triton.shadow_alias`` beside production (tagwatch.serving.server). ``serve_candidate`` checks that the
candidate's registered config is the one the shadow model is bound with (Triton binds a model's config once, so
the server's watcher would refuse any other), points the alias at the candidate and waits until Triton's
``model_version`` output names it. In a cluster ``settings.triton.shadow_url``/``shadow_model_name`` name the
canary InferenceService instead; its Triton reports the registry version as its model version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from tagwatch.errors import ConfigError, ServingError
from tagwatch.moderation.policy import Policy, load_policy_file
from tagwatch.registry.metadata import VersionMetadata
from tagwatch.registry.serving_view import read_serving_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    metadata: VersionMetadata
    metadata_sha256: str
    ref: str  # as given: a number or an alias

    @property
    def version(self) -> int:
        return self.metadata.version


def parse_candidate(text: str, registry) -> Candidate:
    """``MODEL@VERSION`` (VERSION: a number, an alias or ``latest``) -> the registry version it names.

    ConfigError (exit 3) for a malformed value or another model's name; RegistryError (exit 11) for an unknown
    version or alias."""
    model, at, ref = text.partition("@")
    if not at or not model or not ref:
        raise ConfigError(f"--candidate {text!r} is not MODEL@VERSION",
                          hint=f"e.g. --candidate {registry.model_name}@7 or {registry.model_name}@candidate")
    if model != registry.model_name:
        raise ConfigError(f"--candidate names model {model!r}, but this registry serves {registry.model_name!r}",
                          hint=f"use {registry.model_name}@{ref} (settings.triton.model_name names the model)")
    metadata, digest = registry.resolve(ref)
    return Candidate(metadata=metadata, metadata_sha256=digest, ref=ref)


def load_policy(registry, candidate: Candidate, policy: str | None) -> tuple[Policy, str]:
    """The policy the candidate decides with, and where it came from: ``policy:REF`` (a registered policy version:
    number, alias or ``latest``; it must be calibrated for the candidate's model.onnx), a policy.json path, or by
    default the candidate version's own policy.json."""
    if policy and policy.startswith("policy:"):
        from tagwatch.registry.policies import PolicyStore, onnx_sha256

        metadata, document = PolicyStore(registry).read(policy.removeprefix("policy:"))
        if metadata.model_sha256 != onnx_sha256(candidate.metadata):
            raise ConfigError(
                f"{metadata.policy_id} was calibrated for {registry.model_name} version {metadata.model_version}, "
                f"not for the candidate (version {candidate.version})",
                hint=f"calibrate one for it: tagwatch policy calibrate --model-version {candidate.version}")
        return Policy.model_validate(document), f"registry:{metadata.policy_id}"
    if policy:
        return load_policy_file(policy), f"file:{policy}"
    view = read_serving_view(registry, candidate.version)
    if view.policy is None:
        raise ConfigError(f"{candidate.metadata.model_name} version {candidate.version} has no policy.json",
                          hint="pass one with --policy PATH or --policy policy:VERSION")
    return Policy.model_validate(view.policy), f"registry:{candidate.metadata.model_name}@{candidate.version}"


def check_served_config(registry, candidate: Candidate, client) -> None:
    """ServingError (exit 13) unless the shadow model is bound with the candidate's registered config."""
    from tagwatch.serving.config_check import compare, registered_config
    from tagwatch.tensor_contract import VERSION_OUTPUT

    _, registered = registered_config(registry, candidate.version)
    served = {**client.model_config_json(), "name": registered.name}  # served under its own (shadow) name
    differences = compare(served, registered, extra_outputs=(VERSION_OUTPUT,))
    if differences:
        raise ServingError(
            f"version {candidate.version}'s config.pbtxt differs from the one the shadow model {client.model_name!r} "
            f"is bound with ({'; '.join(differences)}): Triton would refuse to swap it in",
            hint="a candidate with another config (tensors, batch size, batching) needs the server restarted with the "
                 "shadow alias on it: `tagwatch model promote VERSION --alias shadow`, then `tagwatch stack restart`",
        )


def serve_candidate(registry, candidate: Candidate, client, *, alias: str, timeout_s: float = 60.0) -> None:
    """Point ``alias`` at the candidate (unless it names it already) and wait until the shadow model scores with it.

    In a cluster the canary InferenceService serves the candidate version itself; the alias then records what the
    shadow run scored with, and the wait returns at once."""
    client.wait_ready(timeout_s)
    check_served_config(registry, candidate, client)
    record = registry.read_alias(alias)
    if record is None or record.version != candidate.version:
        registry.promote(candidate.version, alias=alias, reason="shadow run")
    probe = np.zeros((1, *client.input_shape()), dtype=np.float32)
    deadline = time.monotonic() + timeout_s
    while True:
        served = int(client.infer(probe)["model_version"][0])
        if served == candidate.version:
            return
        if time.monotonic() > deadline:
            raise ServingError(f"the shadow model {client.model_name!r} at {client.url} still serves version {served}, "
                               f"not {candidate.version}, after {timeout_s:.0f}s",
                               hint="its alias watcher may have refused the version: `tagwatch stack logs triton`")
        time.sleep(0.5)


def shadow_scorer(settings, candidate: Candidate, client):
    """A TritonScorer over the shadow model, labelled by the shadow alias's registry version (the candidate's)."""
    from tagwatch.moderation.scoring import TritonScorer

    scorer = TritonScorer(settings, alias=settings.triton.shadow_alias, client=client)
    if scorer.version != candidate.version:
        raise ServingError(f"alias {settings.triton.shadow_alias!r} names version {scorer.version}, not the candidate "
                           f"{candidate.version}", hint="another shadow run moved it; run one at a time")
    return scorer
