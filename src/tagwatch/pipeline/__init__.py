"""Kubeflow Pipelines support: the logic behind the components in ``components/`` (cluster objects, waiting,
the promotion gate, evaluation against production, the HTML report) and the local kfp.local runner.

Components only translate KFP inputs/outputs and call the ``steps`` module; everything here is importable
without kfp except ``local`` and ``cli``.
"""
