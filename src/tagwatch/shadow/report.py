"""The shadow run's decision-diff report: ``shadow-report.json`` (schema ``shadow-report.v1.json``) and a
self-contained ``shadow-report.html`` (thumbnails inlined as JPEG data URIs), written to a directory and uploaded
to ``s3://<models bucket>/reports/shadow/<model>/<version:06d>/<time>-<id>.{json,html}``, where the promotion
gate finds the latest report of a version (``latest_report``).
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict

from tagwatch.demo.console import fmt_ci, fmt_rate_ci
from tagwatch.demo.report import html_table, jpeg_data_uri

SCHEMA_FILE = "shadow-report.v1.json"
REPORTS_PREFIX = "reports/shadow"
JSON_NAME, HTML_NAME = "shadow-report.json", "shadow-report.html"


class _Open(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Estimate(_Open):
    value: Optional[float]
    low: Optional[float]
    high: Optional[float]
    n: float


class RateDiff(_Open):
    production: Estimate
    candidate: Estimate
    delta: Estimate  # candidate - production, paired bootstrap 95 % CI


class Changed(_Open):
    post_id: str
    image_uri: str
    transition: str
    category: str
    score_change: float
    production_scores: dict[str, float]
    candidate_scores: dict[str, float]
    production_reasons: list[str]
    candidate_reasons: list[str]


class ShadowReport(_Open):
    """A shadow run's decision diff (what `tagwatch shadow run` writes and the gate reads)."""

    schema_version: int = 1
    run_id: str
    created_at: datetime
    model_name: str
    candidate: dict[str, Any]  # version, ref, metadata_sha256, policy_version, policy_source, triton_model
    production: dict[str, Any]  # versions: "vN / policy" -> compared posts decided by it
    range: dict[str, Any]  # mode, from, to, ledger_window, text, topic
    summary: dict[str, Any]  # records, replayed, compared, skipped{reason: n}, ...
    changed: int
    transitions: dict[str, int]
    matrix: dict[str, dict[str, int]]
    by_category: dict[str, dict[str, int]]
    rates: Optional[dict[str, RateDiff]]  # remove, review; None when nothing was compared
    reviewer_agreement: Optional[dict[str, Any]]
    reviewer_note: str
    top_changed: list[Changed]
    seconds: float
    files: dict[str, str] = {}


def build_report(*, run_id: str, created_at: datetime, model_name: str, candidate: dict, range_: dict,
                 result, diff: dict, top: list, seconds: float) -> ShadowReport:
    """Assemble the report from the replay's ``result`` (``replay.ReplayResult``) and ``diff.diff``'s dict."""
    return ShadowReport(
        run_id=run_id, created_at=created_at, model_name=model_name, candidate=candidate,
        production={"alias": "production (the ledger's decisions)", "versions": dict(result.production_versions)},
        range=range_, summary=result.summary(), changed=diff["changed"], transitions=diff["transitions"],
        matrix=diff["matrix"], by_category=diff["by_category"], rates=diff["rates"],
        reviewer_agreement=diff["reviewer_agreement"], reviewer_note=diff["reviewer_note"],
        top_changed=[Changed(post_id=p.post_id, image_uri=p.image_uri, transition=p.transition, category=p.category,
                             score_change=round(p.score_change, 6), production_scores=p.production.scores,
                             candidate_scores=p.candidate.scores, production_reasons=p.production.reasons,
                             candidate_reasons=p.candidate.reasons) for p in top],
        seconds=round(seconds, 2))


