"""transfer (from an existing pretrained checkpoint, on an existing dataset) -> export -> evaluate -> [gate] ->
register -> deploy: the cheap retrain when categories or thresholds change but the backbone does not."""

from kfp import dsl
from kfp.dsl import Dataset, Model

from tagwatch.pipeline.components.evaluate.component import evaluate
from tagwatch.pipeline.components.export_model.component import export_model
from tagwatch.pipeline.components.transfer.component import transfer
from tagwatch.pipeline.definitions._cluster import configure_task
from tagwatch.pipeline.definitions.pretrain_and_deploy import register_and_deploy


@dsl.pipeline(name="tagwatch-transfer-only", description=__doc__.splitlines()[0])
def transfer_only(
    dataset: str, pretrained_checkpoint: str, mode: str = "cluster", transfer_mode: str = "finetune",
    transfer_steps: int = 500, batch_size: int = 64, workers: int = 4, min_improvement: float = 0.0,
    deploy_alias: str = "production", namespace: str = "tagwatch", service_name: str = "tagwatch-moderation",
    canary_traffic_percent: int = -1, deploy_timeout_s: int = 900, review_budget: float = 0.05,
    remove_precision: float = 0.95, min_calibration_positives: int = 10,
):
    dataset_artifact = dsl.importer(artifact_uri=pretrained_checkpoint, artifact_class=Dataset, reimport=False,
                                    metadata={"dataset": dataset})
    dataset_artifact.set_display_name("dataset")
    pretrained = dsl.importer(artifact_uri=pretrained_checkpoint, artifact_class=Model, reimport=False,
                              metadata={"uri": pretrained_checkpoint})
    pretrained.set_display_name("pretrained-checkpoint")
    transfer_task = configure_task(transfer(
        dataset=dataset_artifact.output, pretrained=pretrained.output, pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        mode=transfer_mode, steps=transfer_steps, batch_size=batch_size, workers=workers, review_budget=review_budget,
        remove_precision=remove_precision, min_calibration_positives=min_calibration_positives), cpu="4",
        memory="16Gi", gpus=1)
    export_task = configure_task(export_model(model=transfer_task.outputs["model"],
                                              pipeline_job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                              pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), memory="4Gi")
    evaluate_task = configure_task(evaluate(dataset=dataset_artifact.output,
                                            onnx_model=export_task.outputs["onnx_model"],
                                            min_improvement=min_improvement), cpu="2", memory="4Gi")
    register_and_deploy(onnx_task=export_task, evaluate_task=evaluate_task, mode=mode, deploy_alias=deploy_alias,
                        namespace=namespace, service_name=service_name,
                        canary_traffic_percent=canary_traffic_percent, deploy_timeout_s=deploy_timeout_s)
