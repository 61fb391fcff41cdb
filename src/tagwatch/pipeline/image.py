"""The one container image every tagwatch component, TrainJob and PyTorchJob runs (built from ./Dockerfile).

Change the tag here only: components take their ``base_image`` from ``IMAGE`` and the cluster objects default to
it, so the compiled pipelines and the jobs they create always agree.
"""

from tagwatch import __version__

IMAGE_REPOSITORY = "ghcr.io/tagwatch/tagwatch"
IMAGE_TAG = __version__
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
# The CUDA build (same Dockerfile, BASE=nvidia/cuda...); GPU pods of the TrainJob use it.
GPU_IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}-cuda"
