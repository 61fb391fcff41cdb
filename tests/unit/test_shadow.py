"""Shadow replay's pure parts: the decision diff, the range, the candidate's name, the report and the gate."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from types import SimpleNamespace

import jsonschema
import pytest
from PIL import Image

from tagwatch.errors import ConfigError, EmptyRangeError
from tagwatch.pipeline.gate import shadow_check
from tagwatch.schemas import load_schema
from tagwatch.settings import GateSettings
from tagwatch.shadow.candidate import parse_candidate
from tagwatch.shadow.diff import NoReviewerOutcomes, Pair, Side, diff, fired_category, top_changed
from tagwatch.shadow.replay import ReplayResult
from tagwatch.shadow.report import build_report, render_html, write_report
from tagwatch.shadow.source import ReplayRange, ledger_window, offsets_range

pytestmark = pytest.mark.unit


def pair(n: int, production: str, candidate: str, *, prod_reason: str = "", cand_reason: str = "",
         change: float = 0.0) -> Pair:
    return Pair(f"p{n:03d}", f"s3://posts/{n}.jpg",
                Side(production, {"weapons": 0.5, "alcohol": 0.1}, [prod_reason] if prod_reason else []),
                Side(candidate, {"weapons": 0.5 + change, "alcohol": 0.1}, [cand_reason] if cand_reason else []))


def test_transitions_categories_and_rates_add_up() -> None:
    pairs = ([pair(i, "allow", "remove", cand_reason="policy:weapons>=0.500 (0.6)", change=0.1) for i in range(6)]
             + [pair(10 + i, "remove", "allow", prod_reason="bank:default:e1 (x; distance 3)") for i in range(2)]
             + [pair(20 + i, "review", "review", prod_reason="policy:alcohol>=0.3 (0.4)") for i in range(4)]
             + [pair(30 + i, "allow", "allow") for i in range(28)])
    d = diff(pairs, resamples=200)
    assert d["compared"] == 40 and d["changed"] == 8
    assert d["transitions"] == {"allow->allow": 28, "allow->remove": 6, "review->review": 4, "remove->allow": 2}
    assert d["matrix"]["allow"] == {"allow": 28, "review": 0, "remove": 6}
    assert d["by_category"] == {"alcohol": {"review->review": 4}, "bank": {"remove->allow": 2},
                                "none": {"allow->allow": 28}, "weapons": {"allow->remove": 6}}
    remove = d["rates"]["remove"]
    assert remove["production"]["value"] == pytest.approx(2 / 40)
    assert remove["candidate"]["value"] == pytest.approx(6 / 40)
    assert remove["delta"]["value"] == pytest.approx(4 / 40)
    assert remove["delta"]["low"] < 0.1 < remove["delta"]["high"]  # 6 up, 2 down on 40: the CI straddles 0
    assert d["rates"]["review"]["delta"]["value"] == 0
    assert d["reviewer_agreement"] is None and "no reviewer outcomes" in d["reviewer_note"]
    assert [p.post_id for p in top_changed(pairs, 3)] == ["p000", "p001", "p002"]


def test_fired_category_prefers_the_bank_and_the_first_rule() -> None:
    assert fired_category(Side("remove", {}, ["bank:b:1 (r; distance 0)"])) == "bank"
    assert fired_category(Side("review", {}, ["policy:violence>=0.500 (0.7)", "policy:weapons>=0.5 (0.6)"])) == "violence"
    assert fired_category(Side("allow", {}, ["monitor:alcohol>=0.1 (0.2; not actioned)"])) == "none"


def test_reviewer_outcomes_plug_in() -> None:
    class Reviewers:
        recorded = True

        def outcome(self, post_id):
            return {"p000": "remove", "p001": "allow"}.get(post_id)

    d = diff([pair(0, "allow", "remove"), pair(1, "allow", "remove"), pair(2, "allow", "allow")],
             reviewers=Reviewers(), resamples=50)
    assert d["reviewer_agreement"]["reviewed"] == 2
    assert d["reviewer_agreement"]["production"]["value"] == 0.5 and d["reviewer_agreement"]["candidate"]["value"] == 0.5
    assert not NoReviewerOutcomes().recorded


def record(partition: int, offset: int, timestamp: int = 0):
    return SimpleNamespace(partition=partition, offset=offset, timestamp=timestamp)


def test_offset_time_and_ledger_ranges() -> None:
    offsets = offsets_range("5", "8")
    assert [o for o in range(12) if offsets.keeps(record(0, o))] == [5, 6, 7]
    assert offsets.passed(record(1, 7)) and not offsets.passed(record(1, 6))
    times = offsets_range("2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z")
    t0 = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
    assert times.keeps(record(0, 1, t0)) and not times.keeps(record(0, 1, t0 + 60_000))
    assert not times.keeps(record(0, 1, t0 - 1)) and times.passed(record(0, 9, t0 + 60_000))
    ledger = ReplayRange(records={1: frozenset({4, 9})})
    assert ledger.keeps(record(1, 9)) and not ledger.keeps(record(0, 9)) and not ledger.keeps(record(1, 5))
    assert ledger.passed(record(1, 9)) and not ledger.passed(record(1, 8))
    with pytest.raises(EmptyRangeError) as empty:
        offsets_range("8", "8")
    assert empty.value.exit_code == 16 and empty.value.hint
    with pytest.raises(ConfigError):
        offsets_range("3", "2026-01-01T00:00:00Z")
    with pytest.raises(ConfigError):
        ledger_window("yesterday")
    low, high = ledger_window("2h..")
    assert (high - low).total_seconds() == pytest.approx(7200, abs=5)


def test_candidate_names_this_registry_model() -> None:
    registry = SimpleNamespace(model_name="tagwatch-moderation",
                               resolve=lambda ref: (SimpleNamespace(version=int(ref)), "d" * 64))
    assert parse_candidate("tagwatch-moderation@3", registry).version == 3
    with pytest.raises(ConfigError, match="this registry serves 'tagwatch-moderation'") as other:
        parse_candidate("other-model@3", registry)
    assert other.value.exit_code == 3 and "tagwatch-moderation@3" in other.value.hint
    with pytest.raises(ConfigError, match="MODEL@VERSION"):
        parse_candidate("tagwatch-moderation", registry)


def test_report_validates_against_its_schema_and_inlines_thumbnails(tmp_path) -> None:
    from tagwatch.demo.report import jpeg_thumbnail

    pairs = [pair(i, "allow", "review", cand_reason="policy:weapons>=0.5 (0.6)", change=0.2) for i in range(3)]
    result = ReplayResult(records=5, pairs=pairs, skipped=Counter(no_production_decision=1, dead_letter=1))
    report = build_report(run_id="r1", created_at=datetime.now(timezone.utc), model_name="m",
                          candidate={"version": 2, "policy_version": "p2", "policy_source": "registry:m@2",
                                     "triton_model": "m-shadow"},
                          range_={"mode": "offsets", "text": "--from 0 --to 5", "topic": "t"}, result=result,
                          diff=diff(pairs, resamples=50), top=top_changed(pairs, 2), seconds=1.0)
    thumb = jpeg_thumbnail(Image.new("RGB", (300, 200), (200, 10, 10)), 96)
    written = write_report(report, {"p000": thumb}, tmp_path)
    data = written.model_dump(mode="json")
    jsonschema.validate(data, load_schema("shadow-report.v1.json"))
    assert data["summary"]["skipped"] == {"no_production_decision": 1, "image_unavailable": 0, "dead_letter": 1,
                                          "duplicate": 0}
    assert data["summary"]["replayed"] == 4 and data["summary"]["compared"] == 3
    page = (tmp_path / "shadow-report.html").read_text()
    assert page.count('src="data:image/jpeg;base64,') == 1 and "allow-&gt;review" in page
    assert "(image unavailable)" in page  # the second example had no thumbnail
    assert "no reviewer outcomes are recorded" in render_html(written, {})


def shadow_report(remove: tuple, review: tuple, compared: int = 200) -> dict:
    def est(values):
        return {"value": values[0], "low": values[1], "high": values[2], "n": compared}

    return {"summary": {"compared": compared}, "rates": {"remove": {"delta": est(remove)},
                                                         "review": {"delta": est(review)}}}


def test_gate_requires_a_shadow_report_within_the_limits() -> None:
    limits = GateSettings(require_shadow=True, max_remove_rate_increase=0.02, max_review_rate_increase=0.05)
    assert shadow_check(None, version=4, limits=GateSettings())[0]  # not required: passes without a report
    ok, reason = shadow_check(None, version=4, limits=limits)
    assert not ok and "no shadow report of version 4" in reason and "MODEL@4" in reason
    ok, reason = shadow_check(shadow_report((0.01, -0.005, 0.03), (0.0, -0.01, 0.01)), version=4, limits=limits)
    assert ok and "within the limit of +0.020" in reason
    ok, reason = shadow_check(shadow_report((0.03, 0.015, 0.05), (0.0, -0.01, 0.01)), version=4, limits=limits)
    assert ok and "over, but within the noise of, the limit of +0.020" in reason
    ok, reason = shadow_check(shadow_report((0.06, 0.04, 0.08), (0.0, -0.01, 0.01)), version=4, limits=limits)
    assert not ok and "remove rate change +0.060" in reason and "beyond the CI" in reason
    ok, reason = shadow_check(shadow_report((0.0, 0.0, 0.0), (0.09, 0.06, 0.12)), version=4, limits=limits)
    assert not ok and "review rate change +0.090" in reason
    ok, reason = shadow_check(shadow_report((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), compared=0), version=4, limits=limits)
    assert not ok and "compared 0 post(s)" in reason
