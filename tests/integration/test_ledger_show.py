"""`tagwatch ledger show POST_ID` on the real stack: the stream's first decision, then a reviewer's outcome recorded
through the review core, printed oldest first as text and as JSON; an unknown post is an error with a hint."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from tagwatch.review.outcomes import Verdict
from tagwatch.review.serve import build_service
from tests.conftest import run_cli
from tests.support.review import png, post_for_review, review_env, review_world


def test_ledger_show_prints_decision_then_review(stack_settings):
    world = review_world(stack_settings)
    service = build_service(world)
    try:
        request = post_for_review(world, "show-1", image=png((9, 9, 9)))
        service.queue.enqueue(request)
        lease = service.queue.claim("show-1", "alice")
        service.recorder.record("show-1", lease.token, Verdict("remove", ("weapons",), "knife"), reviewer="alice",
                                at=datetime.now(timezone.utc))
    finally:
        service.producer.close(timeout=5)

    env = review_env(world)
    shown = run_cli("ledger", "show", "show-1", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "post show-1" and "decision  review  by model tagwatch-moderation v7, policy p3" in lines[1]
    assert "review    remove  by alice  categories: weapons" in lines[-1] and "note: knife" in lines[-1]
    as_json = json.loads(run_cli("ledger", "show", "show-1", "--json", env=env).stdout)
    assert as_json["decision"]["action"] == "review"
    assert [(e["kind"], e["action"], e["reviewer"]) for e in as_json["history"]] == [("review", "remove", "alice")]
    missing = run_cli("ledger", "show", "no-such-post", env=env)
    assert missing.returncode == 1 and "no record of post no-such-post" in missing.stderr and "hint:" in missing.stderr
