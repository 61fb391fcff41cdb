# The one tagwatch image: every Kubeflow component, the TrainJob/PyTorchJob pods and the stream consumers run it.
# NOT BUILT OR TESTED HERE (no Docker engine on the development machine); kept deliberately simple.
# Its name and tag come from src/tagwatch/pipeline/image.py (components' base_image) and manifests' `images:`.
#   docker build -t ghcr.io/tagwatch/tagwatch:0.1.0 .
#   docker build --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 -t ghcr.io/tagwatch/tagwatch:0.1.0-cuda .
#     (the CUDA base needs python3.11 installed; the slim base has it)
ARG BASE=python:3.11-slim
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends libcairo2 wordnet-base openclipart-svg \
    tuxpaint-stamps-default \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/tagwatch
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install --no-cache-dir -c constraints.txt ".[all]"
# OpenMoji (CC BY-SA 4.0) is not a Debian package: the pinned, integrity-checked npm tarball, fetched at build time
# into a cache the read-only pods can read.
ENV XDG_CACHE_HOME=/opt/tagwatch/cache
RUN tagwatch data fetch openmoji && chmod -R a+rX /opt/tagwatch/cache
# Non-root, matching the manifests' runAsUser; the root filesystem is read-only in the pods and /tmp (an emptyDir)
# is the only writable path: HOME and tagwatch's state dir point there (tests/integration/test_pod_contracts.py
# runs every workload this way).
RUN useradd --uid 10001 --home-dir /tmp --no-create-home tagwatch
USER 10001
ENV PYTHONUNBUFFERED=1 TAGWATCH_PATHS__STATE_DIR=/tmp/tagwatch
# One entrypoint: Deployments give only `args` (e.g. ["moderate", ...]); TrainJob/PyTorchJob and KFP components
# set their own `command` (torchrun / the KFP executor), which Kubernetes runs instead of this.
ENTRYPOINT ["tagwatch"]
