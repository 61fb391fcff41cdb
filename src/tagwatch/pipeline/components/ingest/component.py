from kfp import dsl
from kfp.dsl import Dataset, Output

from tagwatch.pipeline.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(posts: Output[Dataset], source: str = "openclipart", limit: int = 0, seed: int = 0, workers: int = 0,
           source_root: str = ""):
    """Render a source's images and store them with their post records in the posts bucket (resumable).

    Args:
        posts: The ingest report (JSON); metadata: posts_uri, ingested, posts_total.
        source: "openclipart" (Debian openclipart-svg), "openmoji" (npm, CC BY-SA 4.0), "tuxpaint" (Debian
            tuxpaint-stamps-default), "synthetic" (procedural shapes, for quick runs), or several comma-separated.
        limit: Only the first N items of the source (0: all).
        seed: Seeds caption noise and synthetic images.
        workers: Render processes (0: CPU count).
        source_root: Read the source from this directory ("": the source's default root); with several sources, a
            directory with one folder per source. The demo's quick subset is such a directory: a copy of some items
            of each source at their original relative paths.
    """
    import json

    from tagwatch.pipeline import steps

    report = steps.ingest_posts(source=source, limit=limit, seed=seed, workers=workers, root=source_root)
    with open(posts.path, "w") as handle:
        json.dump(report, handle, indent=1)
    posts.metadata.update({k: report[k] for k in ("posts_uri", "ingested", "posts_total") if k in report})
