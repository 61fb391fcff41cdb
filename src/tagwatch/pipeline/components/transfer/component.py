from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def transfer(dataset: Input[Dataset], pretrained: Input[Model], model: Output[Model], metrics: Output[Metrics],
             pipeline_job_id: str, mode: str = "finetune", steps: int = 200, batch_size: int = 32, workers: int = 2,
             review_budget: float = 0.05, remove_precision: float = 0.95, min_calibration_positives: int = 10,
             probe_solver: str = "sgd"):
    """Transfer to the moderation categories (linear probe or fine-tune), calibrate the policy, report on the holdout.

    Args:
        dataset: The build step's dataset.
        pretrained: The pretrain step's checkpoint (metadata "uri"); an empty uri trains from scratch.
        model: policy.json, holdout/metrics.json and plots; metadata: uri (the checkpoint), run_id, policy_version.
        metrics: Holdout figures of the policy (natural traffic): review_rate, remove_rate, recall (at the budget)
            with _low/_high CI bounds, moderation_map, per category <name>_ap, _precision, _recall (+CI), _mode.
        pipeline_job_id: The run's id; the checkpoint prefix is "transfer-<id>".
        mode: "probe" (frozen backbone) or "finetune".
        steps: Optimiser steps.
        batch_size: Batch size.
        workers: Data-loader workers.
        review_budget: Largest share of all posts the policy may send to review, shared by all categories.
        remove_precision: Auto-remove only where the 95 % CI lower bound of precision reaches this.
        min_calibration_positives: Fewer calibration positives: the category is monitored, never actioned.
        probe_solver: Probe only: "sgd" or "lbfgs" (features once per image, the heads fitted to convergence).
    """
    import json
    import os

    from tagwatch.pipeline import steps as tw
    from tagwatch.pipeline.comparison import kfp_metrics

    os.makedirs(model.path, exist_ok=True)
    result = tw.transfer(dataset=dataset.metadata["dataset"], init=pretrained.metadata.get("uri") or "none",
                         run_id=tw.run_id_for("transfer", pipeline_job_id), mode=mode, steps=steps,
                         batch_size=batch_size, workers=workers,
                         review_budget=review_budget, remove_precision=remove_precision,
                         min_calibration_positives=min_calibration_positives, probe_solver=probe_solver,
                         output_dir=model.path)
    with open(os.path.join(model.path, "pipeline-summary.json"), "w") as handle:
        json.dump({k: v for k, v in result.items() if k != "policy"}, handle, indent=1, default=str)
    model.metadata.update({"uri": result["checkpoint"], "run_id": result["run_id"],
                           "policy_version": result["policy"]["version"]})
    holdout = result["holdout"]
    for key, value in kfp_metrics(holdout["figures"]).items():
        metrics.log_metric(f"holdout_{key}", value)
    if holdout.get("hashtag_map") is not None:
        metrics.log_metric("holdout_hashtag_map", float(holdout["hashtag_map"]))
