"""Kubeflow Pipelines components: one folder per step, ``component.py`` a thin wrapper over
``tagwatch.pipeline.steps`` (see STYLE.md). Their README.md files are generated from the docstrings by
``tagwatch pipeline compile --readmes`` (run it in a checkout)."""

COMPONENTS = ("ingest", "plan_dataset", "hash_posts", "reduce_dataset", "write_shards", "build_dataset", "pretrain", "transfer", "export_model", "evaluate", "register_model",
              "deploy_model")
