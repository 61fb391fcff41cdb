"""Training data and checkpoints on the real embedded S3 (SeaweedFS): manifest verification, shard streaming
split by rank and worker, and 2-rank DDP (torchrun, gloo) that resumes after SIGKILL to bit-identical weights."""

from __future__ import annotations

import json
import random
import secrets
import signal
import time
from pathlib import Path

import pytest
import torch

from tagwatch.clients import s3_client
from tagwatch.errors import ManifestError
from tagwatch.preprocess import DEFAULT_PRESET
from tagwatch.train.checkpoint import CheckpointStore
from tagwatch.train.data import S3ShardReader, ShardStream, StreamConfig, load_manifest
from tagwatch.train.synthetic import build_synthetic_dataset, write_dataset_to_s3
from tests.conftest import stack_env
from tests.support.torchrun import kill_tree, start_torchrun


@pytest.fixture(scope="module")
def s3_dataset(stack_settings):
    name = f"synth-{secrets.token_hex(3)}"
    dataset = build_synthetic_dataset(num_samples=160, num_labels=12, image_size=56, samples_per_shard=16, name=name)
    write_dataset_to_s3(dataset, client=s3_client(stack_settings.s3), bucket=stack_settings.s3.buckets.datasets)
    return dataset


def test_manifest_is_verified_and_tampering_is_refused(stack_settings, s3_dataset) -> None:
    s3 = stack_settings.s3
    manifest, vocabulary = load_manifest(s3=s3, bucket=s3.buckets.datasets, name=s3_dataset.manifest.name, version="v1")
    assert manifest.content_hash == s3_dataset.manifest.content_hash and len(vocabulary.labels) == 12
    client = s3_client(s3)
    tampered = json.loads(s3_dataset.manifest.model_dump_json())
    tampered["num_labels"] = 13
    client.put_object(Bucket=s3.buckets.datasets, Key="tampered/v1/manifest.json", Body=json.dumps(tampered).encode())
    with pytest.raises(ManifestError, match="content hash"):
        load_manifest(s3=s3, bucket=s3.buckets.datasets, name="tampered", version="v1")


def test_s3_shards_split_by_rank_and_worker_cover_the_split_once(stack_settings, s3_dataset) -> None:
    s3 = stack_settings.s3
    manifest = s3_dataset.manifest
    expected = {s.path: s.sha256 for s in manifest.splits["train"].shards}
    reader = S3ShardReader(s3=s3, bucket=s3.buckets.datasets, prefix=f"{manifest.name}/v1", expected_sha256=expected)
    seen: list[str] = []
    for rank in range(2):
        stream = ShardStream(reader=reader, shards=list(expected), num_labels=12, category_names=manifest.category_names,
                             preset=DEFAULT_PRESET, config=StreamConfig(batch_size=7, rank=rank, world_size=2, train=False))
        for batch in torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2):
            assert batch["images"].shape[1:] == (3, 128, 128)
            seen.extend(batch["keys"])
    assert len(seen) == manifest.splits["train"].samples == len(set(seen))
    broken = S3ShardReader(s3=s3, bucket=s3.buckets.datasets, prefix=f"{manifest.name}/v1",
                           expected_sha256={p: "0" * 64 for p in expected})
    with pytest.raises(ManifestError, match="sha256"):
        list(broken.read(next(iter(expected))))


def test_ddp_two_ranks_resume_after_sigkill_is_bit_identical(stack_settings, s3_dataset, tmp_path: Path) -> None:
    env = stack_env(stack_settings)
    steps = 120
    common = ["--dataset", f"{s3_dataset.manifest.name}/v1", "--image-size", "48", "--width", "8", "--batch-size", "8",
              "--steps", str(steps), "--workers", "1", "--threads", "1", "--checkpoint-every", "5", "--lr", "0.05",
              "--warmup-steps", "4", "--calibrate-steps", "0", "--no-evaluate", "--no-progress", "--log-every", "5"]
    tag = secrets.token_hex(3)
    full = start_torchrun("pretrain", [*common, "--run-id", f"full-{tag}", "--output-dir", str(tmp_path / "full")], env)
    out, _ = full.communicate(timeout=240)
    assert full.returncode == 0, out[-3000:]

    store = CheckpointStore(f"s3://{stack_settings.s3.buckets.checkpoints}/killed-{tag}", s3=stack_settings.s3)
    kill_after = random.Random().randint(5, 40)
    killed = start_torchrun("pretrain", [*common, "--run-id", f"killed-{tag}", "--output-dir",
                                         str(tmp_path / "killed")], env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and killed.poll() is None:
        pointer = store.latest()
        if pointer and pointer["step"] >= kill_after:
            kill_tree(killed.pid)  # torchrun, both ranks and their data workers, at a random step
            break
        time.sleep(0.05)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted_at = store.latest()["step"]
    assert kill_after <= interrupted_at < steps

    resumed = start_torchrun("pretrain", [*common, "--run-id", f"killed-{tag}", "--output-dir",
                                          str(tmp_path / "resumed"), "--resume", "latest"], env)
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-3000:]
    metrics = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert metrics["start_step"] == interrupted_at and metrics["world_size"] == 2

    reference = CheckpointStore(f"s3://{stack_settings.s3.buckets.checkpoints}/full-{tag}", s3=stack_settings.s3).load()
    final = store.load()
    assert reference["step"] == final["step"] == steps
    differing = [k for k in reference["model"] if not torch.equal(reference["model"][k], final["model"][k])]
    assert differing == [], f"killed at step {interrupted_at}, resumed; tensors differ: {differing[:5]}"
    for a, b in zip(reference["optimizer"]["state"].values(), final["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])


def test_sigterm_checkpoints_at_the_current_step_then_resume_finishes(stack_settings, s3_dataset, tmp_path: Path) -> None:
    env = stack_env(stack_settings)
    run_id = f"term-{secrets.token_hex(3)}"
    common = ["--dataset", f"{s3_dataset.manifest.name}/v1", "--image-size", "48", "--width", "8", "--batch-size", "8",
              "--steps", "80", "--workers", "1", "--threads", "1", "--checkpoint-every", "1000", "--lr", "0.05",
              "--calibrate-steps", "0", "--no-evaluate", "--no-progress", "--log-every", "1", "--run-id", run_id]
    run = start_torchrun("pretrain", [*common, "--output-dir", str(tmp_path / "a")], env)
    metrics = tmp_path / "a" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 10:
            run.send_signal(signal.SIGTERM)  # what the kubelet / torchrun's own shutdown sends
            break
        time.sleep(0.05)
    out, _ = run.communicate(timeout=120)
    store = CheckpointStore(f"s3://{stack_settings.s3.buckets.checkpoints}/{run_id}", s3=stack_settings.s3)
    pointer = store.latest()
    assert pointer is not None, out[-3000:]
    assert 10 <= pointer["step"] < 80  # only SIGTERM can have written it (checkpoint-every is 1000)
    resumed = start_torchrun("pretrain", [*common, "--output-dir", str(tmp_path / "b"), "--resume", "latest"], env)
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out[-3000:]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["start_step"] == pointer["step"]
