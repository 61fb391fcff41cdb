"""Render every overlay with kubectl's kustomize and validate it offline: core schemas (kubernetes-validate),
the real upstream CRD schemas (manifests/crds), the security rules, and agreement with tagwatch.settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tagwatch.errors import ManifestValidationError
from tagwatch.k8s import serving
from tagwatch.k8s.validate import (
    MIN_KUBECTL,
    count_kinds,
    kustomize,
    render,
    rollout_problems,
    security_problems,
    validate_objects,
    validate_overlay,
)
from tagwatch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRDS = MANIFESTS / "crds"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if p.is_dir())


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    objects, problems = validate_overlay(MANIFESTS / "overlays" / request.param, CRDS)
    return request.param, objects, problems


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def test_overlays_exist():
    assert OVERLAYS == ["dev", "prod"]


def test_overlay_is_valid_and_secure(rendered):
    name, objects, problems = rendered
    assert [str(p) for p in problems] == []
    counts = count_kinds(objects)
    print(f"\n{name}: {sum(counts.values())} objects {counts}")
    for kind in ("Deployment", "ScaledObject", "TriggerAuthentication", "PodDisruptionBudget", "NetworkPolicy",
                 "Kafka", "KafkaNodePool", "KafkaUser", "ServingRuntime", "InferenceService", "TrainingRuntime",
                 "Role", "RoleBinding", "Namespace", "ConfigMap"):
        assert counts.get(kind), f"{name} lacks a {kind}"
    assert counts["KafkaTopic"] == 6


def test_everything_lands_in_one_namespace(rendered):
    name, objects, _ = rendered
    (namespace,) = by_kind(objects, "Namespace")
    ns = namespace["metadata"]["name"]
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {ns}
    assert by_kind(objects, "RoleBinding")[0]["subjects"][0]["namespace"] == ns


def test_names_agree_with_settings(rendered):
    _, objects, _ = rendered
    settings = Settings()
    (params,) = by_kind(objects, "ConfigMap")
    data = params["data"]
    topics, buckets = settings.kafka.topics, settings.s3.buckets
    for field in ("posts", "decisions", "review", "dead_letter", "deleted", "review_outcomes"):
        assert data[f"TAGWATCH_KAFKA__TOPICS__{field.upper()}"] == getattr(topics, field)
    for field in ("posts", "datasets", "models", "checkpoints", "ledger"):
        assert data[f"TAGWATCH_S3__BUCKETS__{field.upper()}"] == getattr(buckets, field)
    assert data["TAGWATCH_TRITON__MODEL_NAME"] == settings.triton.model_name
    assert data["TAGWATCH_KAFKA__CONSUMER_GROUP"] == settings.kafka.consumer_group
    # every params.env key is a real setting (pydantic rejects unknown ones)
    from tagwatch.settings import load_settings

    nested: dict = {}
    for key, value in data.items():
        if key in ("TAGWATCH_KAFKA__USERNAME",):  # cluster-only: SASL identity, not a local setting
            continue
        parts = key.removeprefix("TAGWATCH_").lower().split("__")
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
    load_settings(**nested)

    assert {t["spec"]["topicName"] for t in by_kind(objects, "KafkaTopic")} == {
        topics.posts, topics.decisions, topics.review, topics.dead_letter, topics.deleted, topics.review_outcomes
    }
    for user in by_kind(objects, "KafkaUser"):
        acl_topics = {a["resource"]["name"] for a in user["spec"]["authorization"]["acls"]
                      if a["resource"]["type"] == "topic"}
        assert acl_topics <= set(topics.all()), user["metadata"]["name"]
    services = {i["metadata"]["name"]: i for i in by_kind(objects, "InferenceService")}
    assert set(services) == {settings.triton.model_name, settings.triton.nsfw_model_name}
    isvc = services[settings.triton.model_name]
    from tagwatch.registry.registry import ModelRegistry

    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    layout = ModelRegistry(None, bucket=buckets.models, model_name=settings.triton.model_name)
    assert uri in {layout.storage_uri(v) for v in range(1, 1000)}  # an immutable version, as the registry writes it
    nsfw = ModelRegistry(None, bucket=buckets.models, model_name=settings.triton.nsfw_model_name)
    assert services[nsfw.model_name]["spec"]["predictor"]["model"]["storageUri"] in {
        nsfw.storage_uri(v) for v in range(1, 1000)}
    (scaled,) = by_kind(objects, "ScaledObject")
    trigger = scaled["spec"]["triggers"][0]["metadata"]
    assert (trigger["topic"], trigger["consumerGroup"]) == (topics.posts, settings.kafka.consumer_group)


def test_the_review_app_has_its_own_identity_and_secrets(rendered):
    """The review app reads review requests in its own group and writes outcomes, as its own KafkaUser; the accounts
    file and the session secret come from Secrets, never from the ConfigMap."""
    _, objects, _ = rendered
    settings = Settings()
    topics = settings.kafka.topics
    (params,) = by_kind(objects, "ConfigMap")
    (deployment,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "tagwatch-review"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:2] == ["review", "serve"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TAGWATCH_REVIEW__SESSION_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "tagwatch-review-session"
    assert env["TAGWATCH_KAFKA__USERNAME"]["value"] == "tagwatch-review"
    assert env["TAGWATCH_KAFKA__PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "tagwatch-review"
    assert not any("SESSION_SECRET" in key or "PASSWORD" in key for key in params["data"])
    accounts = params["data"]["TAGWATCH_REVIEW__ACCOUNTS_FILE"]
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "tagwatch-review-accounts"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert accounts == f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}" and mount["readOnly"]
    probes = {kind: container[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    assert params["data"]["TAGWATCH_REVIEW__CONSUMER_GROUP"] == settings.review.consumer_group
    (user,) = [u for u in by_kind(objects, "KafkaUser") if u["metadata"]["name"] == "tagwatch-review"]
    acls = {(a["resource"]["type"], a["resource"]["name"]): set(a["operations"])
            for a in user["spec"]["authorization"]["acls"]}
    assert acls == {("topic", topics.review): {"Read", "Describe"},
                    ("topic", topics.review_outcomes): {"Write", "Describe"},
                    ("group", settings.review.consumer_group): {"Read"}}
    (service,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "tagwatch-review"]
    assert service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"] == settings.review.port


def test_consumers_never_outnumber_partitions(rendered):
    _, objects, _ = rendered
    (scaled,) = by_kind(objects, "ScaledObject")
    posts = next(t for t in by_kind(objects, "KafkaTopic") if t["spec"]["topicName"] == Settings().kafka.topics.posts)
    assert scaled["spec"]["maxReplicaCount"] <= posts["spec"]["partitions"]


def test_replication_matches_brokers(rendered):
    _, objects, _ = rendered
    brokers = by_kind(objects, "KafkaNodePool")[0]["spec"]["replicas"]
    for topic in by_kind(objects, "KafkaTopic"):
        assert topic["spec"]["replicas"] <= brokers
        assert topic["spec"]["config"]["min.insync.replicas"] <= topic["spec"]["replicas"]


def test_rbac_is_namespaced_and_specific(rendered):
    _, objects, _ = rendered
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    for role in by_kind(objects, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]


def test_prod_serves_on_gpu():
    objects = render(MANIFESTS / "overlays" / "prod")
    (isvc,) = [i for i in by_kind(objects, "InferenceService") if i["metadata"]["name"] == "tagwatch-moderation"]
    assert isvc["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    dev = render(MANIFESTS / "overlays" / "dev")
    for service in by_kind(dev, "InferenceService"):
        assert "nvidia.com/gpu" not in service["spec"]["predictor"]["model"]["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_without_deprecation_warnings(overlay):
    """kubectl >= 1.27 (kustomize v5) warns on bases / commonLabels / patchesStrategicMerge; none may be left."""
    _, warnings = kustomize(MANIFESTS / "overlays" / overlay)
    assert [w for w in warnings if "deprecat" in w.lower() or "warning" in w.lower()] == [], (
        f"`kubectl kustomize manifests/overlays/{overlay}` printed warnings; use resources / labels / patches")


def test_a_too_old_kubectl_is_refused_by_name(tmp_path):
    """Debian bookworm's kubectl 1.20 would fail on `labels` with a cryptic unknown-field error; say what is needed."""
    fake = tmp_path / "kubectl"
    fake.write_text('#!/bin/sh\nif [ "$1" = version ]; then echo \'{"clientVersion": {"major": "1", "minor": "20", '
                    '"gitVersion": "v1.20.2"}}\'; exit 0; fi\necho \'error: json: unknown field "labels"\' >&2; exit 1\n')
    fake.chmod(0o755)
    with pytest.raises(ManifestValidationError, match=r"version 1\.20; the manifests need kubectl >= 1\.22") as error:
        render(MANIFESTS / "overlays" / "dev", kubectl=str(fake))
    assert "kubernetes.io/docs/tasks/tools" in error.value.hint
    assert MIN_KUBECTL == (1, 22)


