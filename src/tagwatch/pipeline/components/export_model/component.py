from kfp import dsl
from kfp.dsl import Input, Model, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_model(model: Input[Model], onnx_model: Output[Model], pipeline_job_name: str = "",
                 pipeline_job_id: str = "", max_batch_size: int = 64):
    """Export the transfer checkpoint to ONNX, check parity with torch (max abs diff <= 1e-4), write the Triton layout.

    Args:
        model: The transfer step's model (metadata "uri" = checkpoint; policy.json inside).
        onnx_model: The export directory (export.json, repository/, policy.json); metadata: onnx_bytes, parity.
        pipeline_job_name: The Kubeflow run's name, recorded in the lineage (the pipeline passes its placeholder).
        pipeline_job_id: The Kubeflow run's id, recorded in the lineage.
        max_batch_size: Triton max_batch_size.
    """
    import json
    import os
    from pathlib import Path

    from tagwatch.pipeline import steps as tw

    policy_path = os.path.join(model.path, "policy.json")
    policy = json.load(open(policy_path)) if os.path.exists(policy_path) else None
    lineage = {"pipeline_job_name": pipeline_job_name, "pipeline_run_id": pipeline_job_id}
    info = tw.export_model(checkpoint=model.metadata["uri"], out_dir=Path(onnx_model.path), policy=policy,
                           pipeline_lineage=lineage, max_batch_size=max_batch_size)
    onnx_model.metadata.update({"onnx_bytes": info["onnx_bytes"], "parity_max_abs_diff": info["parity_max_abs_diff"],
                                "checkpoint": model.metadata["uri"], **lineage})
