"""The built wheel works without the checkout: it compiles both pipelines to the committed IR, its component modules
load the way the IR's executor loads them, and its JSON schemas ship as package data.

The wheel is built from what the Dockerfile copies (pyproject.toml, constraints.txt, README.md, src/) in a temp dir,
installed into a fresh venv outside the checkout, and run with cwd outside the checkout and a clean environment. So a
file the CLI reads from the repository root (or a ``sys.path`` trick that finds it) fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DOCKER_CONTEXT = ("pyproject.toml", "constraints.txt", "README.md", "src")  # the Dockerfile's COPY lines
PIPELINES = ("pretrain_and_deploy", "transfer_only")


def _run(args: list, *, env: dict | None = None, cwd: Path | None = None, check: bool = True,
         timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{args[:4]} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh venv with only the tagwatch wheel installed; its python, bin dir, a work dir and a clean env."""
    root = tmp_path_factory.mktemp("wheel")
    assert REPO not in root.resolve().parents, "the temp dir must lie outside the checkout"
    context = root / "context"
    context.mkdir()
    for name in DOCKER_CONTEXT:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, context / name)
    dist = root / "dist"
    # Offline: no package index here; setuptools and wheel come from the running venv (no build isolation).
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", dist, context], cwd=root)
    (wheel,) = dist.glob("tagwatch-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # The dependencies (kfp, pydantic, torch ...) are borrowed from this test's venv because there is no network to
    # install them. A plain directory line in a .pth only appends that dir to sys.path: that dir's own .pth files
    # (the editable install's finder pointing at the checkout's src/) are not processed, and the fresh venv's
    # site-packages comes first, so `tagwatch` itself can only come from the wheel (asserted below).
    (site / "_tagwatch_test_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = root / "work"
    work.mkdir()
    home = root / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
           "LANG": os.environ.get("LANG", "C.UTF-8"), "TAGWATCH_PATHS__STATE_DIR": str(root / "state")}
    return {"python": python, "bin": venv / "bin", "site": site, "work": work, "env": env}


def test_tagwatch_comes_from_the_wheel(installed) -> None:
    out = _run([installed["python"], "-c", "import tagwatch; print(tagwatch.__file__)"], env=installed["env"],
               cwd=installed["work"]).stdout.strip()
    assert Path(out).resolve().is_relative_to(installed["site"].resolve()), out
    assert not Path(out).resolve().is_relative_to(REPO), out


def test_compile_from_the_wheel_equals_the_committed_ir(installed) -> None:
    out_dir = installed["work"] / "ir"
    _run([installed["bin"] / "tagwatch", "pipeline", "compile", "--out", out_dir], env=installed["env"],
         cwd=installed["work"])
    for name in PIPELINES:
        committed = REPO / "pipelines" / "compiled" / f"{name}.yaml"
        assert (out_dir / f"{name}.yaml").read_text() == committed.read_text(), name


def test_compile_default_writes_under_the_current_directory(installed) -> None:
    cwd = installed["work"] / "default"
    cwd.mkdir()
    _run([installed["bin"] / "tagwatch", "pipeline", "compile"], env=installed["env"], cwd=cwd)
    assert sorted(p.name for p in (cwd / "pipelines" / "compiled").iterdir()) == [f"{n}.yaml" for n in PIPELINES]


CHECK_PACKAGE = """
import importlib, json, sys
from pathlib import Path
from tagwatch.pipeline.components import COMPONENTS
from tagwatch.schemas import SCHEMA_DIR, load_schema, registry
from tagwatch.train.policy import validate_policy

site = Path(sys.argv[1]).resolve()
files = {}
for name in COMPONENTS:
    module = importlib.import_module(f"tagwatch.pipeline.components.{name}.component")
    component = getattr(module, name)
    assert component.component_spec.implementation.container.image, name
    assert callable(component.python_func), name
    assert (Path(module.__file__).parent / "README.md").is_file(), name
    files[name] = module.__file__
for filename in [*registry(), "post.v1.json", "dedup-report.v1.json", "policy.v1.json", "policy.v2.json", "policy.v3.json"]:
    assert load_schema(filename)["$schema"], filename
try:
    validate_policy({"schema_version": 2})
except Exception as error:
    assert type(error).__name__ == "ValidationError", repr(error)
else:
    raise AssertionError("an empty v2 policy validated")
assert SCHEMA_DIR.resolve().is_relative_to(site), SCHEMA_DIR
print(json.dumps(files))
"""


def test_components_and_schemas_load_from_the_wheel(installed) -> None:
    result = _run([installed["python"], "-c", CHECK_PACKAGE, installed["site"]], env=installed["env"],
                  cwd=installed["work"])
    files = json.loads(result.stdout.strip().splitlines()[-1])
    in_source = {path.parent.name for path in (REPO / "src" / "tagwatch" / "pipeline" / "components").glob("*/component.py")}
    assert set(files) == in_source and len(files) >= 12  # every component of the source tree ships in the wheel
    for path in files.values():
        assert Path(path).resolve().is_relative_to(installed["site"].resolve()), path


def test_the_kfp_executor_runs_a_packaged_component(installed) -> None:
    """``kfp.dsl.executor_main`` loads the packaged deploy_model module by path (the way it runs a containerized
    component from an installed package; the lightweight IR runs its own copy of the body under ``_KFP_RUNTIME``,
    where ``dsl.component`` does not exist), resolves the executor input and runs the body into
    ``tagwatch.pipeline.steps`` from the wheel. Every success path of a component needs S3 or Kubernetes, so the
    check is the body's own domain error for an unknown mode: it can only come from the installed tagwatch code,
    after the executor did all of its part."""
    module = installed["site"] / "tagwatch" / "pipeline" / "components" / "deploy_model" / "component.py"
    out = installed["work"] / "executor"
    executor_input = {
        "inputs": {"parameterValues": {"version": 1, "mode": "staging"}},
        "outputs": {"artifacts": {"deployment": {"artifacts": [
            {"name": "deployment", "type": {"schemaTitle": "system.Markdown"}, "uri": str(out / "deployment.md")}]}},
            "outputFile": str(out / "output_metadata.json")},
    }
    result = _run([installed["python"], "-m", "kfp.dsl.executor_main", "--component_module_path", module,
                   "--function_to_execute", "deploy_model", "--executor_input", json.dumps(executor_input)],
                  env=installed["env"], cwd=installed["work"], check=False)
    assert result.returncode != 0
    assert "PipelineError" in result.stderr and "unknown mode 'staging'" in result.stderr, result.stderr[-3000:]


CHECK_REVIEW = """
import sys, warnings
from pathlib import Path
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
import tagwatch.review.app as review_app
from tagwatch.settings import load_settings

assert Path(review_app.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), review_app.__file__
app = review_app.create_app(load_settings(), queue=None, recorder=None, ledger=None, history=None, s3=None)
client = TestClient(app)
page = client.get("/signin")
assert page.status_code == 200 and 'name="csrf_token"' in page.text, page.text[:500]
for path in ("/static/review.js", "/static/review.css"):
    assert client.get(path).status_code == 200, path
print("review pages ok")
"""


def test_the_review_app_renders_from_the_wheel(installed) -> None:
    """Its templates and static files ship as package data (pyproject's tagwatch.review package-data)."""
    result = _run([installed["python"], "-c", CHECK_REVIEW, installed["site"]], env=installed["env"],
                  cwd=installed["work"])
    assert "review pages ok" in result.stdout
