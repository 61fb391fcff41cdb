"""SIGKILL consumers mid-batch, repeatedly: nothing lost, each ledger record equals the post's first decision
event, no commit passes an undecided record, duplicates carry one decision id (the stream audit checks all of it).

Real processes (`tagwatch moderate`), real Tansu group rebalances, real SeaweedFS ledger.
"""

from __future__ import annotations


import pytest

from tagwatch.clients import s3_client
from tagwatch.moderation.ledger import Ledger
from tagwatch.moderation.members import NO_LEAVE_GROUP, ConsumerProcess, collapse
from tagwatch.moderation.publish import new_post, publish_posts, upload_image
from tagwatch.stack.ports import pick_free_ports
from tests.support import colour_model as cm
from tests.support.stream import assert_audit_clean, private_stream, stream_env, wait_for


def _consumer(env, model, policy, log_path, *extra) -> ConsumerProcess:
    args = ["--onnx", str(model), "--categories", ",".join(cm.CATEGORIES), "--policy", str(policy),
            "--max-poll-records", "8", "--infer-batch", "8", *extra]
    return ConsumerProcess(args, env=env, log_path=log_path, metrics_port=pick_free_ports("127.0.0.1", 1)[0])


def _log_tails(members) -> str:
    return "\n".join(m.tail() for m in members)


@pytest.mark.slow
def test_sigkill_mid_batch_loses_nothing(stack_settings, tmp_path):
    settings = private_stream(stack_settings, partitions=2)
    s3 = s3_client(settings.s3)
    model, policy = tmp_path / "colour.onnx", tmp_path / "policy.json"
    cm.build(model)
    policy.write_text(cm.POLICY.model_dump_json())
    total = 200
    colours = [cm.RED, cm.BLUE, cm.GREY]
    posts = []
    for n in range(total):
        uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(colours[n % 3], size=48, seed=n))
        posts.append(new_post(f"chaos-{n:04d}-{settings.kafka.consumer_group}", uri, digest))
    publish_posts(settings, posts)

    ledger = Ledger(s3, settings.s3.buckets.ledger)
    ours = {p.post_id for p in posts}
    decided = lambda: len(ours & set(ledger.post_ids()))  # noqa: E731 - pacing only; the audit checks
    env = stream_env(settings)
    steady = _consumer(env, model, policy, tmp_path / "steady.log")  # runs until the end (SIGTERM)
    victims = [_consumer(env, model, policy, tmp_path / "victim-0.log", "--idle-exit", "6")]
    members = [steady, *victims]
    kills = 0
    try:
        for threshold in (30, 80, 130):
            victim = victims[-1]
            # kill only a member that owns partitions (no rebalance in progress) with records in flight
            wait_for(lambda t=threshold, v=victim: (v.is_working() and decided() >= t) or decided() == total,
                      180, f"{threshold} decisions and a working victim", interval=0.1)
            if not victim.is_working():
                break  # the steady member finished the stream first
            victim.sigkill()
            kills += 1
            victims.append(_consumer(env, model, policy, tmp_path / f"victim-{len(victims)}.log", "--idle-exit", "6"))
            members.append(victims[-1])
        wait_for(lambda: decided() == total, 240, "every post decided")
    except AssertionError as error:
        raise AssertionError(f"{error} ({decided()} of {total} decided, {kills} kills); consumers' logs:\n"
                             f"{_log_tails(members)}") from None
    finally:
        codes = [m.stop() for m in (steady, victims[-1])]
    assert kills >= 2, "the run finished before a working consumer could be killed mid-stream"
    assert codes[0] == 0, _log_tails([steady])
    report = assert_audit_clean(settings, ours)
    assert report.decision_events >= total
    print(f"\nchaos: {kills} SIGKILLs, {total} posts, {report.decision_events} decision events, "
          f"{report.duplicate_events} duplicates")


@pytest.mark.slow
def test_a_member_stopped_mid_rebalance_does_not_wedge_the_group(stack_settings, tmp_path):
    """SIGTERM the group's leader while the rebalance caused by a new member is in progress.

    On Tansu a LeaveGroup from that leader wedges the group for good (moderation/group.py): the new member then
    re-joins forever and nobody owns a partition. The consumer must close without LeaveGroup there, so the
    broker expires it and the new member takes every partition.
    """
    settings = private_stream(stack_settings, partitions=2)
    s3 = s3_client(settings.s3)
    model, policy = tmp_path / "colour.onnx", tmp_path / "policy.json"
    cm.build(model)
    policy.write_text(cm.POLICY.model_dump_json())
    env = stream_env(settings)
    leader = _consumer(env, model, policy, tmp_path / "leader.log")
    members = [leader]
    try:
        wait_for(lambda: leader.owned() is not None, 60, "the leader's assignment")
        members.append(_consumer(env, model, policy, tmp_path / "newcomer.log"))
        # the newcomer's join makes the broker rebalance: the leader revokes its partitions and re-joins
        wait_for(lambda: collapse(leader.log_text()).count("partitions revoked") >= 2, 60,
                  "the leader to start re-joining", interval=0.02)
        assert leader.stop() == 0
        # the path under test ran: the leader saw the rebalance and left without LeaveGroup
        assert NO_LEAVE_GROUP in collapse(leader.log_text()), "the leader sent LeaveGroup (or never closed)"
        posts = []
        for n in range(12):
            uri, digest = upload_image(s3, settings.s3.buckets.posts, cm.jpeg(cm.GREY, size=48, seed=900 + n))
            posts.append(new_post(f"wedge-{n:02d}-{settings.kafka.consumer_group}", uri, digest))
        publish_posts(settings, posts)
        ledger = Ledger(s3, settings.s3.buckets.ledger)
        ours = {p.post_id for p in posts}
        wait_for(lambda: ours <= set(ledger.post_ids()), 90, "the newcomer to decide every post")
        assert members[1].stop() == 0
    except AssertionError as error:
        raise AssertionError(f"{error}; consumers' logs:\n{_log_tails(members)}") from None
    finally:
        for member in members:
            member.stop()
    assert_audit_clean(settings, ours)
