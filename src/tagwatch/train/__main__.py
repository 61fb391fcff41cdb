"""``python -m tagwatch.train pretrain|transfer [flags]`` (what torchrun and Kubeflow Trainer launch)."""

import sys

from tagwatch.train.cli import run_entry

if __name__ == "__main__":
    sys.exit(run_entry(sys.argv[1:]))
