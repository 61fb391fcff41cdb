"""Kubeflow Pipelines components: one folder per step, ``component.py`` a thin wrapper over
``tagwatch.pipeline.steps`` (see STYLE.md). Their README.md files are generated from the docstrings by
``python -m tagwatch.pipeline.readmes``."""
