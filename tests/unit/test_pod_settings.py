"""What a pod needs from the code, checked without a cluster: probes that mean what their manifest says, a state
dir that never lands on a read-only root, Kafka's TLS + SCRAM listener, and bind addresses as settings."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tagwatch.clients import kafka_config
from tagwatch.errors import ConfigError
from tagwatch.k8s.validate import render
from tagwatch.moderation.metrics import StreamMetrics
from tagwatch.pipeline.k8s_objects import TRAIN_COMMAND
from tagwatch.settings import KafkaSettings, load_settings
from tagwatch.stack.ports import pick_free_ports

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def consumer_container():
    objects = render(REPO / "manifests" / "overlays" / "prod")
    [deployment] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tagwatch-moderation"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_probes_in_the_manifest_fail_when_the_consumer_is_wedged_or_not_ready(consumer_container):
    metrics = StreamMetrics()
    metrics.ready_cache_s = 0  # probe the dependencies on every request (a pod caches them for 5 s)
    port = pick_free_ports("127.0.0.1", 1)[0]
    server = metrics.serve(port)
    try:
        live = consumer_container["livenessProbe"]["httpGet"]["path"]
        ready = consumer_container["readinessProbe"]["httpGet"]["path"]
        # not joined yet: not ready, but alive (a restart would not help)
        assert _get(port, ready)[0] == 503 and "no partition assignment" in _get(port, ready)[1]
        assert _get(port, live)[0] == 200
        metrics.assignment_changed(["posts[0]"])

        def triton_down() -> None:
            raise ConnectionError("Triton at tagwatch-moderation-predictor:9000 refused")

        metrics.dependencies["triton"] = triton_down
        status, body = _get(port, ready)
        assert status == 503 and "triton: Triton at" in body
        metrics.dependencies.clear()
        assert _get(port, ready)[0] == 200
        # wedged: a partition undecided past the stuck bound -> liveness fails (the kubelet restarts the pod)
        metrics.stuck["posts[0]@12"] = -1e9
        status, body = _get(port, live)
        assert status == 503 and "stuck: posts[0]@12" in body
        assert _get(port, "/metrics")[0] == 200  # what the probes used to ask: it cannot see either state
    finally:
        server.shutdown()


def test_the_metrics_port_binds_where_the_settings_say(consumer_container):
    env = {e.split("=", 1)[0]: e.split("=", 1)[1] for e in
           (REPO / "manifests" / "base" / "params.env").read_text().splitlines() if e and not e.startswith("#")}
    assert env["TAGWATCH_HTTP__BIND_HOST"] == "0.0.0.0"
    assert load_settings().http.bind_host == "127.0.0.1"  # loopback by default on one machine
    metrics, port = StreamMetrics(), pick_free_ports("127.0.0.1", 1)[0]
    server = metrics.serve(port, load_settings(http={"bind_host": "0.0.0.0"}).http.bind_host)
    try:
        assert server.server_address[0] == "0.0.0.0"
    finally:
        server.shutdown()


def test_the_state_dir_never_lands_on_a_folder_named_tilde_without_a_home():
    """A pod's uid has no passwd entry and may have no HOME: the default must not become '/~/.local/...' (a
    read-only root) but a per-uid folder under the temp dir (a pod's mounted /tmp)."""
    code = "from tagwatch.settings import load_settings; print(load_settings().paths.state_dir)"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO / "src")}
    # a user namespace maps an unknown uid (no passwd entry) onto ours: the checkout stays readable wherever it is
    out = subprocess.run(["unshare", "--user", "--map-user=54321", "--map-group=54321", sys.executable, "-c", code],
                         env=env, capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "/tmp/tagwatch-54321/.local/share/tagwatch"


def test_kafka_tls_and_scram_reach_every_client_and_half_configured_auth_is_refused(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    kafka = KafkaSettings(bootstrap_servers="b:9093", security_protocol="SASL_SSL", username="tagwatch-moderation",
                          password="s3cret", ssl_cafile=ca)
    config = kafka_config(kafka, client_id="t")
    assert config["security_protocol"] == "SASL_SSL" and config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "tagwatch-moderation" and config["sasl_plain_password"] == "s3cret"
    assert config["ssl_cafile"] == str(ca)
    assert "s3cret" not in repr(kafka)
    with pytest.raises(ConfigError, match="needs a username and a password"):
        kafka_config(KafkaSettings(bootstrap_servers="b:9093", security_protocol="SASL_SSL", username="u"),
                     client_id="t")
    with pytest.raises(ConfigError, match="security_protocol is PLAINTEXT"):
        kafka_config(KafkaSettings(bootstrap_servers="b:9093", username="u", password="p"), client_id="t")
    with pytest.raises(ConfigError, match="CA file .* does not exist"):
        kafka_config(KafkaSettings(bootstrap_servers="b:9093", security_protocol="SSL", ssl_cafile=tmp_path / "no"),
                     client_id="t")


def test_the_manifests_kafka_settings_load():
    """Every TAGWATCH_* key of params.env is a setting (the ConfigMap once named kafka.username, which did not
    exist, and every pod would have failed at start)."""
    env = dict(line.split("=", 1) for line in (REPO / "manifests" / "base" / "params.env").read_text().splitlines()
               if line and not line.startswith("#"))
    out = subprocess.run([sys.executable, "-m", "tagwatch", "config", "show"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO / "src"), **env,
                              "TAGWATCH_KAFKA__PASSWORD": "from-the-secret"})
    assert out.returncode == 0, out.stderr
    assert "from-the-secret" not in out.stdout


def test_the_training_runtime_runs_the_command_the_pipeline_jobs_run():
    objects = render(REPO / "manifests" / "overlays" / "dev")
    [runtime] = [o for o in objects if o["kind"] == "TrainingRuntime"]
    [job] = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    [container] = job["template"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == TRAIN_COMMAND
