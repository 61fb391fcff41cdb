"""Hashtag pretraining and transfer (Mahajan et al. 2018 recipe), single process or DDP under torchrun.

Library modules take explicit arguments; ``pretrain.main(argv)`` / ``transfer.main(argv)`` are the thin adapters
that torchrun, Kubeflow Trainer, the CLI (``tagwatch train ...``) and the tests call. Importing this package has
no side effects and does not import torch.
"""
