from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(dataset: Input[Dataset], onnx_model: Input[Model], metrics: Output[Metrics],
             classification: Output[ClassificationMetrics], report: Output[HTML], evaluation: Output[Artifact],
             min_improvement: float = 0.0) -> bool:
    """Score the exported model and production on the holdout (ONNX Runtime, the serving preset); decide the gate.

    Args:
        dataset: The build step's dataset (its holdout split is the test set).
        onnx_model: The export step's directory.
        metrics: Holdout category mAP of candidate and production, per-category AP, flag precision/recall.
        classification: "Any moderation category?" as a binary task: confusion matrix at the policy, ROC curve.
        report: HTML report with the PR curves and confusion plots inlined.
        evaluation: metrics.json, evaluation.json, pr_curves.png, confusion.png.
        min_improvement: The candidate must beat production's mAP by more than this to be promoted.

    Returns:
        True when there is no production model or the candidate beats it (why: the evaluation artifact's
        metadata "gate").
    """
    import os
    import shutil
    from pathlib import Path

    from tagwatch.pipeline import steps as tw

    os.makedirs(evaluation.path, exist_ok=True)
    result = tw.evaluate(export_dir=Path(onnx_model.path), dataset=dataset.metadata["dataset"],
                         out_dir=Path(evaluation.path), min_improvement=min_improvement)
    shutil.copyfile(result["files"]["report"], report.path)
    held, gate, flag = result["metrics"], result["gate"], result["flag"]
    for key, value in (("candidate_category_map", held.get("category_map")),
                       ("production_category_map", (result["production"] or {}).get("category_map")),
                       ("chance_category_map", held.get("chance_category_map")),
                       ("holdout_images", held.get("images"))):
        if value is not None:
            metrics.log_metric(key, float(value))
    for name, figures in held["per_category"].items():
        for key in ("ap", "review_or_remove_precision", "review_or_remove_recall"):
            if figures.get(key) is not None:
                metrics.log_metric(f"{name}_{key}", float(figures[key]))
    classification.log_confusion_matrix(flag["labels"], flag["confusion_matrix"])
    classification.log_roc_curve(flag["fpr"], flag["tpr"], flag["thresholds"])
    evaluation.metadata.update({"gate": gate, "production_version": gate["production_version"]})
    return bool(gate["promote"])
