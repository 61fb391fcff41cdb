"""tagwatch pipelines (wiring only): ``pretrain_and_deploy`` and ``transfer_only``, built from the components in
``tagwatch.pipeline.components``. ``tagwatch pipeline compile`` writes their IR YAML (committed in the repository at
``pipelines/compiled/``)."""

PIPELINES = ("pretrain_and_deploy", "transfer_only")
