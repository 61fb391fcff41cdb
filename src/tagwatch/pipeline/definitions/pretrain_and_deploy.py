"""ingest -> build the dataset (map/reduce: plan -> hash ranges in parallel -> reduce -> write shards in parallel ->
seal) -> pretrain (TrainJob / torchrun) -> transfer -> export -> evaluate -> [gate] ->
register -> deploy. The gate (``tagwatch.pipeline.gate``): register and deploy only when, on the same holdout, the
candidate's review rate is within its policy's review budget and its recall at the budget is not worse than
production's beyond the CI (no production model: the budget alone)."""

from kfp import dsl

from tagwatch.pipeline.components.build_dataset.component import build_dataset
from tagwatch.pipeline.components.hash_posts.component import hash_posts
from tagwatch.pipeline.components.plan_dataset.component import plan_dataset
from tagwatch.pipeline.components.reduce_dataset.component import reduce_dataset
from tagwatch.pipeline.components.write_shards.component import write_shards
from tagwatch.pipeline.components.deploy_model.component import deploy_model
from tagwatch.pipeline.components.evaluate.component import evaluate
from tagwatch.pipeline.components.export_model.component import export_model
from tagwatch.pipeline.components.ingest.component import ingest
from tagwatch.pipeline.components.pretrain.component import pretrain
from tagwatch.pipeline.components.register_model.component import register_model
from tagwatch.pipeline.components.transfer.component import transfer
from tagwatch.pipeline.definitions._cluster import S3_SECRET, configure_task, with_author_key


def register_and_deploy(*, onnx_task, evaluate_task, mode, deploy_alias, namespace, service_name,
                        canary_traffic_percent, deploy_timeout_s, register_metrics_json=""):
    """The gated tail both pipelines share."""
    # One unnamed bool output: kfp.local resolves "<task>-Output" channels in conditions, not named ones.
    with dsl.If(evaluate_task.outputs["Output"] == True, name="beats-production"):  # noqa: E712 - a KFP expression
        register_task = configure_task(register_model(onnx_model=onnx_task.outputs["onnx_model"],
                                                      evaluation=evaluate_task.outputs["evaluation"],
                                                      extra_metrics_json=register_metrics_json))
        configure_task(deploy_model(version=register_task.outputs["version"], mode=mode, alias=deploy_alias,
                                    namespace=namespace, service_name=service_name,
                                    canary_traffic_percent=canary_traffic_percent, timeout_s=deploy_timeout_s))


def build_dataset_map_reduce(*, posts, map_tasks, **request):
    """The dataset build fanned out with ``dsl.ParallelFor`` (one pod per range of posts; kfp.local runs the same
    loop): plan -> hash each range -> reduce (collects every range) -> write each writer's shards -> seal (collects
    every writer). Returns the sealing task (its ``dataset`` output is what training reads)."""
    plan_task = configure_task(plan_dataset(posts=posts, map_tasks=map_tasks, **request), cpu="1", memory="4Gi")
    with dsl.ParallelFor(plan_task.output, name="hash-ranges") as item:
        hash_task = configure_task(hash_posts(item=item), cpu="2", memory="2Gi")
    reduce_task = configure_task(reduce_dataset(tasks=plan_task.output, hashed=dsl.Collected(hash_task.output)),
                                 cpu="1", memory="8Gi")
    with dsl.ParallelFor(plan_task.output, name="write-shard-sets") as item:
        write_task = configure_task(write_shards(item=item, reduced=reduce_task.output), cpu="2", memory="2Gi")
    return configure_task(build_dataset(tasks=plan_task.output, written=dsl.Collected(write_task.output)),
                          memory="2Gi")


@dsl.pipeline(name="tagwatch-pretrain-and-deploy", description=__doc__.splitlines()[0])
def pretrain_and_deploy(
    mode: str = "cluster", source: str = "openclipart", limit: int = 0, dataset_name: str = "hashtags",
    shard_samples: int = 500, top_k: int = 1000, min_count: int = 5, categories_yaml: str = "", seed: int = 0,
    pretrain_steps: int = 2000, arch: str = "resnet50", width: int = 16, image_size: int = 128,
    batch_size: int = 64, workers: int = 4, nproc: int = 1, job_kind: str = "TrainJob", namespace: str = "tagwatch",
    num_nodes: int = 1, gpus_per_node: int = 1, train_timeout_s: int = 21600, transfer_mode: str = "finetune",
    transfer_steps: int = 500, min_improvement: float = 0.0, deploy_alias: str = "production",
    service_name: str = "tagwatch-moderation", canary_traffic_percent: int = -1, deploy_timeout_s: int = 900,
    source_root: str = "", review_budget: float = 0.05, remove_precision: float = 0.95,
    min_calibration_positives: int = 10, register_metrics_json: str = "", pretrained: bool = False,
    pretrain_solver: str = "sgd", probe_solver: str = "sgd", review_labels: bool = False, map_tasks: int = 2,
):
    ingest_task = with_author_key(configure_task(ingest(source=source, limit=limit, seed=seed,
                                                        source_root=source_root), cpu="4", memory="8Gi"))
    build_task = build_dataset_map_reduce(posts=ingest_task.outputs["posts"], name=dataset_name,
                                          shard_samples=shard_samples, top_k=top_k, min_count=min_count, seed=seed,
                                          categories_yaml=categories_yaml, review_labels=review_labels,
                                          map_tasks=map_tasks)
    pretrain_task = configure_task(pretrain(
        dataset=build_task.outputs["dataset"], pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, mode=mode,
        steps=pretrain_steps, arch=arch, width=width, image_size=image_size, batch_size=batch_size, workers=workers,
        nproc=nproc, job_kind=job_kind, namespace=namespace, num_nodes=num_nodes, gpus_per_node=gpus_per_node,
        s3_secret=S3_SECRET, timeout_s=train_timeout_s, pretrained=pretrained, solver=pretrain_solver,
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]))
    pretrain_task.set_caching_options(False)  # it starts a cluster job; never reuse a cached "success"
    transfer_task = configure_task(transfer(
        dataset=build_task.outputs["dataset"], pretrained=pretrain_task.outputs["checkpoint"],
        pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, mode=transfer_mode, steps=transfer_steps,
        batch_size=batch_size, workers=workers, review_budget=review_budget, remove_precision=remove_precision,
        min_calibration_positives=min_calibration_positives, probe_solver=probe_solver), cpu="4", memory="16Gi",
        gpus=1)
    export_task = configure_task(export_model(model=transfer_task.outputs["model"],
                                              pipeline_job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                              pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), memory="4Gi")
    evaluate_task = configure_task(evaluate(dataset=build_task.outputs["dataset"],
                                            onnx_model=export_task.outputs["onnx_model"],
                                            min_improvement=min_improvement), cpu="2", memory="4Gi")
    register_and_deploy(onnx_task=export_task, evaluate_task=evaluate_task, mode=mode, deploy_alias=deploy_alias,
                        namespace=namespace, service_name=service_name,
                        canary_traffic_percent=canary_traffic_percent, deploy_timeout_s=deploy_timeout_s,
                        register_metrics_json=register_metrics_json)
