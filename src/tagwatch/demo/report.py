"""The demo's report: a self-contained directory (index.html, summary.json, PNG figures, example thumbnails).

Every value that reaches the HTML goes through ``html.escape``; every image the page links lies in the directory.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from tagwatch.demo.console import fmt_ci, fmt_rate_ci, overall_rows
from tagwatch.demo.summary import PublishedPost, category_levels, consent_text

EXAMPLES_DIR = "examples"


def choose_examples(published: list[PublishedPost], decisions: dict[str, dict[str, Any]], *,
                    limit: int = 24) -> list[PublishedPost]:
    """Removes first, then reviews, then missed positives, then allows: the interesting posts, at most ``limit``."""
    decided = [p for p in published if p.post_id in decisions]

    def positive(p: PublishedPost) -> bool:
        return any(c != "other" for c in p.categories)

    groups = [
        [p for p in decided if decisions[p.post_id]["action"] == "remove"],
        [p for p in decided if decisions[p.post_id]["action"] == "review"],
        [p for p in decided if decisions[p.post_id]["action"] == "allow" and positive(p)],
        [p for p in decided if decisions[p.post_id]["action"] == "allow" and not positive(p)],
    ]
    quota = [8, 8, 4, limit]
    chosen: list[PublishedPost] = []
    for group, most in zip(groups, quota, strict=True):
        chosen.extend(group[: min(most, limit - len(chosen))])
    return chosen[:limit]


def s3_image_fetcher(s3) -> Callable[[str], bytes]:
    """image_uri -> bytes from S3 (the posts bucket)."""
    from tagwatch.data.posts import split_s3_uri

    def fetch(uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    return fetch


def write_thumbnails(fetch_image: Callable[[str], bytes], examples: list[PublishedPost], *, out_dir: Path,
                     size: int = 160) -> dict[str, str]:
    """post_id -> relative path of a JPEG thumbnail copied into the report."""
    from PIL import Image

    (out_dir / EXAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    paths = {}
    for n, post in enumerate(examples):
        relative = f"{EXAMPLES_DIR}/{n:03d}.jpg"
        (out_dir / relative).write_bytes(jpeg_thumbnail(Image.open(io.BytesIO(fetch_image(post.image_uri))), size))
        paths[post.post_id] = relative
    return paths


def jpeg_thumbnail(image, size: int = 160, *, quality: int = 85) -> bytes:
    """A PIL image as a JPEG thumbnail at most ``size`` px on a side (the original is not changed)."""
    small = image.convert("RGB")  # a copy, also of an RGB image
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_data_uri(data: bytes) -> str:
    """JPEG bytes as a ``data:`` URI for a self-contained HTML page."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def copy_plots(plots: dict[str, str], *, out_dir: Path) -> dict[str, str]:
    """Copy the training stage's PNGs next to index.html; name -> relative path (missing files are left out)."""
    copied = {}
    for name, source in plots.items():
        if Path(source).is_file():
            relative = f"training-{name}.png"
            shutil.copyfile(source, out_dir / relative)
            copied[name] = relative
    return copied


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def html_table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


PIPELINE_REPORT = "pipeline-report.html"


