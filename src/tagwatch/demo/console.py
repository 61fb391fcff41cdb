"""The demo's summary in the terminal: Rich tables that stay readable at 80 columns (what a plain terminal, a pipe
or a CI log gives). Long reasons wrap inside their cell; nothing here is meant to be parsed (summary.json is)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tagwatch.demo.summary import consent_text


def fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def fmt_ci(estimate: dict[str, Any] | None, digits: int = 2) -> str:
    """``0.64 [0.41–0.83]``; ``–`` when there is nothing to estimate."""
    if not estimate or estimate.get("value") is None:
        return "–"
    value, low, high = estimate["value"], estimate.get("low"), estimate.get("high")
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}–{high:.{digits}f}]"


def fmt_rate_ci(estimate: dict[str, Any] | None) -> str:
    """A share of posts in percent: ``4.3 % [3.1–5.9]``."""
    if not estimate or estimate.get("value") is None:
        return "–"
    text = f"{100 * estimate['value']:.1f} %"
    if estimate.get("low") is not None and estimate.get("high") is not None:
        text += f" [{100 * estimate['low']:.1f}–{100 * estimate['high']:.1f}]"
    return text


def overall_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows of the holdout's overall figures: the review rate against the budget first."""
    review, stream = s["review_rate"], s["review_rate_stream"]
    budget = review.get("budget")
    natural = "natural traffic (est.)" if s["weighted"] else "unweighted: no split rates"
    verdict = "" if review.get("within_budget") is None else ("within" if review["within_budget"] else "OVER")
    budget_text = "" if budget is None else f" vs budget {100 * budget:.1f} % ({verdict})"
    return [
        (f"review rate, {natural}", fmt_rate_ci(review) + budget_text),
        ("review share of this stream (raw)",
         f"{fmt_rate_ci(stream)}: {stream.get('reviewed', 0)} of {s['holdout_posts']} held-out posts"),
        (f"remove rate, {natural}", fmt_rate_ci(s["remove_rate"])),
        ("auto-remove precision", fmt_ci(s["remove_precision"])),
        ("recall, moderation positives", f"{fmt_ci(s['recall'])} (n {fmt(s['recall'].get('n'), 0)})"),
        ("population", s["population"]),
        ("policy", f"{s['policy'].get('version')}: {constraints_text(s['policy'].get('constraints', {}))}"),
    ]


def constraints_text(c: dict[str, Any]) -> str:
    if not c:
        return "no constraints recorded (a v1 policy)"
    return (f"review budget {100 * c.get('review_budget', 0):.1f} %, auto-remove if the "
            f"{100 * c.get('confidence', 0.95):.0f} % lower bound of precision >= {c.get('remove_precision')}, "
            f"act with >= {c.get('min_positives')} calibration positives")


def category_rows(name: str, c: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(category, figure, value [CI], chance) rows for one category, mode first."""
    mode = c["mode"]
    rows = [(name, "mode", mode + (f": {c['reason']}" if mode == "monitor" and c.get("reason") else ""), "")]
    rows.append(("", f"AP ({c['positives']} pos)", fmt_ci(c["ap"]), fmt(c.get("chance_ap"))))
    if mode == "act":
        review = c.get("review_rate") or {}
        rows += [
            ("", "precision", fmt_ci(c["precision"]), fmt(c.get("chance"))),
            ("", "recall", fmt_ci(c["recall"]), fmt(c.get("chance_recall"))),
            ("", "review share", f"{fmt_rate_ci(review)} ({c['flagged']} flagged)", ""),
            ("", "auto-remove", f"precision {fmt_ci(c['remove_precision'])} ({c['removed']} removed)"
             if c.get("remove_enabled") else f"off: {c.get('remove_reason') or 'no remove threshold'}", ""),
        ]
    elif mode == "monitor":
        rows.append(("", "monitor hits", f"{c.get('monitor_hits_stream', c.get('monitor_hits', 0))} not actioned, "
                     f"precision {fmt_ci(c.get('monitor_precision'))}", fmt(c.get("chance"))))
    return rows


def holdout_tables(s: dict[str, Any]) -> list[Table]:
    """The overall figures and the per-category table of a summary that carries the holdout block."""
    level = f"{100 * s['confidence']:.0f} % CI"
    overall = Table(title=f"decisions on the holdout ({level} in brackets)")
    overall.add_column("figure")
    overall.add_column("value")
    for row in overall_rows(s):
        overall.add_row(*row)
    per = Table(title=f"per category on the holdout ({level}; chance: prevalence, flag rate, base rate)")
    for column, justify in (("category", "left"), ("figure", "left"), ("value [CI]", "left"), ("chance", "right")):
        per.add_column(column, justify=justify)
    for n, (name, c) in enumerate(s["categories"].items()):
        if n:
            per.add_section()
        for row in category_rows(name, c):
            per.add_row(*row)
    return [overall, per]


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    s = summary
    stream = Table(title=f"tagwatch demo ({s['mode']}): {s['model']['name']} v{s['model']['version']}, "
                         f"wall time {s['wall_seconds']:.0f}s")
    stream.add_column("stream")
    stream.add_column("value", justify="right")
    stream.add_row("posts published", str(s["posts"]))
    stream.add_row("decided", str(s["decided"]))
    stream.add_row("dead-lettered", str(s["dead_lettered"]))
    stream.add_row("lost", ("[green]0[/]" if not s["lost"] else f"[red]{s['lost']}[/]"))
    for action, n in s["actions"].items():
        stream.add_row(f"  {action}", str(n))
    for reason, n in s["dlq_by_reason"].items() or {"(none)": 0}.items():
        stream.add_row(f"  DLQ {reason}", str(n))
    stream.add_row("throughput", f"{fmt(s['throughput_posts_s'], 1)} posts/s")
    stream.add_row("latency p50 / p99", f"{fmt(s['latency_ms']['p50'], 0)} / {fmt(s['latency_ms']['p99'], 0)} ms")
    console.print(stream)
    console.print(consent_text(s.get("consent")))
    if "review_rate" in s:
        for table in holdout_tables(s):
            console.print(table)
    times = Table(title="stage times (s)")
    times.add_column("stage")
    times.add_column("seconds", justify="right")
    for name, seconds in s.get("stage_seconds", {}).items():
        times.add_row(name, f"{seconds:.1f}")
    for name, seconds in s.get("training", {}).get("step_seconds", {}).items():
        times.add_row(f"  training: {name}", f"{seconds:.1f}")
    console.print(times)
