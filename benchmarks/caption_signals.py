"""How the caption signals score a small hand-labelled probe set, and what they cost per caption. One JSON line.

No labelled offensive-language or spam captions exist on this machine or inside any package installed here
(checked: the venv's site-packages, /usr/share, nltk data, the wheels of sms-spam-detection, hatesonar and
hate-speech-detector, which ship models, not data). So ``benchmarks/data/caption_probe.jsonl`` is a probe set written
by hand for this measurement (107 captions, 7 groups): it shows *what kind* of text each signal catches and
misses, with Wilson 95 % intervals that are wide on purpose. It is not a sample of real traffic and no threshold
should be calibrated on it; that is why both signals default to monitor mode.

  offensive          English profanity and insults                     (what caption.offensive should flag)
  hate_coded         hate said politely or in code (no profanity)       (what it is expected to miss)
  non_english_abuse  insults in German, Spanish, French, Italian, ...   (expected to miss)
  benign             ordinary captions, some with violent idioms ("killer workout")
  benign_profane     friendly swearing ("fucking love this beach")      (it flags these: offensive, not abusive)
  spam               link shorteners, bait phrases, hashtag stuffing, repetition
  benign_links       ordinary captions with a link or a few hashtags

    PYTHONPATH=$PWD/src .venv/bin/python benchmarks/caption_signals.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tagwatch.moderation.signals import build_text_signals
from tagwatch.stats import wilson

PROBE = Path(__file__).resolve().parent / "data" / "caption_probe.jsonl"


def _ci(hits: int, n: int) -> str:
    e = wilson(hits, n)
    return f"{e.value:.2f} [{e.low:.2f}, {e.high:.2f}] ({hits}/{n})"


def _flag_rates(rows, scores, threshold) -> dict[str, str]:
    groups = sorted({r["label"] for r in rows})
    return {g: _ci(sum(s >= threshold for r, s in zip(rows, scores) if r["label"] == g),
                   sum(r["label"] == g for r in rows)) for g in groups}


def _precision_recall(rows, scores, threshold, positive: set[str], negative: set[str]) -> dict[str, str]:
    flagged = [(r["label"], s >= threshold) for r, s in zip(rows, scores) if r["label"] in positive | negative]
    tp = sum(f and lab in positive for lab, f in flagged)
    fp = sum(f and lab in negative for lab, f in flagged)
    pos = sum(lab in positive for lab, _ in flagged)
    return {"precision": _ci(tp, tp + fp), "recall": _ci(tp, pos)}


def _cost_us(signal, texts, repeats: int = 20) -> float:
    batch = (texts * (128 // len(texts) + 1))[:128]  # one consumer batch of captions
    signal.score(batch)
    t0 = time.perf_counter()
    for _ in range(repeats):
        signal.score(batch)
    return round(1e6 * (time.perf_counter() - t0) / (repeats * len(batch)), 1)


def main() -> None:
    rows = [json.loads(line) for line in PROBE.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] for r in rows]
    t0 = time.perf_counter()
    offensive, spam = build_text_signals(["caption.offensive", "caption.spam"])
    load_s = time.perf_counter() - t0
    off = [s.scores["offensive_text"] for s in offensive.score(texts)]
    spa = [s.scores["spam"] for s in spam.score(texts)]
    benign = {"benign", "benign_links"}
    out = {"benchmark": "caption_signals", "probe": PROBE.name, "captions": len(rows),
           "caption.offensive": {"version": offensive.version, "model_load_s": round(load_s, 2),
                                 "us_per_caption_batch128": _cost_us(offensive, texts)},
           "caption.spam": {"version": spam.version, "us_per_caption_batch128": _cost_us(spam, texts)}}
    for threshold in (0.5, 0.8, 0.9):
        out["caption.offensive"][f"at_{threshold}"] = {
            **_precision_recall(rows, off, threshold, {"offensive"}, benign),
            "flag_rate_by_group": _flag_rates(rows, off, threshold)}
    for threshold in (0.4, 0.6):
        out["caption.spam"][f"at_{threshold}"] = {
            **_precision_recall(rows, spa, threshold, {"spam"}, benign | {"benign_profane"}),
            "flag_rate_by_group": _flag_rates(rows, spa, threshold)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
