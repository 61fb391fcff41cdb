from kfp import dsl
from kfp.dsl import Markdown, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy_model(version: int, deployment: Output[Markdown], mode: str = "cluster", alias: str = "production",
                 namespace: str = "tagwatch", service_name: str = "tagwatch-moderation",
                 runtime: str = "tagwatch-triton", canary_traffic_percent: int = -1, gpus: int = 0,
                 timeout_s: int = 900):
    """Serve a registry version: a KServe InferenceService on Triton (cluster) or the local Triton (local).

    Args:
        version: Registry version to serve.
        deployment: What was done, as Markdown.
        mode: "cluster" (create/patch the InferenceService, wait for Ready) or "local" (move the alias, (re)start
            the embedded stack's Triton, wait until it serves the version).
        alias: Registry alias to move to the version (both modes; the local Triton serves "production").
        namespace: InferenceService namespace.
        service_name: InferenceService name.
        runtime: ServingRuntime name (Triton).
        canary_traffic_percent: Percent of traffic for the new revision (-1: all of it).
        gpus: nvidia.com/gpu per predictor replica.
        timeout_s: Fail when not Ready after this long.
    """
    import json

    from tagwatch.pipeline import steps as tw

    result = tw.deploy(mode=mode, version=version, alias=alias, namespace=namespace, service_name=service_name,
                       runtime=runtime, gpus=gpus, timeout_s=timeout_s,
                       canary_traffic_percent=None if canary_traffic_percent < 0 else canary_traffic_percent)
    with open(deployment.path, "w") as handle:
        text = json.dumps(result, indent=1, default=str)
        handle.write(f"# deployed version {version} ({mode})\n\n```json\n{text}\n```\n")
    deployment.metadata.update({"version": version, "mode": mode})
