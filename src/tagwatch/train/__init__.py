"""Hashtag pretraining and transfer (Mahajan et al. 2018 recipe), single process or DDP under torchrun.

Library modules take explicit arguments; ``pretrain.run_pretrain(cfg)`` / ``transfer.run_transfer(cfg)`` are the
entries a library caller (the pipeline steps) uses, with a ``PretrainConfig`` / ``TransferConfig``
(``config.TrainConfig`` holds what they share); ``pretrain.main(argv)`` / ``transfer.main(argv)`` are the thin
adapters that torchrun, Kubeflow Trainer, the CLI (``tagwatch train ...``) and the tests call. Importing this
package has no side effects and does not import torch.
"""