def test_inference_services_use_a_rollout_kserve_does(rendered):
    """KServe does canary rollouts (canaryTrafficPercent) in Serverless mode only; the overlays are RawDeployment,
    and the pipeline's deploy step builds its InferenceServices in the same mode, never with a canary."""
    name, objects, _ = rendered
    services = by_kind(objects, "InferenceService")
    assert services
    for isvc in services:
        assert serving.rollout_problems(isvc) == [], name
        assert serving.deployment_mode(isvc) == serving.DEPLOYMENT_MODE, name
    from tagwatch.errors import ConfigError
    from tagwatch.pipeline.k8s_objects import build_inference_service

    (production,) = [s for s in services if s["metadata"]["name"] == "tagwatch-moderation"]
    uri = production["spec"]["predictor"]["model"]["storageUri"]
    for alias in (serving.PRODUCTION_ALIAS, serving.CANDIDATE_ALIAS):
        built = build_inference_service(name=serving.service_for_alias(production["metadata"]["name"], alias),
                                        namespace=production["metadata"]["namespace"], storage_uri=uri, alias=alias)
        assert serving.deployment_mode(built) == serving.deployment_mode(production)
        assert serving.rollout_problems(built) == [] and validate_objects([built], CRDS) == []
    with pytest.raises(ConfigError, match="Serverless"):
        build_inference_service(name="m", namespace="t", storage_uri=uri, canary_traffic_percent=10)


