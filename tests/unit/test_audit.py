"""The stream audit's checks on hand-built records: each finding is produced when the promise breaks."""

from __future__ import annotations

from tagwatch.moderation.audit import DeadLetterEvent, DecisionEvent, PostRecord, audit_records

TOPIC = "t.posts"
MODEL = {"name": "m", "version": "1", "sha256": "a" * 64}


def _event(post_id, position, *, decision_id=None, action="allow", scores=None, model=MODEL, policy="p1", source=None):
    return DecisionEvent(post_id=post_id, decision_id=decision_id or f"id-{post_id}", action=action,
                         scores=scores or {"red": 0.25}, model=dict(model), policy_version=policy,
                         position=position, source=source)


def _ledger(event: DecisionEvent) -> dict:
    return {"decision_id": event.decision_id, "post_id": event.post_id, "action": event.action,
            "scores": dict(event.scores), "model": dict(event.model), "policy_version": event.policy_version,
            "reasons": [], "decided_at": "2026-01-01T00:00:00Z"}


def _audit(posts, decisions, letters=(), ledger=None, committed=None, expected=None):
    ledger = {e.post_id: _ledger(e) for e in decisions} if ledger is None else ledger
    return audit_records(posts=list(posts), decisions=list(decisions), dead_letters=list(letters), ledger=ledger,
                         committed=committed or {}, posts_topic=TOPIC, expected=expected)


def test_a_clean_run_is_ok_and_counts_what_it_saw():
    posts = [PostRecord(0, 0, "a"), PostRecord(0, 1, None), PostRecord(1, 0, "b")]
    decisions = [_event("a", (0, 0)), _event("b", (1, 0))]
    report = _audit(posts, decisions, [DeadLetterEvent("bad_json", TOPIC, 0, 1)], committed={0: 2, 1: 1},
                    expected={"a", "b"})
    assert report.ok, report
    assert (report.posts_expected, report.posts_seen, report.records_seen) == (2, 2, 3)
    assert (report.decided, report.dead_lettered, report.lost, report.ledger_records) == (2, 1, 0, 2)
    assert report.dead_letters_by_reason == {"bad_json": 1}
    assert report.to_dict()["committed"] == {"0": 2, "1": 1}


def test_a_post_neither_decided_nor_dead_lettered_is_lost():
    posts = [PostRecord(0, 0, "a"), PostRecord(0, 1, "b"), PostRecord(0, 2, None)]
    report = _audit(posts, [_event("a", (0, 0))])
    assert not report.ok
    assert report.lost == 2 and report.unhandled_records == 2
    assert report.lost_sample[0].startswith("b t.posts[0]@1")
    # with the publisher's ids: an acknowledged post absent from the topic's log is the broker's loss, said apart
    report = _audit(posts[:1], [_event("a", (0, 0))], expected={"a", "c"})
    assert not report.ok and report.lost == 0
    assert report.not_on_topic == 1 and report.not_on_topic_sample == ["c"]


def test_offsets_missing_inside_a_partition_log_are_reported():
    posts = [PostRecord(0, 0, "a"), PostRecord(0, 2, "b"), PostRecord(1, 0, "c")]
    report = _audit(posts, [_event("a", (0, 0)), _event("b", (0, 2)), _event("c", (1, 0))])
    assert report.topic_gaps == 1 and report.topic_gap_sample == ["t.posts[0]@1"]


def test_an_unparseable_record_is_matched_by_its_dead_letters_position_only():
    posts = [PostRecord(0, 5, None)]
    elsewhere = DeadLetterEvent("bad_json", "another.topic", 0, 5)  # same position, other topic: no match
    assert _audit(posts, [], [elsewhere]).lost == 1
    assert _audit(posts, [], [DeadLetterEvent("bad_json", TOPIC, 0, 4)]).lost == 1
    assert _audit(posts, [], [DeadLetterEvent("bad_json", TOPIC, 0, 5)]).lost == 0


def test_a_ledger_record_must_equal_the_earliest_decision_event():
    first = _event("a", (0, 3), action="allow", scores={"red": 0.25})
    later = _event("a", (0, 9), action="remove", scores={"red": 0.95})
    posts = [PostRecord(0, 0, "a")]
    # the ledger holds the later decision: a key count would say "one record", the content says otherwise
    report = _audit(posts, [later, first], ledger={"a": _ledger(later)})
    assert report.ledger_mismatches == 1 and not report.ok
    assert report.ledger_mismatch_sample == [{"post_id": "a", "fields": ["action", "scores"]}]
    assert _audit(posts, [later, first], ledger={"a": _ledger(first)}).ledger_mismatches == 0


def test_each_compared_field_is_checked():
    event = _event("a", (0, 0))
    for name, value in [("decision_id", "other"), ("action", "review"), ("scores", {"red": 0.5}),
                        ("scores", {"blue": 0.25}), ("model", {**MODEL, "sha256": "b" * 64}),
                        ("policy_version", "p2")]:
        record = _ledger(event) | {name: value}
        report = _audit([PostRecord(0, 0, "a")], [event], ledger={"a": record})
        assert report.ledger_mismatch_sample == [{"post_id": "a", "fields": [name]}], name
    nearly = _ledger(event) | {"scores": {"red": 0.25 + 1e-9}}  # float32 noise of a re-scored post
    assert _audit([PostRecord(0, 0, "a")], [event], ledger={"a": nearly}).ledger_mismatches == 0


