"""`tagwatch posts publish --ids-out`: the file lists exactly the posts the broker acknowledged, each at the
partition and offset where a reader finds it (--synthetic, --from-dir here; --holdout in test_data_build.py)."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.support import colour_model as cm
from tests.support.published import read_back
from tests.support.stream import private_stream, stream_env


def _rows(path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(row) == {"post_id", "partition", "offset"} for row in rows), rows
    return rows


def test_synthetic_and_from_dir_write_the_acknowledged_ids(stack_settings, tmp_path):
    settings = private_stream(stack_settings, partitions=2)
    env = stream_env(settings)

    ids = tmp_path / "out" / "synthetic.jsonl"
    result = run_cli("posts", "publish", "--synthetic", "--n", "5", "--ids-out", str(ids), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    synthetic = _rows(ids)
    assert len(synthetic) == 5 and len({r["post_id"] for r in synthetic}) == 5
    assert len({(r["partition"], r["offset"]) for r in synthetic}) == 5
    assert set(read_back(settings, synthetic)) == {r["post_id"] for r in synthetic}

    images = tmp_path / "images"
    images.mkdir()
    for n, colour in enumerate((cm.RED, cm.BLUE)):
        (images / f"{n}.jpg").write_bytes(cm.jpeg(colour, seed=n))
    ids = tmp_path / "from-dir.jsonl"
    result = run_cli("posts", "publish", "--from-dir", str(images), "--n", "3", "--ids-out", str(ids), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    from_dir = _rows(ids)
    assert len(from_dir) == 3
    posts = read_back(settings, from_dir)
    assert len({p.sha256 for p in posts.values()}) == 2  # cycled through the folder's two images
    assert not {r["post_id"] for r in from_dir} & {r["post_id"] for r in synthetic}



def test_an_uploaded_photo_is_stored_without_its_gps_exif(stack_settings, tmp_path):
    """The publisher's path (`posts publish --from-dir`): the object in S3 has no EXIF/GPS, the same pixels, and
    the sha256 the event carries is the stored bytes'."""
    import hashlib
    import io

    import numpy as np
    from PIL import Image

    from tagwatch.clients import s3_client

    settings = private_stream(stack_settings, partitions=1)
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 12.5), 3: "E", 4: (4.0, 53.0, 2.0)})
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "gps.jpg").write_bytes(buffer.getvalue())
    assert Image.open(tmp_path / "images" / "gps.jpg").getexif().get_ifd(0x8825)  # the input has a GPS block

    ids = tmp_path / "ids.jsonl"
    result = run_cli("posts", "publish", "--from-dir", str(tmp_path / "images"), "--n", "1", "--ids-out", str(ids),
                     env=stream_env(settings))
    assert result.returncode == 0, result.stdout + result.stderr
    (post,) = read_back(settings, _rows(ids)).values()
    bucket, key = post.image_uri.removeprefix("s3://").split("/", 1)
    stored = s3_client(settings.s3).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == post.sha256
    image = Image.open(io.BytesIO(stored))
    assert not image.getexif().get_ifd(0x8825) and not image.getexif() and b"Exif" not in stored
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(buffer.getvalue()))))
