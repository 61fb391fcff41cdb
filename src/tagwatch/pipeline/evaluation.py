"""Evaluate ONNX models (the exported candidate and the registry's ``production``) on a dataset's holdout with
ONNX Runtime and the shared preprocessing preset, i.e. the way they will be served; build the figures the Kubeflow
UI shows (Metrics, ClassificationMetrics) and an HTML report with the plots embedded.

ClassificationMetrics in KFP is single-label; moderation is multi-label, so the UI's confusion matrix and ROC
curve are for the binary question the stream acts on: "is this post in any moderation category?" (only categories
the policy acts on or monitors; ``other``, the complement of them, never counts; score = the highest of their
scores; predicted positive = the policy would review or remove it). Per-category figures with CIs are in the
Metrics artifact (``comparison.kfp_metrics``) and the HTML report; the gate is ``gate.py``.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagwatch.pipeline.comparison import Scored
from tagwatch.pipeline.gate import OTHER
from tagwatch.preprocess import Preset
from tagwatch.tensor_contract import OUTPUT_NAMES
from tagwatch.train.evaluate import Predictions
from tagwatch.train.figures import policy_actions

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
        hashtag_logits, category_scores = session.run(list(OUTPUT_NAMES),
                                                      {input_name: batch["images"].numpy().astype(np.float32)})
        parts["h"].append(hashtag_logits)
        parts["c"].append(category_scores)
        parts["ht"].append(batch["hashtags"].numpy())
        parts["ct"].append(batch["categories"].numpy())
        keys.extend(batch["keys"])
    stack = {k: np.concatenate(v) if v else np.zeros((0, 0), dtype=np.float32) for k, v in parts.items()}
    return Predictions(keys, stack["h"], stack["c"], stack["ht"], stack["ct"])


def evaluate_on_holdout(*, handle, export_dir: Path, out_dir: Path, registry, production_alias: str = "production",
                        min_improvement: float = 0.0) -> dict[str, Any]:
    """Score the exported candidate and ``production_alias`` on ``handle``'s holdout, each model's figures with
    its own policy, decide the gate; writes metrics.json, the plots, report.html and evaluation.json in
    ``out_dir`` and returns evaluation.json's content (``metrics``, ``figures``, ``production``, ``gate``,
    ``flag``, ``kfp_metrics``, ``files``)."""
    import shutil

    from tagwatch.errors import PipelineError
    from tagwatch.pipeline.comparison import (compare_with_production, holdout_positive, kfp_metrics, line_up,
                                              model_figures)
    from tagwatch.pipeline.gate import decide_promotion
    from tagwatch.train.report import clean_json, write_report

    categories = handle.manifest.category_names
    candidate = candidate_from_export(export_dir)
    if not (export_dir / "policy.json").exists():
        raise PipelineError(f"{export_dir} has no policy.json",
                            hint="export the transfer step's checkpoint with its policy")
    policy = json.loads((export_dir / "policy.json").read_text())
    predictions = predict_onnx(candidate, handle)
    scored = line_up(predictions, model_categories=candidate.categories, categories=categories)
    positive = holdout_positive(predictions.category_targets, categories)
    figures, caught = model_figures(scored, policy=policy, positive=positive, manifest=handle.manifest)
    metrics = write_report(Predictions(predictions.keys, predictions.hashtag_logits, scored.scores,
                                       predictions.hashtag_targets, scored.targets.astype(np.float32)),
                           category_names=scored.names, policy=policy, out_dir=out_dir, split=HOLDOUT,
                           duplicates=handle.duplicates(), manifest=handle.manifest, extra={"dataset": handle.uri})
    production, comparison = None, None
    if (record := registry.read_alias(production_alias)) is not None:
        local = registry.fetch(production_alias, dest=out_dir / ".production")
        model = OnnxCandidate(local.onnx_path, Preset.from_dict(local.metadata.preset), local.categories())
        prod_scored = line_up(predict_onnx(model, handle), model_categories=model.categories, categories=categories)
        prod_caught = None
        if local.policy is not None:
            production, prod_caught = model_figures(prod_scored, policy=local.policy, positive=positive,
                                                    manifest=handle.manifest)
            production.update(version=record.version, policy_version=local.policy.get("version"))
        comparison = compare_with_production(candidate=scored, candidate_figures=figures, candidate_caught=caught,
                                             production=prod_scored, production_figures=production,
                                             production_caught=prod_caught, production_version=record.version,
                                             positive=positive)
        shutil.rmtree(out_dir / ".production", ignore_errors=True)
    gate = decide_promotion(review_rate=figures["review_rate"], review_budget=figures["review_budget"],
                            comparison=comparison, min_improvement=min_improvement).to_dict()
    flag = binary_flag_figures(scored, policy=policy)
    from tagwatch.export.export import read_export_info

    recipe = (read_export_info(export_dir).get("lineage") or {}).get("recipe")
    report = write_html_report(path=out_dir / "report.html", title=f"tagwatch evaluation on {handle.uri} holdout",
                               candidate=figures, production=production, gate=gate,
                               plots=[out_dir / "pr_curves.png", out_dir / "confusion.png"],
                               extra={"binary_flag": {k: flag[k] for k in ("confusion_matrix", "positives", "images",
                                                                           "categories")}},
                               recipe=recipe)
    summary = clean_json({"metrics": metrics, "figures": figures, "production": production, "gate": gate,
                          "flag": flag, "kfp_metrics": kfp_metrics(figures, gate=gate, production=production),
                          "files": {"metrics": str(out_dir / "metrics.json"), "report": str(report),
                                    "pr_curves": str(out_dir / "pr_curves.png"),
                                    "confusion": str(out_dir / "confusion.png")}})
    (out_dir / "evaluation.json").write_text(json.dumps(summary, indent=1))
    return summary


def binary_flag_figures(scored: Scored, *, policy: dict[str, Any]) -> dict[str, Any]:
    """The "any moderation category" question: ROC points and the 2x2 confusion matrix at the policy. Label: the
    post is in a category the policy acts on or monitors (``off`` ones, i.e. ``other``, never count); score: the
    highest of those categories' scores; predicted positive: the policy sends it to review or remove."""
    modes = policy.get("categories", {})
    columns = [j for j, name in enumerate(scored.names) if modes.get(name, {}).get("mode", "act") in ("act", "monitor")
               and name != OTHER]
    n = len(scored.scores)
    labels = scored.targets[:, columns].any(axis=1) if columns and n else np.zeros(n, bool)
    scores = scored.scores[:, columns].max(axis=1) if columns and n else np.zeros(n)
    flagged = policy_actions(policy, scored.scores, scored.names) >= 1 if n else np.zeros(0, bool)
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
            "images": int(n), "categories": [scored.names[j] for j in columns]}


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _fmt(value: Any) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else html.escape(str(value)))