def render_html(report: ShadowReport, thumbnails: dict[str, bytes]) -> str:
    r, c = report, report.candidate
    summary = r.summary
    skipped = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in summary["skipped"].items() if n) or "none"
    matrix = html_table(["production \\ candidate", *r.matrix],
                        [[a, *r.matrix[a].values()] for a in r.matrix])
    categories = html_table(["category", "transitions"],
                            [[name, ", ".join(f"{t} {n}" for t, n in counts.items())]
                             for name, counts in r.by_category.items()])
    rate_rows = [[action, fmt_rate_ci(d.production.model_dump()), fmt_rate_ci(d.candidate.model_dump()),
                  fmt_rate_ci(d.delta.model_dump())] for action, d in (r.rates or {}).items()]
    rates = html_table(["rate", "production [95 % CI]", "candidate [95 % CI]", "paired Δ candidate − production"],
                       rate_rows)
    agreement = ("<p>" + html.escape(r.reviewer_note) + "</p>" if r.reviewer_agreement is None else
                 html_table(["side", "agreement with reviewers"],
                            [[s, fmt_ci(r.reviewer_agreement[s])] for s in ("production", "candidate")]))
    cards = "".join(
        f'<div class="card">{_thumb(thumbnails.get(e.post_id), e.post_id)}<div><b>{html.escape(e.transition)}</b> · '
        f'{html.escape(e.category)}</div><div class="scores">Δ {e.score_change:.3f}: '
        + html.escape(", ".join(f"{k} {e.production_scores.get(k, 0):.2f}→{v:.2f}"
                                for k, v in sorted(e.candidate_scores.items())))
        + f'</div><div class="id">{html.escape(e.post_id)}</div></div>' for e in r.top_changed)
    title = f"shadow replay: {r.model_name} v{c['version']} vs production"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
th {{ background: #f3f3f3; }} .grid {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.card {{ width: 200px; border: 2px solid #ccc; padding: 4px; font-size: 12px; }} .scores, .id {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Candidate <b>{html.escape(r.model_name)} v{c['version']}</b> (policy {html.escape(str(c.get('policy_version')))},
from {html.escape(str(c.get('policy_source')))}), served as Triton model {html.escape(str(c.get('triton_model')))};
range {html.escape(str(r.range.get('text')))} on {html.escape(str(r.range.get('topic')))}. No decision was published
and nothing was written to the ledger.</p>
<p>{summary['records']} records: {summary['replayed']} replayed, <b>{summary['compared']} compared</b> with
production, {r.changed} changed; skipped: {html.escape(skipped)}.</p>
<h2>Transitions (production → candidate)</h2>{matrix}
<h2>By category (the rule that fired for the stricter decision)</h2>{categories}
<h2>Rates</h2>{rates}
<h2>Reviewer outcomes</h2>{agreement}
<h2>Largest score changes</h2><div class="grid">{cards}</div>
</body></html>
"""


def _thumb(data: bytes | None, post_id: str) -> str:
    if not data:
        return "<div>(image unavailable)</div>"
    return f'<img src="{jpeg_data_uri(data)}" alt="{html.escape(post_id, quote=True)}">'


def write_report(report: ShadowReport, thumbnails: dict[str, bytes], out_dir: Path) -> ShadowReport:
    """Write shadow-report.json and .html into ``out_dir``; the report with their paths in ``files``."""
    from tagwatch.output import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out_dir / JSON_NAME), "html": str(out_dir / HTML_NAME)}
    report = report.model_copy(update={"files": {**report.files, **files}})
    write_text_atomic(out_dir / HTML_NAME, render_html(report, thumbnails))
    write_text_atomic(out_dir / JSON_NAME, report.model_dump_json(indent=1))
    return report


def report_prefix(model_name: str, version: int) -> str:
    return f"{REPORTS_PREFIX}/{model_name}/{version:06d}/"


def upload_report(s3, bucket: str, report: ShadowReport, out_dir: Path) -> ShadowReport:
    """Upload both files next to each other (the JSON last, naming the HTML); the report with the S3 URIs."""
    stem = f"{report_prefix(report.model_name, report.candidate['version'])}" \
           f"{report.created_at.strftime('%Y%m%dT%H%M%S')}-{report.run_id}"
    uris = {"s3_json": f"s3://{bucket}/{stem}.json", "s3_html": f"s3://{bucket}/{stem}.html"}
    report = report.model_copy(update={"files": {**report.files, **uris}})
    s3.put_object(Bucket=bucket, Key=f"{stem}.html", Body=(out_dir / HTML_NAME).read_bytes(), ContentType="text/html")
    body = report.model_dump_json(indent=1)
    (out_dir / JSON_NAME).write_text(body)
    s3.put_object(Bucket=bucket, Key=f"{stem}.json", Body=body.encode(), ContentType="application/json")
    return report


def latest_report(s3, bucket: str, model_name: str, version: int) -> dict | None:
    """The newest shadow report of ``version`` in S3 (keys sort by time), or None."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=report_prefix(model_name, version)):
        keys.extend(o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json"))
    if not keys:
        return None
    return json.loads(s3.get_object(Bucket=bucket, Key=max(keys))["Body"].read())