def test_a_ledger_record_without_a_decision_event_and_a_decision_without_a_ledger_record():
    posts = [PostRecord(0, 0, "a"), PostRecord(0, 1, "b")]
    a, b = _event("a", (0, 0)), _event("b", (0, 1))
    report = _audit(posts, [a], [DeadLetterEvent("image_missing", TOPIC, 0, 1)], ledger={"a": _ledger(a), "b": _ledger(b)})
    assert report.ledger_mismatch_sample == [{"post_id": "b", "fields": ["no decision event"]}]
    report = _audit(posts, [a, b], ledger={"a": _ledger(a)})
    assert report.ledger_missing == 1 and not report.ok


def test_duplicates_are_counted_and_conflicting_ids_under_one_model_are_flagged():
    posts = [PostRecord(0, 0, "a"), PostRecord(0, 1, "b")]
    same = [_event("a", (0, 0)), _event("a", (0, 4)), _event("a", (0, 7))]
    report = _audit(posts, [*same, _event("b", (0, 1))])
    assert (report.duplicate_events, report.posts_with_duplicates, report.conflicting_decision_ids) == (2, 1, 0)
    assert report.ok  # at-least-once allows duplicates with the same id
    clash = [_event("b", (0, 1)), _event("b", (0, 2), decision_id="another")]
    report = _audit(posts, [same[0], *clash], ledger={"a": _ledger(same[0]), "b": _ledger(clash[0])})
    assert report.conflicting_decision_ids == 1 and report.conflicting_sample == ["b"] and not report.ok
    swapped = [_event("b", (0, 1)), _event("b", (0, 2), decision_id="another", model={**MODEL, "sha256": "c" * 64})]
    report = _audit(posts, [same[0], *swapped], ledger={"a": _ledger(same[0]), "b": _ledger(swapped[0])})
    assert report.conflicting_decision_ids == 0  # a new model may decide again, with a new id


def test_a_commit_past_an_undecided_record_is_a_violation():
    posts = [PostRecord(0, n, f"p{n}") for n in range(5)] + [PostRecord(1, 0, "q0")]
    decided = [_event(f"p{n}", (0, n)) for n in (0, 1, 3, 4)]  # p2 (offset 2) was skipped
    report = _audit(posts, decided, committed={0: 5})
    assert report.commit_violations == 1
    assert report.commit_violation_sample == [{"partition": 0, "offset": 2, "committed": 5, "post_id": "p2"}]
    # not committed past it (yet): lost for now, but no violation; partition 1 has no commit at all
    report = _audit(posts, decided, committed={0: 2})
    assert report.commit_violations == 0 and report.lost == 2


def test_a_decision_naming_its_source_position_covers_a_record_whose_post_id_repeats():
    # the same post id published twice; the decision's source says which record it decided
    posts = [PostRecord(0, 0, "a"), PostRecord(0, 1, "a")]
    report = _audit(posts, [_event("a", (0, 0), source=(0, 0))], committed={0: 2})
    assert report.ok and report.records_seen == 2
    event = DecisionEvent.from_dict({"post_id": "a", "decision_id": "x", "action": "allow", "scores": {},
                                     "model": MODEL, "policy_version": "p",
                                     "source": {"topic": TOPIC, "partition": 1, "offset": 7}}, posts_topic=TOPIC)
    assert event.source == (1, 7)


def test_a_members_partitions_and_work_are_read_from_its_metrics():
    from tagwatch.moderation.metrics import StreamMetrics
    from tagwatch.moderation.members import owned_from_metrics, parse_metric
    from prometheus_client import generate_latest

    metrics = StreamMetrics()
    assert owned_from_metrics(generate_latest(metrics.registry).decode()) is None  # never assigned yet
    metrics.assignment_changed(["t1.posts[0]", "t1.posts[1]"])
    assert owned_from_metrics(generate_latest(metrics.registry).decode()) == ["t1.posts[0]", "t1.posts[1]"]
    metrics.assignment_changed(None)  # revoked: a rebalance is in progress
    assert owned_from_metrics(generate_latest(metrics.registry).decode()) is None
    metrics.assignment_changed([])
    assert owned_from_metrics(generate_latest(metrics.registry).decode()) == []
    text = "# HELP tagwatch_in_flight x\ntagwatch_in_flight 8.0\ntagwatch_dead_letters_total{reason=\"a\"} 2.0\n" \
           "tagwatch_dead_letters_total{reason=\"b\"} 1.0\ntagwatch_in_flight_other 5\n"
    assert parse_metric(text, "tagwatch_in_flight") == 8.0
    assert parse_metric(text, "tagwatch_dead_letters_total") == 3.0
    assert parse_metric(text, "tagwatch_absent") == 0.0


def test_audit_reads_the_ids_file_publish_writes_and_plain_ids():
    import pytest

    from tagwatch.moderation.audit_cli import read_post_ids

    published = '{"post_id": "a-1", "partition": 0, "offset": 4}\n{"post_id": "a-2", "partition": 1, "offset": 0}\n'
    assert read_post_ids(published) == {"a-1", "a-2"}
    assert read_post_ids("a-1\n\n a-3 \n") == {"a-1", "a-3"}
    with pytest.raises(ValueError, match="line 1 has no post_id"):
        read_post_ids('{"id": "a-1"}\n')
