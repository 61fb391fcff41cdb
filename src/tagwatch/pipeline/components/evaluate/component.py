from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(dataset: Input[Dataset], onnx_model: Input[Model], metrics: Output[Metrics],
             classification: Output[ClassificationMetrics], report: Output[HTML], evaluation: Output[Artifact],
             min_improvement: float = 0.0) -> bool:
    """Score the exported model and production on the holdout (ONNX Runtime, the serving preset), each with its own
    policy; decide the gate (review budget, then recall at the budget not worse than production's beyond the CI).

    Args:
        dataset: The build step's dataset (its holdout split is the test set).
        onnx_model: The export step's directory.
        metrics: Candidate figures on the holdout (natural traffic): review_rate, remove_rate, recall (at the
            budget) with _low/_high CI bounds, moderation_map, per category <name>_ap, _precision, _recall (+CI),
            _review_rate, _chance, _mode (2 act, 1 monitor, 0 off); production_recall, recall_difference (+CI).
        classification: "In any acted-on or monitored moderation category?" (never `other`) as a binary task:
            confusion matrix at the policy (predicted = review or remove), ROC curve of the highest category score.
        report: HTML report: the gate's reasoning, per-category table with CIs, PR curves and confusion plots.
        evaluation: metrics.json, evaluation.json, pr_curves.png, confusion.png.
        min_improvement: 0 (default): the moderation mAP is information only; > 0: the candidate's moderation mAP
            must also beat production's by more than this.

    Returns:
        True when the gate promotes (why: the evaluation artifact's metadata "gate").
    """
    import os
    import shutil
    from pathlib import Path

    from tagwatch.pipeline import steps as tw

    os.makedirs(evaluation.path, exist_ok=True)
    result = tw.evaluate(export_dir=Path(onnx_model.path), dataset=dataset.metadata["dataset"],
                         out_dir=Path(evaluation.path), min_improvement=min_improvement)
    shutil.copyfile(result["files"]["report"], report.path)
    for key, value in result["kfp_metrics"].items():
        metrics.log_metric(key, value)
    gate, flag = result["gate"], result["flag"]
    classification.log_confusion_matrix(flag["labels"], flag["confusion_matrix"])
    classification.log_roc_curve(flag["fpr"], flag["tpr"], flag["thresholds"])
    evaluation.metadata.update({"gate": gate, "production_version": gate["production_version"]})
    return bool(gate["promote"])
