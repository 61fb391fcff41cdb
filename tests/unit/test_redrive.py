"""DLQ re-drive logic without services: envelopes round trip, selection, the redrive count, the plan."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from tagwatch.errors import ConfigError, TagwatchError
from tagwatch.moderation.claims import ClaimStore, RecordAddress, RedriveClaim
from tagwatch.moderation.deadletter import build_dead_letter
from tagwatch.moderation.dlq import (REDRIVE_COUNT_HEADER, count_by_reason, describe, find, parse_entries,
                                     parse_since, redrive_count, select, valid_reason)
from tagwatch.moderation.redrive import (ALREADY, AT_MAX, DUPLICATE, FAILED, RedriveReport, Outcome, plan_redrive,
                                         redriven_headers)

HEADERS = [("ce_specversion", b"1.0"), ("ce_type", b"tagwatch.post.created"), ("odd", b"\xff\x00bytes"),
           ("empty", b"")]


def _record(offset: int, *, key=b"post-1", value=b'{"post_id": "post-1"}', headers=HEADERS, partition=0):
    return SimpleNamespace(topic="posts", partition=partition, offset=offset, key=key, value=value, headers=headers)


def _dlq(entries_spec):
    """DLQ records (as kafka-python gives them) for (offset, original record, reason, last_seen) tuples."""
    records = []
    for dlq_offset, (original, reason, seen) in enumerate(entries_spec):
        letter = build_dead_letter(original, reason, "boom", first_seen=seen)
        letter = letter.model_copy(update={"last_seen": seen})
        records.append(SimpleNamespace(partition=0, offset=dlq_offset, key=original.key,
                                       value=letter.model_dump_json().encode()))
    return parse_entries(records, "dlq")


NOW = datetime(2026, 12, 1, 4, 0, tzinfo=timezone.utc)


def test_the_original_comes_back_byte_for_byte_and_the_count_header_is_set_or_raised():
    [entry] = _dlq([(_record(5), "image_missing", NOW)])
    original = entry.embedded_original()
    assert (original.key, original.value, original.headers) == (b"post-1", b'{"post_id": "post-1"}', HEADERS)
    assert entry.post_id == "post-1" and entry.letter.offset == 5
    assert redrive_count(original.headers) == 0
    first = redriven_headers(original.headers, 1)
    assert first == [*HEADERS, (REDRIVE_COUNT_HEADER, b"1")]  # every original header untouched, in order
    # a re-driven record that dead-letters again keeps its headers (the count) in the new envelope
    [again] = _dlq([(_record(9, headers=first), "image_missing", NOW)])
    assert again.embedded_original().headers == first and redrive_count(first) == 1
    second = redriven_headers(first, 2)
    assert second == [*HEADERS, (REDRIVE_COUNT_HEADER, b"2")]  # raised in place, not duplicated


def test_tombstones_and_keyless_records_survive():
    [entry] = _dlq([(_record(1, key=None, value=None, headers=[]), "bad_json", NOW)])
    original = entry.embedded_original()
    assert (original.key, original.value, original.headers) == (None, None, [])
    assert entry.post_id is None


def test_a_bad_count_header_is_an_error():
    with pytest.raises(ValueError):
        redrive_count([(REDRIVE_COUNT_HEADER, b"many")])
    with pytest.raises(ValueError):
        redrive_count([(REDRIVE_COUNT_HEADER, b"-1")])


def test_selection_by_reason_and_time():
    entries = _dlq([(_record(0), "image_missing", NOW - timedelta(hours=3)),
                    (_record(1), "image_missing", NOW - timedelta(minutes=10)),
                    (_record(2), "bad_json", NOW)])
    assert [e.offset for e in select(entries, reason="image_missing")] == [0, 1]
    since = parse_since("1h", now=NOW)
    assert [e.offset for e in select(entries, reason="image_missing", since=since)] == [1]
    assert [e.offset for e in select(entries, since=since)] == [1, 2]
    assert count_by_reason(entries) == {"image_missing": 2, "bad_json": 1}


def test_since_accepts_durations_and_iso_times():
    assert parse_since("30m", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_since("7d", now=NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-12-01T03:00:00") == datetime(2026, 12, 1, 3, tzinfo=timezone.utc)
    assert parse_since("2026-12-01T03:00:00+01:00").utcoffset() == timedelta(hours=1)
    with pytest.raises(ConfigError):
        parse_since("yesterday")


def test_an_unknown_reason_lists_the_valid_ones():
    assert valid_reason("image_missing") == "image_missing"
    with pytest.raises(ConfigError) as caught:
        valid_reason("image_gone")
    assert caught.value.exit_code == 3 and "image_missing" in caught.value.hint and "bad_json" in caught.value.hint


def test_find_by_address_offset_or_post():
    entries = _dlq([(_record(0, key=b"a"), "image_missing", NOW), (_record(1, key=b"b"), "bad_json", NOW)])
    assert [e.offset for e in find(entries, "0:1")] == [1]
    assert [e.offset for e in find(entries, "1")] == [1]
    assert [e.offset for e in find(entries, "a")] == [0]
    assert find(entries, "7") == [] and find(entries, "zzz") == []
    shown = describe(entries[0], entries[0].embedded_original())
    assert shown["original_value"] == {"post_id": "post-1"} and shown["original_headers"]["ce_specversion"] == "1.0"
    assert shown["original_headers"]["odd"].startswith("base64:") and shown["dlq"] == {"topic": "dlq", "partition": 0,
                                                                                       "offset": 0}


def _claim(dlq_offset: int, original_offset: int) -> RedriveClaim:
    return RedriveClaim(dead_letter=RecordAddress(topic="dlq", partition=0, offset=dlq_offset),
                        original=RecordAddress(topic="posts", partition=0, offset=original_offset), post_id="x",
                        reason="image_missing", redrive_count=1, claimed_by="me", claimed_at=NOW, run_id="r")


def test_the_plan_skips_claimed_duplicates_and_records_at_the_maximum():
    at_max = redriven_headers(HEADERS, 3)
    entries = _dlq([
        (_record(10), "image_missing", NOW),                # 0: fresh -> planned, count 1
        (_record(11), "image_missing", NOW),                # 1: already claimed
        (_record(12), "image_missing", NOW),                # 2: its original re-driven from another dead letter
        (_record(13, headers=at_max), "image_missing", NOW),  # 3: count would be 4 > 3: stays dead
        (_record(10), "image_missing", NOW),                # 4: the same original as 0, dead-lettered twice
        (_record(14, headers=redriven_headers(HEADERS, 2)), "image_missing", NOW),  # 5: -> count 3, allowed
        (_record(15, headers=[(REDRIVE_COUNT_HEADER, b"x")]), "image_missing", NOW),  # 6: unreadable count
    ])
    claims = {(0, 1): _claim(1, 11), (0, 99): _claim(99, 12)}
    planned, skipped = plan_redrive(entries, claims, lambda e: e.embedded_original(), max_redrives=3, at=NOW)
    assert [(p.entry.offset, p.count) for p in planned] == [(0, 1), (5, 3)]
    assert planned[1].original.headers == redriven_headers(HEADERS, 2)
    assert {o.dlq_offset: o.status for o in skipped} == {1: ALREADY, 2: DUPLICATE, 3: AT_MAX, 4: DUPLICATE, 6: FAILED}
    at = next(o for o in skipped if o.status == AT_MAX)
    assert at.redrive_count == 3 and "stays dead" in at.detail
    planned, _ = plan_redrive(entries[:1], {}, lambda e: e.embedded_original(), max_redrives=1)
    assert [p.count for p in planned] == [1]


def test_a_stale_unpublished_claim_is_taken_over_and_a_fresh_or_published_one_is_not():
    entries = _dlq([(_record(20), "image_missing", NOW), (_record(21), "image_missing", NOW),
                    (_record(22), "image_missing", NOW)])
    published = _claim(2, 22).model_copy(update={"published": RecordAddress(topic="posts", partition=0, offset=99),
                                                 "published_at": NOW})
    claims = {(0, 0): _claim(0, 20), (0, 1): _claim(1, 21), (0, 2): published}
    load = lambda e: e.embedded_original()  # noqa: E731
    planned, skipped = plan_redrive(entries, claims, load, max_redrives=3, stale_claim_s=600,
                                    at=NOW + timedelta(seconds=599))
    assert planned == [] and [o.status for o in skipped] == [ALREADY] * 3
    assert "taken over once unpublished for 600 s" in skipped[0].detail
    planned, skipped = plan_redrive(entries, claims, load, max_redrives=3, stale_claim_s=600,
                                    at=NOW + timedelta(seconds=601))
    assert [(p.entry.offset, p.replaces) for p in planned] == [(0, claims[(0, 0)]), (1, claims[(0, 1)])]
    assert [(o.dlq_offset, o.status) for o in skipped] == [(2, ALREADY)]  # published: never again


def test_an_unreadable_original_is_a_failed_outcome_not_a_crash():
    entries = _dlq([(_record(1), "image_missing", NOW)])

    def load(_entry):
        raise TagwatchError("original at s3://ledger/x is unreadable")

    planned, skipped = plan_redrive(entries, {}, load, max_redrives=3)
    assert planned == [] and skipped[0].status == FAILED and "unreadable" in skipped[0].detail
    report = RedriveReport(reason="image_missing", dry_run=False, max_redrives=3, selected=1, outcomes=skipped)
    assert not report.ok and report.to_dict()["counts"] == {FAILED: 1}
    assert RedriveReport(reason="r", dry_run=True, max_redrives=3,
                         outcomes=[Outcome(0, 1, "p", "would_redrive", 1)]).ok


def test_claim_keys_are_per_dead_letter_and_findable_by_post():
    address = RecordAddress(topic="t1.dlq", partition=2, offset=40)
    assert ClaimStore.key(address) == "redrives/t1.dlq/2/40.json"
    assert ClaimStore.marker_key("a/b c", address) == "redrives/by-post/a%2Fb%20c/t1.dlq/2/40.json"


def test_cli_help_has_examples_and_an_unknown_reason_is_one_error_line_exit_3(tmp_path):
    from tests.conftest import run_cli
    from tests.unit.test_cli import _env, _one_line_error

    for command in (("dlq", "list"), ("dlq", "show"), ("dlq", "redrive"), ("ledger", "redrives")):
        result = run_cli(*command, "--help", env=_env(tmp_path, COLUMNS="200"))
        assert result.returncode == 0 and "Example: tagwatch" in result.stdout, (command, result.stdout)
    result = run_cli("dlq", "redrive", "--reason", "image_gone", env=_env(tmp_path))
    assert result.returncode == 3
    _one_line_error(result, "unknown dead-letter reason 'image_gone'", "image_missing")
    result = run_cli("dlq", "list", "--since", "yesterday", env=_env(tmp_path))
    assert result.returncode == 3
    _one_line_error(result, "--since", "2h")


def test_the_plain_text_list_and_report():
    from tagwatch.moderation.dlq_cli import _render, _row, _table

    entries = _dlq([(_record(3, headers=redriven_headers(HEADERS, 2)), "image_missing", NOW)])
    claim = _claim(0, 3).model_copy(update={"published": RecordAddress(topic="posts", partition=1, offset=77)})
    lines = _table([_row(entries[0], claim), _row(entries[0], None)]).splitlines()
    assert lines[0].split() == ["dlq", "reason", "post_id", "attempts", "first_seen", "last_seen", "redrives", "redriven"]
    assert lines[1].split()[:3] == ["0:0", "image_missing", "post-1"] and lines[1].endswith("-> 1:77")
    assert lines[1].split()[6] == "2" and lines[2].endswith(" -")
    report = RedriveReport(reason="image_missing", dry_run=False, max_redrives=3, selected=1,
                           outcomes=[Outcome(0, 0, "post-1", "redriven", 3, published={"partition": 1, "offset": 77})])
    assert _render(report).splitlines() == ["0:0 post-1: redriven count 3 -> 1:77", "1 selected: redriven 1"]
    assert "nothing done" in _render(RedriveReport(reason="image_missing", dry_run=False, max_redrives=3))


def test_an_original_stored_by_reference_comes_back_from_s3_byte_for_byte():
    """A dict stands in for the bucket: storing by reference is on the real stack in test_moderation_stream, reading
    it back for a re-drive only here."""
    import io

    from tagwatch.moderation.dlq import load_original

    stored: dict[str, bytes] = {}

    def store(letter) -> str:
        stored["dead-letters/posts/0/8.json"] = letter.model_dump_json().encode()
        return "s3://ledger/dead-letters/posts/0/8.json"

    big = b'{"post_id": "post-1", "caption": "' + b"x" * 40_000 + b'"}'
    letter = build_dead_letter(_record(8, value=big), "invalid_post", "too long", max_bytes=16_384, store_original=store)
    assert letter.original_ref and letter.original_value_b64 is None
    [entry] = parse_entries([SimpleNamespace(partition=0, offset=4, key=b"post-1",
                                             value=letter.model_dump_json().encode())], "dlq")
    assert entry.by_reference and entry.post_id == "post-1"  # from the DLQ record's own key
    s3 = SimpleNamespace(get_object=lambda Bucket, Key: {"Body": io.BytesIO(stored[Key])})
    original = load_original(s3, entry)
    assert (original.key, original.value, original.headers) == (b"post-1", big, HEADERS)
