"""One dataset-build entry: the CLI's, the pipeline step's and the demo's builds all go through a BuildRequest, and
with the same choices they make the same BuildConfig (so the same dataset version)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tagwatch.data.build import BuildConfig
from tagwatch.data.build_request import BuildRequest
from tagwatch.data.vocab import VocabConfig

pytestmark = pytest.mark.unit


def test_a_request_makes_the_build_config_with_every_choice() -> None:
    config = BuildRequest(name="n", version="v9", sources=("openmoji",), shard_samples=7, top_k=3, min_count=2,
                          seed=4, categories_path=Path("/x/c.yaml")).build_config()
    assert config == BuildConfig(name="n", version="v9", sources=("openmoji",), shard_samples=7, seed=4,
                                 vocab=VocabConfig(top_k=3, min_count=2), categories_path=Path("/x/c.yaml"))
    inline = Path("/tmp/inline.yaml")  # what build_requested writes categories_yaml to
    assert BuildRequest().build_config(categories_path=inline).categories_path == inline


def test_the_cli_and_the_demo_default_to_the_same_request() -> None:
    from tagwatch.data.cli import build
    from tagwatch.demo.training import BUILD

    parameters = inspect.signature(build).parameters
    for name in ("name", "version", "shard_samples", "top_k", "min_count", "seed"):
        assert parameters[name].default == getattr(BuildRequest(), name) == getattr(BUILD, name), name