def _figure(src: str | None, caption: str) -> str:
    if not src:
        return ""
    return (f'<figure><img src="{html.escape(src, quote=True)}" alt="{html.escape(caption, quote=True)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def category_table(categories: dict[str, Any]) -> str:
    """Per category: mode, AP, precision, recall, review share, auto-remove, each with its CI and chance."""
    rows = []
    for name, c in categories.items():
        acting = c["mode"] == "act"
        auto = ((f"{fmt_ci(c['remove_precision'])} ({c['removed']} removed)" if c.get("remove_enabled")
                 else f"off: {c.get('remove_reason') or 'no remove threshold'}") if acting else "–")
        rows.append([name, c["mode"], c["positives"], fmt_ci(c["ap"]), c.get("chance_ap"),
                     fmt_ci(c.get("precision")) if acting else "–", c.get("chance"),
                     fmt_ci(c.get("recall")) if acting else "–", c.get("chance_recall"),
                     fmt_rate_ci(c.get("review_rate")) if acting else "–", auto])
    return html_table(["category", "mode", "positives", "AP [CI]", "chance AP (base rate)", "precision [CI]",
                   "chance precision (prevalence)", "recall [CI]", "chance recall (flag rate)", "review share [CI]",
                   "auto-remove precision [CI]"], rows)


def holdout_section(s: dict[str, Any], figures: dict[str, str]) -> str:
    """The figures on the holdout: overall (review rate vs budget first), per category, monitor categories, and
    an operating-point plot per acting category. Empty for a summary without them."""
    if "review_rate" not in s:
        return ""
    level = f"{100 * s['confidence']:.0f} %"
    monitors = "".join(
        f"<li><b>{html.escape(name)}</b>: {c.get('monitor_hits_stream', c.get('monitor_hits', 0))} hits on this "
        f"stream (score &gt;= {html.escape(_fmt(c.get('monitor_threshold')))}, not actioned; precision "
        f"{html.escape(fmt_ci(c.get('monitor_precision')))}). {html.escape(c.get('reason', ''))}</li>"
        for name, c in s["categories"].items() if c["mode"] == "monitor") or "<li>none</li>"
    plots = "".join(_figure(figures.get(f"operating_point:{name}"),
                            f"{name}: PR curve on the holdout, review / remove points and the point where {name} "
                            f"alone would spend the review budget ({level} CIs as error bars)")
                    for name in s["categories"])
    return f"""<h2>Decisions on the holdout ({level} confidence intervals)</h2>
<p>Every figure is computed from the stream's own decisions (scores and actions of the ledger records) against the
held-out labels, under the policy the stream served. Rates and precision are estimated for
{html.escape(s["population"])}; the raw share of this stream is shown beside the review rate (the holdout
over-samples moderation positives).</p>
{html_table(["figure", "value"], [list(row) for row in overall_rows(s)])}
<h3>Per category</h3>
<p>Chance: a random scorer's AP is the stream's base rate; a random flagger of the same volume has precision = the
prevalence and recall = its flag rate. Recall counts positives that end in review or remove for any reason.</p>
{category_table(s["categories"])}
<h3>Monitor mode (scored and counted, never actioned)</h3><ul>{monitors}</ul>
<h3>Operating points</h3>{plots}
"""


REVIEW_SCREENSHOT = "review-queue.png"


def review_screenshot() -> Path | None:
    """docs/img/review-queue.png of a source checkout (the review app's browser test takes it); None in a wheel."""
    path = Path(__file__).resolve().parents[3] / "docs" / "img" / REVIEW_SCREENSHOT
    return path if path.is_file() else None


def review_section(s: dict[str, Any], figures: dict[str, str]) -> str:
    queued = s.get("actions", {}).get("review", 0)
    shot = figures.get("review_queue")
    picture = (f'<figure><a href="{html.escape(shot, quote=True)}"><img src="{html.escape(shot, quote=True)}" '
               'alt="the review queue page" width="600"></a><figcaption>the review app\'s queue page (a screenshot '
               "taken by its browser test)</figcaption></figure>" if shot else "")
    signals = "".join(
        f"<li><b>{html.escape(name)}</b> ({html.escape(', '.join(e['versions']))}): on {e['posts']} posts; scoring "
        "&ge; 0.8: " + html.escape(", ".join(f"{c} {n}" for c, n in e["at_least_0.8"].items()) or "none") + "</li>"
        for name, e in s.get("signals", {}).items())
    signal_list = (f"<h2>Signals</h2><p>Every signal the policy saw (docs/policy.md); categories nothing calibrated "
                   f"monitor only.</p><ul>{signals}</ul>" if signals else "")
    return signal_list + (f"<h2>Review queue</h2><p>{queued} posts went to review. Reviewers work them in the review app: "
            "<code>tagwatch review add-user alice</code>, then <code>tagwatch review serve</code> and open "
            "http://127.0.0.1:8700 (docs/review.md). Their outcomes land in each post's ledger history "
            "(<code>tagwatch ledger show POST_ID</code>) and can become the next build's train labels.</p>" + picture)


def render_html(summary: dict[str, Any], *, figures: dict[str, str], examples: list[dict[str, Any]]) -> str:
    """The page. ``figures``: name -> relative PNG path; ``examples``: dicts with thumb, action, scores, truth."""
    s = summary
    stages = [[name, f"{seconds:.1f}"] for name, seconds in s.get("stage_seconds", {}).items()]
    steps = [[name, f"{seconds:.1f}"] for name, seconds in s.get("training", {}).get("step_seconds", {}).items()]
    stream = [["posts published", s["posts"]], ["decided", s["decided"]],
              ["dead-lettered", s["dead_lettered"]], ["lost", s["lost"]],
              *[[f"decisions: {a}", n] for a, n in s["actions"].items()],
              *[[f"DLQ: {r}", n] for r, n in s["dlq_by_reason"].items()],
              ["throughput (posts/s)", s["throughput_posts_s"]], ["latency p50 (ms)", s["latency_ms"]["p50"]],
              ["latency p99 (ms)", s["latency_ms"]["p99"]]]
    cards = "".join(
        f'<div class="card {html.escape(e["action"], quote=True)}"><img src="{html.escape(e["thumb"], quote=True)}" '
        f'alt="{html.escape(e["post_id"], quote=True)}"><div><b>{html.escape(e["action"])}</b> · truth: '
        f'{html.escape(", ".join(e["truth"]) or "none")}</div><div class="scores">'
        + html.escape(", ".join(f"{k} {v:.2f}" for k, v in sorted(e["scores"].items(), key=lambda kv: -kv[1])[:3]))
        + "</div></div>" for e in examples)
    model = s.get("model", {})
    reused = "".join(f"<li>{html.escape(r)}</li>" for r in s.get("reused", [])) or "<li>nothing (a fresh run)</li>"
    training = s.get("training", {})
    pipeline = ""
    if training.get("gate_note"):
        pipeline += f'<p><b>{html.escape(training["gate_note"])}</b></p>'
    if figures.get("pipeline_report"):
        pipeline += (f'<p>Trained by the <code>pretrain_and_deploy</code> Kubeflow pipeline (kfp.local run '
                     f'{html.escape(str(training.get("pipeline_run", "")))}): <a href="'
                     f'{html.escape(figures["pipeline_report"], quote=True)}">the pipeline\'s report</a> (its evaluate '
                     'step: candidate vs production on the holdout, the gate).</p>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tagwatch demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }} figure img {{ max-width: 100%; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 10px; }} .card {{ width: 170px; border: 2px solid #ccc; padding: 4px; font-size: 12px; }}
.card.remove {{ border-color: #c0392b; }} .card.review {{ border-color: #e67e22; }} .card.allow {{ border-color: #27ae60; }}
.scores {{ color: #555; }}
</style></head><body>
<h1>tagwatch demo ({html.escape(s.get("mode", ""))})</h1>
<p>Model <b>{html.escape(str(model.get("name", "")))}</b> version <b>{html.escape(str(model.get("version", "")))}</b>
(dataset {html.escape(str(s.get("dataset", "")))}); wall time {html.escape(_fmt(s.get("wall_seconds"), 1))} s.
Held-out posts published as new posts, decided by the stream (Kafka consumers, Triton, policy), checked against their labels.</p>
<p>{html.escape(consent_text(s.get("consent")))}.</p>
<h2>Stream</h2>{html_table(["figure", "value"], stream)}
{holdout_section(s, figures)}
{_figure(figures.get("stream_pr"), "PR curves of the stream's scores per category (thresholds marked)")}
{_figure(figures.get("stream_confusion"), "confusion per category: truth x the stream's flag")}
<h2>Throughput and latency</h2>
{_figure(figures.get("latency"), "post-to-decision latency")}{_figure(figures.get("throughput"), "decisions per second")}
<h2>Examples</h2><div class="grid">{cards}</div>
{review_section(s, figures)}
<h2>Training</h2>{pipeline}
{_figure(figures.get("training_curves"), "training curves")}{_figure(figures.get("zipf"), "hashtag Zipf plot")}
{_figure(figures.get("pr_curves"), "holdout PR curves of the exported model (the pipeline's evaluate step)")}
{_figure(figures.get("confusion"), "holdout confusion (the pipeline's evaluate step)")}
<h2>Stages</h2>{html_table(["stage", "seconds"], stages)}{html_table(["training step", "seconds"], steps)}
<h2>Reused</h2><ul>{reused}</ul>
</body></html>
"""


def write_report(*, out_dir: Path, summary: dict[str, Any], published: list[PublishedPost],
                 decisions: dict[str, dict[str, Any]], thresholds: dict[str, dict[str, float | None]],
                 training_plots: dict[str, str], fetch_image: Callable[[str], bytes] | None = None, s3=None,
                 pipeline_report: str = "", manifest: Any = None) -> Path:
    """Write index.html, summary.json and every figure into ``out_dir``; returns the index path.

    Images of the example posts come from ``fetch_image(image_uri)``, or from the ``s3`` client; ``manifest`` (the
    dataset's) weights the operating-point plots' precision as ``summary``'s figures are."""
    fetch_image = fetch_image or s3_image_fetcher(s3)
    from tagwatch.demo import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / EXAMPLES_DIR,):
        if stale.is_dir():
            shutil.rmtree(stale)
    for stale_plot in out_dir.glob("operating-point-*.png"):  # a previous run's categories
        stale_plot.unlink()
    figures = copy_plots(training_plots, out_dir=out_dir)
    if pipeline_report and Path(pipeline_report).is_file():  # self-contained HTML (its images inlined)
        shutil.copyfile(pipeline_report, out_dir / PIPELINE_REPORT)
        figures["pipeline_report"] = PIPELINE_REPORT
    figures.update(write_category_plots(out_dir=out_dir, summary=summary, published=published,
                                        decisions=decisions, thresholds=thresholds, manifest=manifest))
    screenshot = review_screenshot()
    if screenshot is not None:
        shutil.copyfile(screenshot, out_dir / REVIEW_SCREENSHOT)
        figures["review_queue"] = REVIEW_SCREENSHOT
    plots.plot_latency(summary["latencies_ms"], path=out_dir / "latency.png")
    plots.plot_throughput(summary["decided_offsets_s"], path=out_dir / "throughput.png")
    figures.update({"latency": "latency.png", "throughput": "throughput.png"})
    chosen = choose_examples(published, decisions)
    thumbs = write_thumbnails(fetch_image, chosen, out_dir=out_dir)
    examples = [{"post_id": p.post_id, "thumb": thumbs[p.post_id], "action": decisions[p.post_id]["action"],
                 "scores": decisions[p.post_id]["scores"], "truth": [c for c in p.categories if c != "other"],
                 "levels": category_levels(decisions[p.post_id]["scores"], thresholds)} for p in chosen]
    (out_dir / "summary.json").write_text(json.dumps({**summary, "figures": figures, "examples": examples}, indent=1))
    index = out_dir / "index.html"
    index.write_text(render_html(summary, figures=figures, examples=examples))
    return index


def write_category_plots(*, out_dir: Path, summary: dict[str, Any], published: list[PublishedPost],
                         decisions: dict[str, dict[str, Any]], thresholds: dict[str, dict[str, float | None]],
                         manifest: Any = None) -> dict[str, str]:
    """The stream's PR curves and confusion (all categories) and an operating-point plot per acting category;
    figure name -> relative PNG path."""
    from tagwatch.demo import plots
    from tagwatch.demo.holdout import holdout_arrays, holdout_weights

    categories = list(summary.get("categories", {}))
    posts, scores, labels, _ = holdout_arrays(published, decisions, categories)
    if not posts or not categories:
        return {}
    figures = {"stream_pr": "stream-pr.png", "stream_confusion": "stream-confusion.png"}
    plots.plot_stream_pr_curves(scores, labels, categories, path=out_dir / figures["stream_pr"], thresholds=thresholds)
    plots.plot_stream_confusion({c: summary["categories"][c]["confusion"] for c in categories},
                                path=out_dir / figures["stream_confusion"])
    weights, _ = holdout_weights(manifest, posts)
    budget = summary.get("review_rate", {}).get("budget")
    for j, name in enumerate(categories):
        entry = summary["categories"][name]
        if entry["mode"] != "act":
            continue
        relative = f"operating-point-{j:02d}-{re.sub(r'[^A-Za-z0-9_-]+', '-', name)[:40]}.png"
        plots.plot_operating_point(scores[:, j], labels[:, j], weights, name=name, entry=entry, budget=budget,
                                   path=out_dir / relative)
        figures[f"operating_point:{name}"] = relative
    return figures


class _ImageSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.open_tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")
        elif tag not in {"meta", "br", "img", "hr", "link"}:
            self.open_tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open_tags and self.open_tags[-1] == tag:
            self.open_tags.pop()
        else:
            self.open_tags.append(f"unbalanced </{tag}>")


def verify_report(out_dir: Path) -> list[str]:
    """Problems with a written report (empty: fine): the HTML parses with balanced tags, and every <img src> is a
    relative path inside ``out_dir`` to a real PNG or JPEG file."""
    index = out_dir / "index.html"
    if not index.is_file():
        return [f"{index} missing"]
    parser = _ImageSources()
    parser.feed(index.read_text())
    parser.close()
    problems = [f"unclosed or unbalanced tags: {parser.open_tags[-3:]}"] if [t for t in parser.open_tags if t != "html"] else []
    if not parser.sources:
        problems.append("no images")
    root = out_dir.resolve()
    for src in parser.sources:
        path = (out_dir / src).resolve()
        if src.startswith(("/", "http:", "https:", "data:")) or root not in path.parents:
            problems.append(f"{src}: not a file inside the report directory")
            continue
        if not path.is_file():
            problems.append(f"{src}: missing")
            continue
        head = path.read_bytes()[:8]
        if not (head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff")):
            problems.append(f"{src}: neither PNG nor JPEG")
    return problems
