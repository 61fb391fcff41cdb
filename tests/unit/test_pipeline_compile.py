"""The committed IR YAML is what the pipelines compile to today, parses into the PipelineSpec proto, carries the
gate and the kfp-kubernetes settings; component READMEs match their docstrings; components' python_func."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tagwatch.pipeline.compile import COMPONENTS, PIPELINES, compile_all, component_readme, components_dir

# The committed IR stays in the repository (users upload it); the components' READMEs sit next to their sources.
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    return {path.stem: path for path in compile_all(out)}


@pytest.mark.parametrize("name", PIPELINES)
def test_committed_ir_is_current(compiled, name: str) -> None:
    committed = ROOT / "pipelines" / "compiled" / f"{name}.yaml"
    assert committed.read_text() == compiled[name].read_text(), (
        f"{committed} is stale: run `tagwatch pipeline compile` at the repository root and commit the result")


def _documents(path: Path) -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


@pytest.mark.parametrize("name", PIPELINES)
def test_ir_parses_into_the_pipeline_spec_proto(name: str) -> None:
    spec_doc, platform_doc = _documents(ROOT / "pipelines" / "compiled" / f"{name}.yaml")
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == f"tagwatch-{name.replace('_', '-')}"
    tasks = spec.root.dag.tasks
    gate = next(name for name in tasks if name.startswith("condition-"))  # numbered after the build's loops
    assert "evaluate" in tasks[gate].dependent_tasks
    condition = tasks[gate].trigger_policy.condition
    assert "pipelinechannel--evaluate-Output" in condition and "true" in condition
    inner = spec.components[tasks[gate].component_ref.name].dag.tasks
    assert set(inner) == {"register-model", "deploy-model"}
    platform = json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec())
    executors = json_format.MessageToDict(platform)["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor, config in executors.items():
        assert config["secretAsEnv"][0]["secretName"] == "tagwatch-s3", executor
        keys = {m["secretKey"]: m["envVar"] for m in config["secretAsEnv"][0]["keyToEnv"]}
        assert keys == {"AWS_ACCESS_KEY_ID": "TAGWATCH_S3__ACCESS_KEY_ID",
                        "AWS_SECRET_ACCESS_KEY": "TAGWATCH_S3__SECRET_ACCESS_KEY"}
        assert config["securityContext"]["runAsNonRoot"] is True, executor
    transfer = executors["exec-transfer"]
    assert transfer["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert transfer["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    resources = spec_doc["deploymentSpec"]["executors"]["exec-transfer"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    images = {e["container"]["image"] for e in spec_doc["deploymentSpec"]["executors"].values()
              if "container" in e}
    from tagwatch.pipeline.image import IMAGE

    assert images == {IMAGE}


def test_pretrain_and_deploy_has_every_step() -> None:
    spec_doc, _ = _documents(ROOT / "pipelines" / "compiled" / "pretrain_and_deploy.yaml")
    tasks = spec_doc["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "plan-dataset", "for-loop-1", "reduce-dataset", "for-loop-2", "build-dataset",
                          "pretrain", "transfer", "export-model", "evaluate", "condition-3"}
    # the data build fans out: one hash-posts and one write-shards task per range the plan returns
    for loop, inner in (("for-loop-1", "hash-posts"), ("for-loop-2", "write-shards")):
        iterator = tasks[loop]["parameterIterator"]
        assert iterator["items"] == {"inputParameter": "pipelinechannel--plan-dataset-Output"}
        assert set(spec_doc["components"][tasks[loop]["componentRef"]["name"]]["dag"]["tasks"]) == {inner}
    collected = tasks["reduce-dataset"]["inputs"]["parameters"]["hashed"]
    assert collected["taskOutputParameter"]["producerTask"] == "for-loop-1"  # dsl.Collected over the map tasks
    pretrain = spec_doc["root"]["dag"]["tasks"]["pretrain"]["inputs"]["parameters"]
    assert pretrain["pipeline_job_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


@pytest.mark.parametrize("name", COMPONENTS)
def test_component_readme_is_generated_from_the_docstring(name: str) -> None:
    assert (components_dir() / name / "README.md").read_text() == component_readme(name), (
        "stale README: run `tagwatch pipeline compile --readmes`")


def test_deploy_python_func_refuses_an_unknown_mode(tmp_path) -> None:
    from kfp.dsl import Markdown

    from tagwatch.pipeline.components.deploy_model.component import deploy_model
    from tagwatch.errors import PipelineError

    with pytest.raises(PipelineError, match="unknown mode 'staging'"):
        deploy_model.python_func(version=1, deployment=Markdown(name="d", uri=str(tmp_path / "d")), mode="staging")


def test_pretrain_python_func_in_cluster_mode_without_a_cluster(tmp_path, monkeypatch) -> None:
    """The real component body, cluster mode, on a machine with no Kubernetes API: it fails with the hint."""
    from kfp.dsl import Dataset, Metrics, Model

    from tagwatch.pipeline.components.pretrain.component import pretrain
    from tagwatch.errors import ClusterJobError

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.setenv("TAGWATCH_S3__ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(ClusterJobError, match="no Kubernetes API") as caught:
        pretrain.python_func(dataset=Dataset(name="d", uri=str(tmp_path / "d"), metadata={"dataset": "h/v1"}),
                             checkpoint=Model(name="c", uri=str(tmp_path / "c")),
                             metrics=Metrics(name="m", uri=str(tmp_path / "m")), pipeline_job_id="abc", mode="cluster")
    assert "mode=local" in caught.value.hint


def test_evaluate_python_func_without_the_export(tmp_path, monkeypatch) -> None:
    from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model

    from tagwatch.pipeline.components.evaluate.component import evaluate
    from tagwatch.errors import ExportError

    monkeypatch.setenv("TAGWATCH_S3__ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(ExportError, match="export.json not found"):
        evaluate.python_func(dataset=Dataset(name="d", uri=str(tmp_path / "d"), metadata={"dataset": "synthetic:64"}),
                             onnx_model=Model(name="o", uri=str(tmp_path / "empty")),
                             metrics=Metrics(name="m", uri=str(tmp_path / "m")),
                             classification=ClassificationMetrics(name="c", uri=str(tmp_path / "c")),
                             report=HTML(name="r", uri=str(tmp_path / "r.html")),
                             evaluation=Artifact(name="e", uri=str(tmp_path / "e")))
