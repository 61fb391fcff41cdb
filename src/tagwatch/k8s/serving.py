"""How tagwatch rolls a new model out on KServe: one deployment mode, and a rollout that mode supports.

The decision (docs/deploy.md, "Rolling out a new model"):

- Every tagwatch InferenceService runs in KServe's **RawDeployment** mode (plain Deployment + Service + HPA: no
  Knative, no Istio; the overlays and the pipeline's deploy step both take the mode from ``DEPLOYMENT_MODE``).
  KServe >= 0.16 calls this mode ``Standard`` and still accepts ``RawDeployment`` as its legacy name
  (kserve pkg/constants/constants.go: ``LegacyRawDeployment DeploymentModeType = "RawDeployment" // deprecated: use
  Standard``); older KServe releases know only ``RawDeployment``, so that is the spelling used here.
- KServe's canary rollout (``canaryTrafficPercent``) is documented for Serverless (Knative) mode only: "Canary
  rollout strategy is only supported in serverless deployment mode"
  (https://kserve.github.io/website/docs/model-serving/predictive-inference/rollout-strategies/canary). A canary
  percentage on a RawDeployment InferenceService would do nothing, so it is refused here, in the manifest
  validation (``rollout_problems``) and in the deploy step (``check_canary``).
- What tagwatch does instead (candidate + promote): a version is first served by a second InferenceService,
  ``<service>-candidate``, next to production (alias ``candidate``); production traffic is untouched. Promoting
  (alias ``production``) points the production InferenceService at the candidate's immutable storageUri -- a plain
  Deployment rolling update, which never takes the old pods away before the new ones are Ready -- and then removes
  the candidate. A later issue replays production traffic to the candidate (shadow) before promotion.
"""

from __future__ import annotations

from typing import Any

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_MODE = "RawDeployment"
# Modes in which KServe does (Knative: Serverless, its legacy name) or does not do canary traffic splitting.
CANARY_MODES = frozenset({"Serverless", "Knative"})
STANDARD_MODES = frozenset({"RawDeployment", "Standard"})
PRODUCTION_ALIAS = "production"
CANDIDATE_ALIAS = "candidate"
COMPONENTS = ("predictor", "transformer", "explainer")


def service_for_alias(service_name: str, alias: str) -> str:
    """The InferenceService that serves a registry alias: ``production`` is ``service_name`` itself, any other alias
    (``candidate``) a side-by-side ``<service_name>-<alias>``."""
    return service_name if alias == PRODUCTION_ALIAS else f"{service_name}-{alias}"


def deployment_mode(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION)


def check_canary(mode: str, canary_traffic_percent: int | None) -> None:
    """Raise ConfigError when a canary split is asked for in a mode where KServe does not split traffic."""
    if canary_traffic_percent is None:
        return
    from tagwatch.errors import ConfigError

    if mode not in CANARY_MODES:
        raise ConfigError(
            f"canaryTrafficPercent={canary_traffic_percent} is not supported in KServe's {mode} mode (KServe does "
            "canary rollouts in Serverless/Knative mode only)",
            hint="deploy the version with alias 'candidate' (a side-by-side InferenceService), then with alias "
            "'production' to promote it; see docs/deploy.md")
    if not 0 <= canary_traffic_percent <= 100:
        raise ConfigError(f"canary traffic percent {canary_traffic_percent} is not in 0..100",
                          hint="pass a percentage, or none for a full rollout")


def rollout_problems(obj: dict[str, Any]) -> list[str]:
    """What is wrong with an InferenceService's rollout settings (empty when fine)."""
    if obj.get("kind") != "InferenceService":
        return []
    mode = deployment_mode(obj)
    problems = []
    if mode is None:
        problems.append(f"metadata.annotations[{DEPLOYMENT_MODE_ANNOTATION}] must be set (KServe's default mode "
                        f"depends on its version and config); tagwatch uses {DEPLOYMENT_MODE}")
    spec = obj.get("spec") or {}
    for component in COMPONENTS:
        percent = (spec.get(component) or {}).get("canaryTrafficPercent")
        if percent is not None and mode not in CANARY_MODES:
            problems.append(f"spec.{component}.canaryTrafficPercent is set but the deployment mode is {mode}: KServe "
                            "does canary rollouts in Serverless mode only; use a candidate InferenceService")
    return problems
