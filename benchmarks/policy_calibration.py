"""The first wave's policy rule vs the constrained calibrator, on the same real posts and the same features.
Prints ONE JSON line (and, with --markdown FILE, a table for the docs): holdout figures with 95 % CIs for each arm,
population-weighted to natural traffic (the holdout over-samples moderation positives).

    PYTHONPATH=src python benchmarks/policy_calibration.py [--dataset hashtags/<version>] [--markdown out.md]

Needs a running stack with a built dataset (``make demo`` leaves one; ``tagwatch stack up`` restarts it). Both arms
use the demo's model: an ImageNet EfficientNet-Lite0 backbone, frozen, with the category head fitted by L-BFGS on
features computed once per image.

* ``before``: the head fitted on train; thresholds on val per category: remove at point precision >= 0.95, review
  at recall >= 0.8 (the demo's setting), never for a category with fewer than 3 val positives.
* ``after``: the head fitted on train + val; operating points from 5-fold out-of-fold scores of train + val under a
  5 % review budget, CI-bounded auto-removal (0.95) and monitor mode below 10 positives (train/operating_points.py);
  folds keep PDQ near-duplicates together.
* ``after_random_folds``: the same with folds drawn post by post (what the near-duplicate grouping fixes: a twin in
  the fitting folds makes a post's out-of-fold score too sure, and the policy under-counts review).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def legacy_policy(scores: np.ndarray, targets: np.ndarray, names: list[str], *, target_precision: float = 0.95,
                  target_recall: float = 0.8, min_positives: int = 3) -> dict[str, Any]:
    """The first wave's rule (train/policy.py before issue 13), kept here to measure against."""
    from tagwatch.train.evaluate import precision_recall_curve
    from tagwatch.train.operating_points import NEVER

    categories = {}
    for j, name in enumerate(names):
        labels = targets[:, j] > 0
        rule = {"mode": "act", "remove_threshold": NEVER, "review_threshold": NEVER, "positives": int(labels.sum())}
        if name == "other" or labels.sum() < min_positives:
            rule["mode"] = "off"
        else:
            precision, recall, thresholds = precision_recall_curve(scores[:, j], labels)
            ok = np.flatnonzero(precision >= target_precision)
            if len(ok):
                rule["remove_threshold"] = float(thresholds[ok.max()])
            ok = np.flatnonzero(recall >= target_recall)
            rule["review_threshold"] = min(float(thresholds[ok.min()]), rule["remove_threshold"]) if len(ok) else \
                rule["remove_threshold"]
        categories[name] = rule
    return {"version": "legacy", "constraints": {"confidence": 0.95, "min_positives": min_positives},
            "categories": categories}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="NAME/VERSION (default: the latest build of 'hashtags')")
    parser.add_argument("--markdown", default=None, help="also write a markdown table here")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)

    import torch

    from tagwatch.data.dedup import near_duplicate_groups
    from tagwatch.train import runtime
    from tagwatch.train.data import StreamConfig
    from tagwatch.train.figures import policy_figures
    from tagwatch.train.models import create_model
    from tagwatch.train.operating_points import Constraints
    from tagwatch.train.policy import build_policy
    from tagwatch.train.population import moderation_positive, split_weights
    from tagwatch.train.probe_fit import extract_features, fit_linear_probe, out_of_fold_scores

    torch.set_num_threads(2)
    settings = runtime.resolve_settings()
    spec = args.dataset or _latest(settings, "hashtags")
    dataset = runtime.open_dataset(spec, settings=settings)
    names = dataset.manifest.category_names
    preset = runtime.preset_for(128)
    model = create_model("efficientnet_lite0", dataset.manifest.num_labels, num_categories=len(names),
                         pretrained=True)
    tick = time.perf_counter()
    feats, ys, hashes = {}, {}, {}
    for split in ("train", "val", "holdout"):
        stream = dataset.stream(split=split, preset=preset, config=StreamConfig(batch_size=64, train=False))
        feats[split], columns = extract_features(model, stream, device="cpu", targets=("categories",))
        ys[split], hashes[split] = columns["categories"], columns["pdq"]
    features_s = time.perf_counter() - tick

    def head_scores(train_x, train_y, x):
        weight, bias, _ = fit_linear_probe(train_x, train_y)
        return torch.sigmoid(x @ weight.T + bias).numpy()

    holdout_y = ys["holdout"].numpy()
    positive = moderation_positive(holdout_y, names)
    weights, population = split_weights(dataset.manifest, ["holdout"] * len(holdout_y), positive)
    arms: dict[str, Any] = {}
    # before: head on train, thresholds on val
    val_scores = head_scores(feats["train"], ys["train"], feats["val"])
    before = legacy_policy(val_scores, ys["val"].numpy(), names)
    arms["before"] = policy_figures(policy=before, scores=head_scores(feats["train"], ys["train"], feats["holdout"]),
                                    targets=holdout_y, names=names, weights=weights, population=population,
                                    min_positives=10)
    # after: head on train+val, operating points on out-of-fold scores of train+val
    fit_x = torch.cat([feats["train"], feats["val"]])
    fit_y = torch.cat([ys["train"], ys["val"]])
    splits = ["train"] * len(feats["train"]) + ["val"] * len(feats["val"])
    cal_weights, _ = split_weights(dataset.manifest, splits, moderation_positive(fit_y.numpy(), names))
    holdout_scores = head_scores(fit_x, fit_y, feats["holdout"])
    groups = near_duplicate_groups(hashes["train"] + hashes["val"])
    for arm, fold_groups in (("after", groups), ("after_random_folds", None)):
        oof = out_of_fold_scores(fit_x, fit_y, folds=args.folds, l2=1e-3, max_iter=200, seed=0,
                                 groups=fold_groups).numpy()
        policy = build_policy(scores=oof, targets=fit_y.numpy(), category_names=names, model={"run_id": "benchmark"},
                              calibration={"split": "train+val out-of-fold", "images": len(oof)}, version=arm,
                              constraints=Constraints(), weights=cal_weights, severity=dataset.severity,
                              not_moderated=frozenset({"other"}))
        arms[arm] = policy_figures(policy=policy, scores=holdout_scores, targets=holdout_y, names=names,
                                   weights=weights, population=population)
        arms[arm]["expected_review_rate"] = policy["expected"]["review_rate"]
        arms[arm]["policy_reasons"] = {n: c["reason"] for n, c in policy["categories"].items()}
    result = {"benchmark": "policy_calibration", "dataset": dataset.uri, "holdout_posts": int(len(holdout_y)),
              "features_s": round(features_s, 1), "population": population, "arms": arms}
    print(json.dumps(result, default=float))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as out:
            out.write(markdown(result, names))
    return 0


