"""Pod contracts: each workload of the rendered overlays that runs the tagwatch image is started the way a kubelet
would start it (tagwatch.k8s.sandbox: bwrap, read-only root, only its volumeMounts writable, its uid/gid, its env
and no HOME) and must keep the contract its manifest declares: it starts, its probes answer on their declared
paths and ports within the probe budget, every containerPort listens on all interfaces (probed on a
non-loopback address, as a kubelet probes the pod IP), SIGTERM ends it cleanly within
terminationGracePeriodSeconds, and its RSS stays under its memory limit.

Fixture values stand in for the cluster's Secrets, and the endpoints point at the embedded stack: S3, Kafka and
Triton addresses, and Kafka's security protocol (Tansu speaks PLAINTEXT; Strimzi's TLS + SCRAM listener cannot run
here, so the SASL settings are the one part of the consumer's env this test replaces instead of using).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from tagwatch.clients import s3_client
from tagwatch.k8s.sandbox import Image, Sandbox, effective_command, pod_address, probe_budget_s, workloads
from tagwatch.k8s.validate import render
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.pipeline.image import IMAGE_REPOSITORY
from tagwatch.stack.ports import pick_free_ports
from tests.conftest import make_settings, run_cli, stack_env
from tests.support import colour_model as cm
from tests.support.serving_models import serve_tiny_model
from tests.support.stream import wait_for

REPO = Path(__file__).resolve().parents[2]
IMAGE = Image.from_dockerfile(REPO / "Dockerfile")

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bwrap (Debian `bubblewrap`) is missing: `make sysdeps` installs it")


@pytest.fixture(scope="module")
def serving_stack(tmp_path_factory):
    """A private stack whose Triton serves a registered `production` model (what a cluster's KServe would)."""
    root = tmp_path_factory.mktemp("pods")
    base = make_settings(root / "state")
    env = stack_env(base)
    try:
        yield serve_tiny_model(base, env, root / "export")
    finally:
        run_cli("stack", "down", env=env)


def fixture_secrets(settings) -> dict[str, dict[str, str]]:
    """The Secrets the manifests reference by name, with this stack's values."""
    return {
        "tagwatch-s3": {"AWS_ACCESS_KEY_ID": settings.s3.access_key_id,
                        "AWS_SECRET_ACCESS_KEY": settings.s3.secret_access_key.get_secret_value()},
        "tagwatch-moderation": {"password": "scram-password-unused-on-tansu"},
        "tagwatch-kafka-cluster-ca-cert": {"ca.crt": "-----BEGIN CERTIFICATE-----\nunused on tansu\n"},
    }


def pointed_at_stack(env: dict[str, str], settings) -> dict[str, str]:
    """The pod's env with the cluster endpoints replaced by the embedded stack's (and Kafka in PLAINTEXT)."""
    out = {k: v for k, v in env.items() if k not in {"TAGWATCH_KAFKA__USERNAME", "TAGWATCH_KAFKA__PASSWORD",
                                                     "TAGWATCH_KAFKA__SSL_CAFILE"}}
    out.update({
        "TAGWATCH_S3__ENDPOINT_URL": settings.s3.endpoint_url,
        "TAGWATCH_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "TAGWATCH_KAFKA__SECURITY_PROTOCOL": "PLAINTEXT",
        "TAGWATCH_TRITON__HOST": settings.triton.host,
        "TAGWATCH_TRITON__GRPC_PORT": str(settings.triton.grpc_port),
        "TAGWATCH_TRITON__HTTP_PORT": str(settings.triton.http_port),
    })
    return out


def the_workload(objects, prefix: str):
    found = [w for w in workloads(objects, IMAGE_REPOSITORY) if w.ident.startswith(prefix)]
    assert len(found) == 1, [w.ident for w in workloads(objects, IMAGE_REPOSITORY)]
    return found[0]


def test_the_image_has_one_entrypoint_and_the_deployment_runs_the_cli():
    objects = render(REPO / "manifests" / "overlays" / "dev")
    workload = the_workload(objects, "Deployment/tagwatch-moderation")
    assert IMAGE.entrypoint == ["tagwatch"], "Dockerfile ENTRYPOINT must be the tagwatch CLI"
    argv = effective_command(workload.container, IMAGE)
    assert argv[:2] == ["tagwatch", "moderate"], argv


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_moderation_deployment_keeps_its_pod_contract(overlay, serving_stack, tmp_path):
    settings = serving_stack
    objects = render(REPO / "manifests" / "overlays" / overlay)
    workload = the_workload(objects, "Deployment/tagwatch-moderation")
    container = workload.container
    secrets = fixture_secrets(settings)
    env = pointed_at_stack(workload.env(objects, secrets, IMAGE), settings)
    assert "HOME" not in env
    sandbox = Sandbox(workload, effective_command(container, IMAGE), env, secrets, tmp_path / "pod.log")
    s3 = s3_client(settings.s3)
    posts = [new_post(f"pod-{overlay}-{n}-{tmp_path.name}", *upload_image(s3, settings.s3.buckets.posts,
                                                                       cm.jpeg(cm.RED, seed=900 + n)))
             for n in range(3)]
    publish_posts(settings, posts)  # the topics are the ConfigMap's (= the settings' defaults)
    host = pod_address()
    sandbox.start(tmp_path / "fixtures")
    code = None
    try:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert kind in container, f"{workload.ident} declares no {kind}"
        status, body, took = sandbox.wait_probe("startupProbe", host, probe_budget_s(container, "startupProbe"))
        assert status == 200, f"startup probe: {status} {body!r} after {took:.0f}s\n{sandbox.log_tail()}"
        budget = probe_budget_s(container, "readinessProbe")
        status, body, took = sandbox.wait_probe("readinessProbe", host, budget)
        assert status == 200, f"readiness: {status} {body!r} after {took:.0f}s (budget {budget:.0f}s)\n" \
                              f"{sandbox.log_tail()}"
        status, body, _ = sandbox.wait_probe("livenessProbe", host, probe_budget_s(container, "livenessProbe"))
        assert status == 200, f"liveness: {status} {body!r}\n{sandbox.log_tail()}"
        listening = sandbox.listening()
        for port in container.get("ports", []):
            addresses = listening.get(port["containerPort"], set())
            assert addresses & {"0.0.0.0", "::"}, f"port {port} listens on {addresses or 'nothing'}"
        # the pod does its job: the posts published before it started are decided (ledger on S3)
        ledger = Ledger(s3, settings.s3.buckets.ledger)
        ours = {p.post_id for p in posts}
        wait_for(lambda: (sandbox.sample_rss(), ours <= set(ledger.post_ids()))[1], 90, "the pod to decide 3 posts",
                 logs=[tmp_path / "pod.log"])
        sandbox.sample_rss()
    finally:
        code, took = sandbox.terminate()
    assert code == 0, f"SIGTERM: exit {code} after {took:.1f}s (grace {workload.grace_s:.0f}s)\n{sandbox.log_tail()}"
    limit = workload.memory_limit
    assert limit is not None and 0 < sandbox.peak_rss < limit, \
        f"peak RSS {sandbox.peak_rss / 2**20:.0f} MiB vs limit {limit and limit / 2**20:.0f} MiB"
    print(f"\n{overlay} {workload.ident}: ready, probes ok, SIGTERM exit 0 in {took:.1f}s, "
          f"peak RSS {sandbox.peak_rss / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB")


def test_the_review_deployment_keeps_its_pod_contract(stack_settings, tmp_path):
    """The review app as its pod: probes on the pod address, sign-in with the accounts file from its Secret volume,
    its session secret from a Secret, SIGTERM exit 0 within the grace period, RSS under the limit."""
    import http.client
    import re
    import urllib.parse
    import urllib.request

    from tagwatch.review.auth import Accounts

    settings = stack_settings
    objects = render(REPO / "manifests" / "overlays" / "dev")
    workload = the_workload(objects, "Deployment/tagwatch-review")
    container = workload.container
    accounts = Accounts(tmp_path / "accounts.yaml")
    accounts.add("alice", "pod contract password")
    secrets = {**fixture_secrets(settings), "tagwatch-review": {"password": "scram-password-unused-on-tansu"},
               "tagwatch-review-session": {"SESSION_SECRET": "pod-contract-session-secret-" + "s" * 24},
               "tagwatch-review-accounts": {"review-accounts.yaml": accounts.path.read_text()}}
    env = pointed_at_stack(workload.env(objects, secrets, IMAGE), settings)
    assert env["TAGWATCH_REVIEW__SECURE_COOKIES"] == "true" and "HOME" not in env
    # the source under test, which the sandbox binds read-only (a worktree may share a venv installed elsewhere)
    import tagwatch

    env["PYTHONPATH"] = str(Path(tagwatch.__file__).resolve().parents[1])
    sandbox = Sandbox(workload, effective_command(container, IMAGE), env, secrets, tmp_path / "pod.log")
    host = pod_address()
    sandbox.start(tmp_path / "fixtures")
    try:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            status, body, took = sandbox.wait_probe(kind, host, probe_budget_s(container, kind))
            assert status == 200, f"{kind}: {status} {body!r} after {took:.0f}s\n{sandbox.log_tail()}"
        for port in container["ports"]:
            assert sandbox.listening().get(port["containerPort"], set()) & {"0.0.0.0", "::"}, port
        # sign in on the pod address with the account from the mounted Secret (Secure cookies: kept by hand)
        base = f"http://{host}:{container['ports'][0]['containerPort']}"
        page = urllib.request.urlopen(f"{base}/signin", timeout=5)
        cookie = page.headers["set-cookie"].split(";", 1)[0]
        assert "secure" in page.headers["set-cookie"].lower()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode()).group(1)
        form = urllib.parse.urlencode({"name": "alice", "password": "pod contract password", "csrf_token": token,
                                       "next": "/"}).encode()
        connection = http.client.HTTPConnection(host, container["ports"][0]["containerPort"], timeout=10)
        connection.request("POST", "/signin", body=form, headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        answer = connection.getresponse()
        answer.read()
        assert (answer.status, answer.headers["location"]) == (303, "/")
        signed_in = answer.headers["set-cookie"].split(";", 1)[0]
        queue = urllib.request.urlopen(urllib.request.Request(f"{base}/", headers={"Cookie": signed_in}), timeout=10)
        assert queue.status == 200 and "signed in as <strong id=\"reviewer\">alice</strong>" in queue.read().decode()
        sandbox.sample_rss()
    finally:
        code, took = sandbox.terminate()
    assert code == 0, f"SIGTERM: exit {code} after {took:.1f}s (grace {workload.grace_s:.0f}s)\n{sandbox.log_tail()}"
    assert 0 < sandbox.peak_rss < workload.memory_limit


@pytest.fixture(scope="module")
def s3_dataset(stack_settings):
    from tagwatch.train.synthetic import build_synthetic_dataset, write_dataset_to_s3

    dataset = build_synthetic_dataset(num_samples=48, num_labels=6, image_size=48, samples_per_shard=16,
                                      name=f"pods-{uuid.uuid4().hex[:6]}")
    write_dataset_to_s3(dataset, client=s3_client(stack_settings.s3), bucket=stack_settings.s3.buckets.datasets)
    return dataset


@pytest.mark.parametrize("job_kind", ["TrainJob", "PyTorchJob"])
def test_the_pretraining_pod_runs_as_the_pipeline_creates_it(job_kind, stack_settings, s3_dataset, tmp_path):
    """The pipeline's cluster pretrain step builds the job (tagwatch.pipeline.training.build_job); its pod runs
    torchrun with the pipeline's argv, under the job's securityContext and volumes, and writes its checkpoint to
    S3 with nothing but /tmp and /dev/shm writable."""
    from tagwatch.k8s.sandbox import trainjob_workload
    from tagwatch.pipeline.training import build_job
    from tagwatch.train.pretrain import PretrainConfig
    from tagwatch.pipeline.steps import read_checkpoint_json

    settings = stack_settings
    run_id = f"pod-{job_kind.lower()}-{uuid.uuid4().hex[:6]}"
    config = PretrainConfig(dataset=f"{s3_dataset.manifest.name}/v1", run_id=run_id, steps=3, arch="tiny_cnn", width=8,
                            image_size=48, batch_size=8, workers=1, progress=False)
    job = build_job(settings=settings, run_id=run_id, argv=config.to_argv(), job_kind=job_kind, gpus_per_node=0,
                    cpu="2", memory="4Gi", runtime_name="tagwatch-torch", runtime_kind="TrainingRuntime")
    objects = render(REPO / "manifests" / "overlays" / "dev")
    if job_kind == "TrainJob":
        [runtime] = [o for o in objects if o["kind"] == "TrainingRuntime" and o["metadata"]["name"] == "tagwatch-torch"]
        workload = trainjob_workload(job, runtime)
    else:
        [workload] = workloads([job], IMAGE_REPOSITORY)
    secrets = fixture_secrets(settings)
    env = workload.env(objects, secrets, IMAGE)
    assert "HOME" not in env and env["TAGWATCH_S3__ENDPOINT_URL"] == settings.s3.endpoint_url
    # what Trainer / the Training Operator set for one node with one process (torchrun reads PET_*)
    env.update(PET_NNODES="1", PET_NPROC_PER_NODE="1", PET_NODE_RANK="0", PET_MASTER_ADDR="127.0.0.1",
               PET_MASTER_PORT=str(pick_free_ports("127.0.0.1", 1)[0]))
    argv = effective_command(workload.container, IMAGE)
    assert argv[0] == "torchrun", argv
    sandbox = Sandbox(workload, argv, env, secrets, tmp_path / "pod.log")
    sandbox.start(tmp_path / "fixtures")
    assert sandbox.wait_exit(240) == 0, sandbox.log_tail()
    # what the pipeline's step reads back after the job: the run's summary next to its checkpoints
    summary = read_checkpoint_json(settings, f"s3://{settings.s3.buckets.checkpoints}/{run_id}", "metrics.json")
    assert summary["run_id"] == run_id, summary
    assert 0 < sandbox.peak_rss < workload.memory_limit
    print(f"\n{workload.ident}: exit 0, checkpoint on S3, peak RSS {sandbox.peak_rss / 2**20:.0f} MiB")


def test_a_pipeline_task_runs_the_packaged_component_as_its_pod(stack_settings, s3_dataset, tmp_path):
    """The compiled IR's pretrain task, as a KFP v2 backend would start it: kfp's executor program with the
    component's inline source, the platform spec's ConfigMap/Secret env and securityContext, only /tmp writable.
    mode=local trains in the task's own pod (the cluster mode would create a TrainJob, proven above)."""
    from tagwatch.k8s.kfp_pod import component_workload

    settings = stack_settings
    out = "/tmp/outputs"  # artifact URIs inside the pod's /tmp (KFP's launcher maps s3:// to local paths likewise)
    executor_input = {
        "inputs": {
            "parameterValues": {"mode": "local", "steps": 3, "arch": "tiny_cnn", "width": 8, "image_size": 48,
                                "batch_size": 8, "workers": 1, "nproc": 1, "pipeline_job_id": uuid.uuid4().hex[:8]},
            "artifacts": {"dataset": {"artifacts": [{
                "name": "dataset", "type": {"schemaTitle": "system.Dataset"}, "uri": f"{out}/dataset",
                "metadata": {"dataset": f"{s3_dataset.manifest.name}/v1"}}]}},
        },
        "outputs": {
            "artifacts": {name: {"artifacts": [{"name": name, "type": {"schemaTitle": kind}, "uri": f"{out}/{name}"}]}
                          for name, kind in (("checkpoint", "system.Model"), ("metrics", "system.Metrics"))},
            "outputFile": f"{out}/executor_output.json",
        },
    }
    ir = REPO / "pipelines" / "compiled" / "pretrain_and_deploy.yaml"
    workload = component_workload(ir, "exec-pretrain", executor_input)
    objects = render(REPO / "manifests" / "overlays" / "dev")
    env = pointed_at_stack(workload.env(objects, fixture_secrets(settings), IMAGE), settings)
    sandbox = Sandbox(workload, effective_command(workload.container, IMAGE), env, fixture_secrets(settings),
                      tmp_path / "pod.log")
    sandbox.start(tmp_path / "fixtures")
    code = sandbox.wait_exit(240)
    log = sandbox.log_tail(6000)
    assert code == 0, log
    assert "Wrote executor output file" in log or "executor_output" in log, log
    assert 0 < sandbox.peak_rss < workload.memory_limit, f"peak RSS {sandbox.peak_rss / 2**20:.0f} MiB"
    print(f"\n{workload.ident}: exit 0, peak RSS {sandbox.peak_rss / 2**20:.0f} MiB of "
          f"{workload.memory_limit / 2**20:.0f} MiB")
