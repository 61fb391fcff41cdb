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