def test_a_canary_on_a_raw_deployment_is_a_problem():
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "t", "annotations": {serving.DEPLOYMENT_MODE_ANNOTATION: "Standard"}},
            "spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"modelFormat": {"name": "onnx"}}}}}
    assert validate_objects([isvc], CRDS) == []  # the CRD schema accepts it: only the rollout rule catches it
    (problem,) = rollout_problems([isvc])
    assert "spec.predictor.canaryTrafficPercent" in str(problem) and "Serverless mode only" in str(problem)
    isvc["metadata"]["annotations"][serving.DEPLOYMENT_MODE_ANNOTATION] = "Serverless"
    assert rollout_problems([isvc]) == []
    del isvc["metadata"]["annotations"]
    assert "must be set" in str(rollout_problems([isvc]))


def test_examples_are_valid_and_secure():
    for path in sorted((MANIFESTS / "examples").glob("*.yaml")):
        objects = [d for d in yaml.safe_load_all(path.read_text()) if d]
        problems = validate_objects(objects, CRDS) + security_problems(objects)
        assert [str(p) for p in problems] == [], path


def test_a_broken_manifest_fails_every_rule():
    objects, problems = validate_overlay(ROOT / "tests" / "fixtures" / "broken-manifests", CRDS)
    text = "\n".join(str(p) for p in problems)
    assert "Deployment/insecure: [security]" in text
    for rule in ("runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "drop ALL",
                 "seccompProfile", "resources.limits", "must be pinned", "literal secret"):
        assert rule in text, rule
    assert "InferenceService/typo: [unknown-field] spec.predictor.model.storageURI" in text
    assert "KafkaTopic/wrong-type: [schema] spec.partitions" in text
    assert "Service/unknown-field: [schema]" in text and "portz" in text
    assert "plain-text-in-git" not in text  # the report names the variable, never its value


def test_cli_validates_and_fails_with_exit_7(tmp_path):
    import shutil

    from tests.conftest import run_cli

    ok = run_cli("manifests", "validate", "--manifests-dir", str(MANIFESTS))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "manifests OK" in ok.stdout
    broken = tmp_path / "manifests"
    (broken / "overlays").mkdir(parents=True)
    shutil.copytree(ROOT / "tests" / "fixtures" / "broken-manifests", broken / "overlays" / "broken")
    shutil.copytree(CRDS, broken / "crds")
    bad = run_cli("manifests", "validate", "--manifests-dir", str(broken))
    assert bad.returncode == 7, bad.stdout + bad.stderr
    assert "problem(s) in the manifests" in bad.stderr and "Traceback" not in bad.stderr
