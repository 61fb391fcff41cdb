"""Creating and waiting for TrainJobs / PyTorchJobs / InferenceServices.

No Kubernetes API server can be reached here, so these tests drive the create/status/failure/timeout logic
against a fake of ``kubernetes.client.CustomObjectsApi`` ONLY (the four methods the code calls, with the
ApiException status codes the real client raises). The objects themselves are validated for real against the
CRD schemas in test_pipeline_objects.py.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError
from kubernetes.client.exceptions import ApiException

from tagwatch.errors import ClusterJobError
from tagwatch.pipeline.cluster import apply_inference_service, create_object, wait_for
from tagwatch.pipeline.deploy import deploy_cluster, rollout_cluster
from tagwatch.pipeline.k8s_objects import build_inference_service
from tagwatch.pipeline.training import cluster_pretrain
from tagwatch.settings import load_settings


class FakeCustomObjects:
    """Stores objects by (plural, namespace, name); each get returns the next scripted status, then the last."""

    def __init__(self, statuses: list[dict] | None = None, create_error: int | None = None) -> None:
        self.objects: dict[tuple, dict] = {}
        self.statuses = list(statuses or [])
        self.create_error = create_error
        self.calls: list[tuple] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", plural, body["metadata"]["name"]))
        if self.create_error:
            raise ApiException(status=self.create_error, reason="scripted")
        self.objects[(plural, namespace, body["metadata"]["name"])] = dict(body)
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", plural, name))
        key = (plural, namespace, name)
        if key not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        if self.statuses:
            self.objects[key] = {**self.objects[key], **self.statuses.pop(0)}
        return self.objects[key]

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append(("patch", plural, name, body))
        return self.objects[(plural, namespace, name)]

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("delete", plural, name))
        self.objects.pop((plural, namespace, name), None)


def status(*conditions: tuple[str, str, str]) -> dict:
    return {"status": {"conditions": [{"type": t, "status": "True", "reason": r, "message": m}
                                      for t, r, m in conditions]}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


SETTINGS = load_settings(s3={"endpoint_url": "https://s3.example"})


def test_trainjob_created_streamed_and_succeeds() -> None:
    api = FakeCustomObjects([{}, status(("Created", "", "")), status(("Created", "", "")),
                             status(("Complete", "JobsCompleted", "all nodes done"))])
    clock, lines = FakeClock(), []
    from tagwatch.pipeline.training import build_job

    obj = build_job(settings=SETTINGS, run_id="pretrain-1", argv=["--steps=5"], num_nodes=2, gpus_per_node=4)
    create_object(api, obj)
    result = wait_for(api, obj, timeout_s=600, poll_s=10, report=lines.append, clock=clock, sleep=clock.sleep)
    assert result.outcome.state == "succeeded" and result.seconds == 30
    assert [line.split(":")[1].split("(")[0].strip() for line in lines] == ["pending", "running", "succeeded"]
    assert ("create", "trainjobs", "pretrain-1") in api.calls


def test_cluster_pretrain_returns_where_it_ran() -> None:
    api = FakeCustomObjects([status(("Created", "", "")), status(("Complete", "JobsCompleted", ""))])
    job = cluster_pretrain(settings=SETTINGS, run_id="pretrain-5", argv=["--steps=5"], api=api, poll_s=0.01,
                           timeout_s=60, report=lambda _l: None, num_nodes=2, gpus_per_node=4)
    assert job["kind"] == "TrainJob" and job["name"] == "pretrain-5" and job["reason"] == "JobsCompleted"
    created = api.objects[("trainjobs", "tagwatch", "pretrain-5")]
    assert created["spec"]["trainer"]["numNodes"] == 2


def test_failed_job_fails_the_step_with_its_reason() -> None:
    api = FakeCustomObjects([status(("Created", "", "")),
                             status(("Created", "", ""), ("Failed", "BackoffLimitExceeded", "node-1 OOMKilled"))])
    with pytest.raises(ClusterJobError, match="failed: BackoffLimitExceeded: node-1 OOMKilled") as caught:
        cluster_pretrain(settings=SETTINGS, run_id="pretrain-2", argv=[], api=api, poll_s=0.01, timeout_s=60,
                         report=lambda _line: None, job_kind="PyTorchJob")
    assert "kubectl -n tagwatch describe pytorchjobs.kubeflow.org pretrain-2" in caught.value.hint
    assert ("delete", "pytorchjobs", "pretrain-2") not in api.calls  # kept for its logs


def test_timeout_deletes_the_job_and_says_why() -> None:
    api = FakeCustomObjects([status(("Suspended", "QueueFull", "no GPU quota"))])
    clock = FakeClock()
    from tagwatch.pipeline.training import build_job

    obj = build_job(settings=SETTINGS, run_id="pretrain-3", argv=[])
    create_object(api, obj)
    with pytest.raises(ClusterJobError, match=r"not done after 100s \(last: pending, suspended"):
        wait_for(api, obj, timeout_s=100, poll_s=30, report=lambda _l: None, clock=clock, sleep=clock.sleep)
    assert ("delete", "trainjobs", "pretrain-3") in api.calls and clock.now == 100


@pytest.mark.parametrize(("code", "words"), [(409, "already exists"), (403, "not allowed"), (404, "does not serve")])
def test_create_errors_become_hints(code: int, words: str) -> None:
    with pytest.raises(ClusterJobError, match=words):
        cluster_pretrain(settings=SETTINGS, run_id="pretrain-4", argv=[], api=FakeCustomObjects(create_error=code))


def test_job_deleted_while_waiting() -> None:
    api = FakeCustomObjects()
    from tagwatch.pipeline.training import build_job

    with pytest.raises(ClusterJobError, match="disappeared"):
        wait_for(api, build_job(settings=SETTINGS, run_id="gone", argv=[]), timeout_s=10, poll_s=1)


def test_inference_service_created_then_patched() -> None:
    api, lines = FakeCustomObjects(), []
    first = build_inference_service(name="m", namespace="tagwatch", storage_uri="s3://models/v1/repository")
    assert apply_inference_service(api, first, report=lines.append) == "created"
    second = build_inference_service(name="m", namespace="tagwatch", storage_uri="s3://models/v2/repository")
    assert apply_inference_service(api, second, report=lines.append) == "patched"
    patch = [c for c in api.calls if c[0] == "patch"][0][3]
    assert patch["spec"]["predictor"] == {"model": {"storageUri": "s3://models/v2/repository"},
                                          "canaryTrafficPercent": None}
    api.statuses = [{"metadata": {"generation": 2}, "status": {"observedGeneration": 1}},
                    {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "url": "http://m.tagwatch",
                                                               "conditions": [{"type": "Ready", "status": "True"}]}}]
    clock = FakeClock()
    result = wait_for(api, second, timeout_s=60, poll_s=5, report=lines.append, clock=clock, sleep=clock.sleep)
    assert result.outcome.reason == "http://m.tagwatch" and clock.now == 5


def test_service_never_ready_times_out_without_deleting() -> None:
    api = FakeCustomObjects([{"status": {"conditions": [{"type": "Ready", "status": "False",
                                                         "reason": "RevisionMissing", "message": "image pull"}]}}])
    obj = build_inference_service(name="m", namespace="tagwatch", storage_uri="s3://x/repository")
    apply_inference_service(api, obj, report=lambda _l: None)
    clock = FakeClock()
    with pytest.raises(ClusterJobError, match="RevisionMissing: image pull"):
        wait_for(api, obj, timeout_s=20, poll_s=5, report=lambda _l: None, clock=clock, sleep=clock.sleep,
                 delete_on_timeout=False)
    assert not [c for c in api.calls if c[0] == "delete"]


def test_deploy_cluster_needs_the_registry_version(monkeypatch) -> None:
    """deploy_cluster resolves the version in the registry first; an unknown S3 endpoint fails before any
    cluster call (the fake records none)."""
    api = FakeCustomObjects()
    bad = load_settings(s3={"endpoint_url": "http://127.0.0.1:9", "max_attempts": 1, "connect_timeout_s": 0.5})
    with pytest.raises(EndpointConnectionError, match=r"127\.0\.0\.1:9/models/registry/"):
        deploy_cluster(settings=bad, version=1, api=api)
    assert api.calls == []


READY = {"status": {"url": "http://ready", "conditions": [{"type": "Ready", "status": "True"}]}}


def test_candidate_then_promote() -> None:
    """The rollout KServe supports in RawDeployment mode: the candidate runs beside production (which is not
    touched), then promotion patches production to the candidate's storageUri and deletes the candidate."""
    api, lines = FakeCustomObjects([READY] * 10), []
    v1, v2 = "s3://models/registry/m/versions/000001/repository", "s3://models/registry/m/versions/000002/repository"
    first = rollout_cluster(api, storage_uri=v1, version=1, alias="production", service_name="m", timeout_s=10,
                            report=lines.append)
    assert (first["action"], first["service"], first["retired_candidate"]) == ("created", "m", None)
    candidate = rollout_cluster(api, storage_uri=v2, version=2, alias="candidate", service_name="m", timeout_s=10,
                                report=lines.append)
    assert (candidate["action"], candidate["service"]) == ("created", "m-candidate")
    assert not [c for c in api.calls if c[0] in ("patch", "delete")]  # production kept serving v1, untouched
    created = api.objects[("inferenceservices", "tagwatch", "m-candidate")]
    assert created["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert created["spec"]["predictor"]["model"]["storageUri"] == v2
    assert "canaryTrafficPercent" not in created["spec"]["predictor"]
    promoted = rollout_cluster(api, storage_uri=v2, version=2, alias="production", service_name="m", timeout_s=10,
                               report=lines.append)
    assert (promoted["action"], promoted["service"], promoted["retired_candidate"]) == ("patched", "m", "m-candidate")
    (patch,) = [c for c in api.calls if c[0] == "patch"]
    assert patch[2] == "m" and patch[3]["spec"]["predictor"]["model"]["storageUri"] == v2
    assert ("delete", "inferenceservices", "m-candidate") in api.calls
    assert ("inferenceservices", "tagwatch", "m-candidate") not in api.objects


def test_promote_keeps_a_candidate_that_serves_another_version() -> None:
    api, lines = FakeCustomObjects([READY] * 10), []
    rollout_cluster(api, storage_uri="s3://x/3", version=3, alias="candidate", service_name="m", timeout_s=10,
                    report=lines.append)
    result = rollout_cluster(api, storage_uri="s3://x/2", version=2, alias="production", service_name="m",
                             timeout_s=10, report=lines.append)
    assert result["retired_candidate"] is None and not [c for c in api.calls if c[0] == "delete"]
    assert any("serves s3://x/3, not the promoted version: kept" in line for line in lines)


def test_deploy_refuses_a_canary_before_touching_anything() -> None:
    from tagwatch.errors import ConfigError

    api = FakeCustomObjects()
    with pytest.raises(ConfigError, match="canaryTrafficPercent=10 is not supported"):
        deploy_cluster(settings=SETTINGS, version=1, canary_traffic_percent=10, api=api)
    assert api.calls == []
