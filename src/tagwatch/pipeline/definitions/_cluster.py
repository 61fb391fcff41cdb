"""Cluster settings of the pipeline's tasks, through kfp-kubernetes (compiled into the IR's platform spec;
kfp.local ignores them): S3 credentials from the Secret, shared values from the tagwatch-params ConfigMap
(manifests/base/params.env), non-root pods (the image's uid), GPU requests, tolerations and node selectors.
The run's service account (``tagwatch-pipeline``, manifests/base/rbac.yaml: TrainJobs, PyTorchJobs,
InferenceServices) is chosen when the run is created; kfp-kubernetes has no per-task setting for it."""

from kfp import kubernetes

S3_SECRET = "tagwatch-s3"
PRIVACY_SECRET = "tagwatch-privacy"  # AUTHOR_KEY: the HMAC key of author pseudonyms (settings.privacy.author_key)
PARAMS_CONFIGMAP = "tagwatch-params"
SHARED_ENV = ("TAGWATCH_S3__ENDPOINT_URL", "TAGWATCH_S3__REGION", "TAGWATCH_S3__BUCKETS__POSTS",
              "TAGWATCH_S3__BUCKETS__DATASETS", "TAGWATCH_S3__BUCKETS__MODELS", "TAGWATCH_S3__BUCKETS__CHECKPOINTS",
              "TAGWATCH_TRITON__MODEL_NAME")
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")


def configure_task(task, *, cpu: str = "1", memory: str = "2Gi", gpus: int = 0):
    """Every tagwatch task: S3 secret as env (never a literal), shared params, resources; GPU tasks also get the
    GPU request, the nvidia.com/gpu toleration and the GPU node selector."""
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env={
        "AWS_ACCESS_KEY_ID": "TAGWATCH_S3__ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "TAGWATCH_S3__SECRET_ACCESS_KEY"})
    kubernetes.use_config_map_as_env(task, config_map_name=PARAMS_CONFIGMAP,
                                     config_map_key_to_env={name: name for name in SHARED_ENV})
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    kubernetes.set_security_context(task, run_as_user=10001, run_as_group=10001, run_as_non_root=True)
    kubernetes.add_pod_label(task, label_key="app.kubernetes.io/part-of", label_value="tagwatch")
    if gpus:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
        kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1])
    return task


def with_author_key(task):
    """Tasks that write post records (ingest) pseudonymise authors with the key from the privacy Secret."""
    kubernetes.use_secret_as_env(task, secret_name=PRIVACY_SECRET,
                                 secret_key_to_env={"AUTHOR_KEY": "TAGWATCH_PRIVACY__AUTHOR_KEY"})
    return task
