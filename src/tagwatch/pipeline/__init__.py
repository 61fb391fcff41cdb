"""Kubeflow Pipelines support: the components (``components/<step>/component.py``), the pipelines wiring them
(``definitions/``), the logic behind them (cluster objects, waiting, the promotion gate, evaluation against
production, the HTML report) and the local kfp.local runner.

Components only translate KFP inputs/outputs and call the ``steps`` module; everything here is importable
without kfp except ``components``, ``definitions``, ``local``, ``compile`` and ``cli``.
"""
