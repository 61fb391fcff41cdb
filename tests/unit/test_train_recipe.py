"""The recipe's pieces: losses, LR schedule, deterministic stream splitting and square-root resampling."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import torch

from tagwatch.errors import ConfigError
from tagwatch.train.losses import multi_hot, sigmoid_binary_cross_entropy, softmax_cross_entropy
from tagwatch.train.models import build_serving_model, create_model, model_config
from tagwatch.train.optim import create_optimizer, create_scheduler, lr_factor, scaled_lr
from tagwatch.train.sampling import Resampler, batches_seen_by_worker, plan_slot, shuffle_buffer


def test_softmax_loss_uses_one_over_k_targets() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    targets = multi_hot([[0, 3], [1]], 4)
    log_p = torch.log_softmax(logits, dim=1)
    expected = (-(0.5 * log_p[0, 0] + 0.5 * log_p[0, 3]) - log_p[1, 1]) / 2
    assert softmax_cross_entropy(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)


def test_sigmoid_loss_sums_classes_and_averages_samples() -> None:
    logits = torch.tensor([[0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0]])
    assert sigmoid_binary_cross_entropy(logits, targets).item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_linear_scaling_warmup_and_decays() -> None:
    assert scaled_lr(base_lr=0.1, global_batch=512) == pytest.approx(0.2)
    assert lr_factor(0, total_steps=100, warmup_steps=10, schedule="cosine") == pytest.approx(0.1)
    assert lr_factor(9, total_steps=100, warmup_steps=10, schedule="cosine") == pytest.approx(1.0)
    assert lr_factor(10, total_steps=100, warmup_steps=10, schedule="cosine") == pytest.approx(1.0)
    assert lr_factor(99, total_steps=100, warmup_steps=10, schedule="cosine") < 0.01
    assert lr_factor(50, total_steps=100, warmup_steps=0, schedule="step") == pytest.approx(0.1)
    with pytest.raises(ConfigError):
        lr_factor(5, total_steps=10, warmup_steps=0, schedule="linear-ish")


def test_sgd_is_nesterov_without_decay_on_norms_and_biases() -> None:
    model = create_model("tiny_cnn", 5, num_categories=2, width=4)
    optimizer = create_optimizer(model, lr=0.1, weight_decay=1e-4)
    assert all(group["nesterov"] and group["momentum"] == 0.9 for group in optimizer.param_groups)
    decayed, plain = optimizer.param_groups
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert plain["weight_decay"] == 0.0
    scheduler = create_scheduler(optimizer, total_steps=10, warmup_steps=2, schedule="cosine")
    assert scheduler.get_last_lr()[0] == pytest.approx(0.05)


def test_serving_model_signature() -> None:
    net = create_model("tiny_cnn", 7, num_categories=3, width=4)
    checkpoint = {"model": net.state_dict(),
                  "model_config": model_config(arch="tiny_cnn", num_labels=7, num_categories=3, preset={}, width=4)}
    serving = build_serving_model(checkpoint)
    with torch.no_grad():
        hashtag_logits, category_scores = serving(torch.randn(2, 3, 32, 32))
    assert hashtag_logits.shape == (2, 7) and category_scores.shape == (2, 3)
    assert float(category_scores.min()) >= 0.0 and float(category_scores.max()) <= 1.0
    with pytest.raises(ConfigError):
        create_model("vgg-from-outer-space", 3)


@pytest.mark.parametrize("num_shards", [8, 3])
def test_slots_partition_the_data_exactly_once(num_shards: int) -> None:
    shards = [f"shards/train-{i:06d}.tar" for i in range(num_shards)]
    samples_per_shard = 5
    seen = Counter()
    for rank in range(2):
        for worker in range(2):
            plan = plan_slot(shards, epoch=3, seed=7, rank=rank, world_size=2, worker=worker, num_workers=2)
            index = 0
            for shard in plan.shards:
                for sample in range(samples_per_shard):
                    if index % plan.modulo == plan.offset:
                        seen[(shard, sample)] += 1
                    index += 1
    assert len(seen) == num_shards * samples_per_shard and set(seen.values()) == {1}


def test_round_robin_batch_accounting() -> None:
    # the DataLoader takes batch i from worker i % W
    for total in range(0, 11):
        counts = Counter(i % 3 for i in range(total))
        assert [batches_seen_by_worker(total, worker=w, num_workers=3) for w in range(3)] == [counts[w] for w in range(3)]


def test_sqrt_resampling_replicates_in_proportion_to_weight() -> None:
    resampler = Resampler("sqrt", random.Random(0))
    copies = Counter()
    for _ in range(4000):
        for weight in (1.0, 0.25):
            copies[weight] += resampler.copies(weight)
    assert copies[1.0] / copies[0.25] == pytest.approx(4.0, rel=0.1)
    assert Resampler("natural", random.Random(0)).copies(0.01) == 1


def test_shuffle_buffer_is_a_seeded_permutation() -> None:
    first = list(shuffle_buffer(range(100), size=16, rng=random.Random(1)))
    again = list(shuffle_buffer(range(100), size=16, rng=random.Random(1)))
    assert sorted(first) == list(range(100)) and first == again and first != list(range(100))
