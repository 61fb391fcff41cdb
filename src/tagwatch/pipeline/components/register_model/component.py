from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register_model(onnx_model: Input[Model], evaluation: Input[Artifact], registered: Output[Model],
                   alias: str = "candidate", extra_metrics_json: str = "") -> NamedTuple("Registered", version=int, storage_uri=str):
    """Upload the export as the next immutable registry version, with the holdout metrics and the gate's reason.

    Args:
        onnx_model: The export step's directory (its lineage names the pipeline run).
        evaluation: The evaluate step's files (evaluation.json: metrics, production figures, gate).
        registered: The version's metadata; metadata: model_name, version, storage_uri (what KServe loads).
        alias: Registry alias to point at the new version ("" for none).
        extra_metrics_json: A JSON object merged into the version's recorded metrics ("" for none); the demo records
            its config hash here ({"demo": {"config_hash": ...}}) and finds the version by it on a rerun.

    Returns:
        version: The registry version number.
        storage_uri: s3://<models>/registry/<model>/versions/<N>/repository.
    """
    import json
    import os
    from collections import namedtuple
    from pathlib import Path

    from tagwatch.pipeline import steps as tw

    with open(os.path.join(evaluation.path, "evaluation.json")) as handle:
        evaluated = json.load(handle)
    metrics = {"holdout": evaluated["metrics"], "production": evaluated["production"], "gate": evaluated["gate"]}
    result = tw.register(export_dir=Path(onnx_model.path), metrics=metrics, alias=alias,
                         extra_metrics_json=extra_metrics_json)
    with open(registered.path, "w") as handle:
        json.dump(result, handle, indent=1, default=str)
    registered.metadata.update({k: result[k] for k in ("model_name", "version", "storage_uri")})
    return namedtuple("Registered", ["version", "storage_uri"])(int(result["version"]), str(result["storage_uri"]))
