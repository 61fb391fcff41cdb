"""Evaluate ONNX models (the exported candidate and the registry's ``production``) on a dataset's holdout with
ONNX Runtime and the shared preprocessing preset, i.e. the way they will be served; build the figures the Kubeflow
UI shows (Metrics, ClassificationMetrics) and an HTML report with the plots embedded.

ClassificationMetrics in KFP is single-label; moderation is multi-label, so the UI's confusion matrix and ROC
curve are for the binary question the stream acts on: "is this post in any moderation category?" (score = the
highest category score; predicted positive = the policy would review or remove it). Per-category figures are in
the Metrics artifact and the HTML report.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagwatch.preprocess import Preset
from tagwatch.train.evaluate import Predictions, average_precision
from tagwatch.train.policy import decide

HOLDOUT = "holdout"


@dataclass(frozen=True)
class OnnxCandidate:
    onnx_path: Path
    preset: Preset
    categories: list[str]


def candidate_from_export(export_dir: Path) -> OnnxCandidate:
    """The model of an export directory (``tagwatch model export`` layout, version dir 1)."""
    from tagwatch.export.export import read_export_info
    from tagwatch.export.triton_layout import find_onnx, read_label_file

    info = read_export_info(export_dir)
    model_dir = export_dir / "repository" / info["model_name"]
    return OnnxCandidate(find_onnx(export_dir / "repository", info["model_name"]), Preset.from_dict(info["preset"]),
                         read_label_file(model_dir / "categories.txt"))


def predict_onnx(model: OnnxCandidate, dataset, *, split: str = HOLDOUT, threads: int = 1) -> Predictions:
    """Score every image of ``split`` of ``dataset`` (a ``tagwatch.train.runtime.DatasetHandle``)."""
    from torch.utils.data import DataLoader

    from tagwatch.export.onnx_model import ort_session
    from tagwatch.train.data import StreamConfig

    session = ort_session(model.onnx_path, threads=threads)
    input_name = session.get_inputs()[0].name
    stream = dataset.stream(split=split, preset=model.preset, config=StreamConfig(batch_size=64, train=False))
    keys: list[str] = []
    parts: dict[str, list[np.ndarray]] = {"h": [], "c": [], "ht": [], "ct": []}
    for batch in DataLoader(stream, batch_size=None, num_workers=0):
        hashtag_logits, category_scores = session.run(["hashtag_logits", "category_scores"],
                                                      {input_name: batch["images"].numpy().astype(np.float32)})
        parts["h"].append(hashtag_logits)
        parts["c"].append(category_scores)
        parts["ht"].append(batch["hashtags"].numpy())
        parts["ct"].append(batch["categories"].numpy())
        keys.extend(batch["keys"])
    stack = {k: np.concatenate(v) if v else np.zeros((0, 0), dtype=np.float32) for k, v in parts.items()}
    return Predictions(keys, stack["h"], stack["c"], stack["ht"], stack["ct"])


def category_map_on(predictions: Predictions, *, model_categories: list[str], categories: list[str],
                    only: list[str] | None = None) -> dict[str, Any]:
    """AP per category of ``categories`` (the dataset's, the target columns' order) for a model whose outputs are
    ``model_categories``; categories the model lacks, or not in ``only`` when given, are left out. Returns
    per-category AP and their mean over finite values."""
    per: dict[str, float | None] = {}
    for c, name in enumerate(categories):
        if name not in model_categories or (only is not None and name not in only):
            continue
        ap = average_precision(predictions.category_scores[:, model_categories.index(name)],
                               predictions.category_targets[:, c])
        per[name] = ap if ap == ap else None
    finite = [v for v in per.values() if v is not None]
    return {"per_category_ap": per, "category_map": float(np.mean(finite)) if finite else None}


def binary_flag_figures(predictions: Predictions, *, categories: list[str], policy: dict[str, Any]) -> dict[str, Any]:
    """The "any moderation category" question: ROC points and the 2x2 confusion matrix at the policy."""
    labels = predictions.category_targets.max(axis=1).astype(bool) if len(predictions.keys) else np.zeros(0, bool)
    scores = predictions.category_scores.max(axis=1) if len(predictions.keys) else np.zeros(0)
    flagged = np.zeros(len(labels), dtype=bool)
    for c, name in enumerate(categories):
        rule = policy["categories"][name]
        flagged |= decide(predictions.category_scores[:, c], remove_threshold=rule["remove_threshold"],
                          review_threshold=rule["review_threshold"]) >= 1
    matrix = [[int((~labels & ~flagged).sum()), int((~labels & flagged).sum())],
              [int((labels & ~flagged).sum()), int((labels & flagged).sum())]]
    thresholds = np.unique(np.r_[scores, 1.0 + 1e-6])[::-1]
    positives, negatives = max(int(labels.sum()), 1), max(int((~labels).sum()), 1)
    fpr = [float(((scores >= t) & ~labels).sum() / negatives) for t in thresholds]
    tpr = [float(((scores >= t) & labels).sum() / positives) for t in thresholds]
    if len(thresholds) > 200:  # the UI table stays readable; keep the curve's shape
        pick = np.unique(np.linspace(0, len(thresholds) - 1, 200).round().astype(int))
        fpr, tpr, thresholds = [fpr[i] for i in pick], [tpr[i] for i in pick], thresholds[pick]
    return {"labels": ["ok", "flagged"], "confusion_matrix": matrix, "fpr": fpr, "tpr": tpr,
            "thresholds": [float(min(t, 1.0)) for t in thresholds], "positives": int(labels.sum()),
            "images": int(len(labels))}


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _fmt(value: Any) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else html.escape(str(value)))


def write_html_report(*, path: Path, title: str, candidate: dict[str, Any], production: dict[str, Any] | None,
                      gate: dict[str, Any], plots: list[Path], extra: dict[str, Any] | None = None) -> Path:
    """One self-contained HTML file (plots inlined as base64 PNG): what the Kubeflow UI shows for the step."""
    rows = []
    for name, ap in candidate["per_category"].items():
        prod_ap = (production or {}).get("per_category_ap", {}).get(name)
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{_fmt(ap.get('ap'))}</td><td>{_fmt(prod_ap)}</td>"
                    f"<td>{_fmt(ap.get('prevalence'))}</td><td>{ap.get('positives')}</td>"
                    f"<td>{_fmt(ap.get('review_or_remove_precision'))}</td>"
                    f"<td>{_fmt(ap.get('review_or_remove_recall'))}</td>"
                    "</tr>")
    verdict = "promote" if gate.get("promote") else "keep production"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p><b>Gate: {verdict}</b> — {html.escape(str(gate.get('reason', '')))}</p>",
        f"<p>holdout category mAP: candidate {_fmt(candidate.get('category_map'))}, production "
        f"{_fmt((production or {}).get('category_map'))} (chance {_fmt(candidate.get('chance_category_map'))}); "
        f"{candidate.get('images', '?')} holdout images.</p>",
        "<table border=1 cellpadding=4><tr><th>category</th><th>AP</th><th>production AP</th><th>prevalence</th>"
        "<th>positives</th><th>flag precision</th><th>flag recall</th></tr>", *rows, "</table>",
        *[f"<h2>{html.escape(p.stem.replace('_', ' '))}</h2>{_img(p)}" for p in plots if p.exists()],
    ]
    if extra:
        body.append(f"<h2>details</h2><pre>{html.escape(json.dumps(extra, indent=1, default=str))}</pre>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title)
                    + "</title></head><body>" + "\n".join(body) + "</body></html>", encoding="utf-8")
    return path
