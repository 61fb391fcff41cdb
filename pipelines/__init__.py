"""tagwatch pipelines (wiring only): ``pretrain_and_deploy`` and ``transfer_only``; compiled IR in compiled/."""