def _fmt(estimate: dict[str, Any] | None, digits: int = 3) -> str:
    if not estimate or estimate.get("value") is None:
        return "-"
    return f"{estimate['value']:.{digits}f} [{estimate['low']:.{digits}f}, {estimate['high']:.{digits}f}]"


def markdown(result: dict[str, Any], names: list[str]) -> str:
    rows = ["| arm | category | mode | holdout positives | AP [95 % CI] | precision at the point | recall at the point "
            "| review share | auto-remove precision |", "|---|---|---|---|---|---|---|---|---|"]
    for arm, figures in result["arms"].items():
        rows.append(f"| {arm} | **all** | | | moderation mAP {figures['moderation_map'] or 0:.3f} | | "
                    f"{_fmt(figures['recall'])} | {_fmt(figures['review_rate'])} | {_fmt(figures['remove_precision'])} |")
        for name in names:
            c = figures["categories"][name]
            if c["mode"] == "off" and name == "other":
                continue
            rows.append(f"| {arm} | {name} | {c['mode']} | {c['positives']} | {_fmt(c['ap'])} | "
                        f"{_fmt(c.get('precision'))} | {_fmt(c.get('recall'))} | {_fmt(c.get('review_rate'))} | "
                        f"{_fmt(c.get('remove_precision'))} |")
    return "\n".join(rows) + "\n"


def _latest(settings, name: str) -> str:
    from tagwatch.clients import s3_client

    body = s3_client(settings.s3).get_object(Bucket=settings.s3.buckets.datasets, Key=f"{name}/latest.json")["Body"]
    return f"{name}/{json.loads(body.read())['version']}"


if __name__ == "__main__":
    sys.exit(main())