def _est(estimate: dict[str, Any] | None, percent: bool = False) -> str:
    """"0.812 [0.70, 0.89]" (or percentages), "-" when not measurable."""
    if not estimate or estimate.get("value") is None:
        return "-"
    f = (lambda v: f"{100 * v:.1f} %") if percent else (lambda v: f"{v:.3f}")
    if estimate.get("low") is None or estimate.get("high") is None:
        return f(estimate["value"])
    return f"{f(estimate['value'])} [{f(estimate['low'])}, {f(estimate['high'])}]"


def category_rows(candidate: dict[str, Any], production: dict[str, Any] | None) -> list[str]:
    """One table row per category of the candidate's figures (values with their 95 % CI in brackets)."""
    rows = []
    for name, e in candidate["categories"].items():
        prod = (production or {}).get("categories", {}).get(name, {})
        cells = [html.escape(name), e["mode"], e["positives"], _fmt(e.get("chance")), _est(e.get("ap")),
                 _est(prod.get("ap")), _est(e.get("precision")), _est(e.get("recall")),
                 _est(e.get("review_rate"), percent=True), _est(e.get("remove_precision")),
                 html.escape(e.get("reason") or "")]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return rows


def describe_recipe(recipe: dict[str, Any] | None) -> str:
    """One line: how the candidate was trained ("unknown" for models exported before recipes were recorded)."""
    if not recipe:
        return "unknown (no recipe in the model's lineage)"
    return ", ".join(f"{k} {v}" for k, v in recipe.items())


def write_html_report(*, path: Path, title: str, candidate: dict[str, Any], production: dict[str, Any] | None,
                      gate: dict[str, Any], plots: list[Path], extra: dict[str, Any] | None = None,
                      recipe: dict[str, Any] | None = None) -> Path:
    """One self-contained HTML file (plots inlined as base64 PNG): what the Kubeflow UI shows for the step.
    ``candidate`` / ``production``: ``comparison.model_figures`` of each; ``gate``: ``GateDecision.to_dict()``;
    ``recipe``: how the candidate was trained (its lineage's ``recipe``, ``train/recipe.py``)."""
    verdict = "promote" if gate.get("promote") else "keep production"
    population = html.escape(candidate.get("population") or "")
    overall = (f"<p>{candidate.get('posts', '?')} holdout posts, figures for {population}"
               f": review rate {_est(candidate.get('review_rate'), True)} (budget "
               f"{_est({'value': candidate.get('review_budget')}, True)}), remove rate {_est(candidate.get('remove_rate'), True)}, "
               f"auto-remove precision {_est(candidate.get('remove_precision'))}, recall at the budget "
               f"{_est(candidate.get('recall_at_budget'))}; moderation mAP {_fmt(candidate.get('moderation_map'))} "
               f"(chance {_fmt(candidate.get('chance_moderation_map'))}, on "
               f"{html.escape(', '.join(candidate.get('moderation_map_categories') or []) or 'no category')})</p>")
    if production is not None:
        overall += (f"<p>production v{gate.get('production_version')}: review rate "
                    f"{_est(production.get('review_rate'), True)}, recall at the budget "
                    f"{_est(production.get('recall_at_budget'))}, moderation mAP "
                    f"{_fmt(production.get('moderation_map'))}</p>")
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p><b>Gate: {verdict}</b> — {html.escape(str(gate.get('reason', '')))}</p>",
        "<ol>" + "".join(f"<li>{html.escape(c)}</li>" for c in gate.get("checks") or []) + "</ol>",
        overall,
        "<p>Recipe: " + html.escape(describe_recipe(recipe)) + "</p>",
        "<table border=1 cellpadding=4><tr><th>category</th><th>mode</th><th>positives</th><th>chance</th>"
        "<th>AP [95 % CI]</th><th>production AP</th><th>precision at the operating point</th><th>recall</th>"
        "<th>review rate</th><th>auto-remove precision</th><th>why</th></tr>",
        *category_rows(candidate, production), "</table>",
        *[f"<h2>{html.escape(p.stem.replace('_', ' '))}</h2>{_img(p)}" for p in plots if p.exists()],
    ]
    if extra:
        body.append(f"<h2>details</h2><pre>{html.escape(json.dumps(extra, indent=1, default=str))}</pre>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title)
                    + "</title></head><body>" + "\n".join(body) + "</body></html>", encoding="utf-8")
    return path
