from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transfer(dataset: Input[Dataset], pretrained: Input[Model], model: Output[Model], metrics: Output[Metrics],
             pipeline_job_id: str, mode: str = "finetune", steps: int = 200, batch_size: int = 32, workers: int = 2,
             target_precision: float = 0.95, target_recall: float = 0.9, probe_solver: str = "sgd"):
    """Transfer to the moderation categories (linear probe or fine-tune), calibrate the policy, report on the holdout.

    Args:
        dataset: The build step's dataset.
        pretrained: The pretrain step's checkpoint (metadata "uri"); an empty uri trains from scratch.
        model: policy.json, holdout/metrics.json and plots; metadata: uri (the checkpoint), run_id, policy_version.
        metrics: Holdout category mAP, its chance level, per-category AP.
        pipeline_job_id: The run's id; the checkpoint prefix is "transfer-<id>".
        mode: "probe" (frozen backbone) or "finetune".
        steps: Optimiser steps.
        batch_size: Batch size.
        workers: Data-loader workers.
        target_precision: Remove threshold: val precision at least this.
        target_recall: Review threshold: val recall at least this.
        probe_solver: Probe only: "sgd" or "lbfgs" (features once per image, the heads fitted to convergence).
    """
    import json
    import os

    from tagwatch.pipeline import steps as tw

    os.makedirs(model.path, exist_ok=True)
    result = tw.transfer(dataset=dataset.metadata["dataset"], init=pretrained.metadata.get("uri") or "none",
                         run_id=tw.run_id_for("transfer", pipeline_job_id), mode=mode, steps=steps,
                         batch_size=batch_size, workers=workers,
                         target_precision=target_precision, target_recall=target_recall, output_dir=model.path,
                         extra_args=[f"--probe-solver={probe_solver}"] if mode == "probe" else [])
    with open(os.path.join(model.path, "pipeline-summary.json"), "w") as handle:
        json.dump({k: v for k, v in result.items() if k != "policy"}, handle, indent=1, default=str)
    model.metadata.update({"uri": result["checkpoint"], "run_id": result["run_id"],
                           "policy_version": result["policy"]["version"]})
    holdout = result["holdout"]
    for key in ("category_map", "chance_category_map", "hashtag_map"):
        if holdout.get(key) is not None:
            metrics.log_metric(f"holdout_{key}", float(holdout[key]))
    for name, figures in holdout["per_category"].items():
        if figures.get("ap") is not None:
            metrics.log_metric(f"holdout_ap_{name}", float(figures["ap"]))
