"""The reviewer's pages: the queue, the next item, one item's review page and its form."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tagwatch.review.earlier import earlier_decisions
from tagwatch.review.images import image_path
from tagwatch.review.outcomes import InvalidVerdict, Verdict
from tagwatch.review.queue import LeaseLost
from tagwatch.review.web import checked_form, message_page, render, require_user, seconds_until

log = logging.getLogger(__name__)
POST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_ROWS = 500


def _post_id(request: Request) -> str:
    post_id = request.path_params["post_id"]
    if not POST_ID.match(post_id):
        raise HTTPException(404, "no such post in the review queue")
    return post_id


async def queue_page(request: Request) -> Response:
    user = require_user(request)
    state = request.app.state

    def load() -> tuple[list[dict], int, int]:
        now = state.clock()
        rows = []
        pending = state.queue.pending()
        stats = state.queue.stats()
        for item in pending[:MAX_ROWS]:
            lease, _ = state.queue.lease_of(item.request.post_id)
            live = lease is not None and lease.live(now)
            rows.append({
                "post_id": item.request.post_id, "requested_at": item.request.requested_at,
                "top": max(item.request.scores.items(), key=lambda kv: kv[1], default=("", 0.0)),
                "reasons": item.request.reasons,
                "status": ("yours" if live and lease.reviewer == user else "leased" if live else "available"),
                "reviewer": lease.reviewer if live else None,
                "expires_in": seconds_until(lease.expires_at, now) if live else None,
            })
        return rows, len(pending), stats.leased

    rows, pending, leased = await run_in_threadpool(load)
    stats = {"pending": pending, "leased": leased}
    empty = request.query_params.get("empty") == "1"
    return render(request, "queue.html", rows=rows, stats=stats, empty=empty, max_rows=MAX_ROWS)


async def next_item(request: Request) -> Response:
    user = require_user(request)
    skip = {request.query_params["skip"]} if "skip" in request.query_params else set()
    found = await run_in_threadpool(lambda: request.app.state.queue.next_for(user, skip=skip))
    if found is None:
        return RedirectResponse("/?empty=1", status_code=303)
    item, _lease = found
    return RedirectResponse(f"/review/{quote(item.request.post_id)}", status_code=303)


async def review_page(request: Request) -> Response:
    user = require_user(request)
    post_id = _post_id(request)
    state = request.app.state
    item = await run_in_threadpool(state.queue.item, post_id)
    if item is None:
        raise HTTPException(404, "no such post in the review queue")
    lease = await run_in_threadpool(state.queue.claim, post_id, user)
    if lease is None:
        return await _not_yours(request, post_id)
    return await _render_review(request, item, lease)


async def _render_review(request: Request, item, lease, *, status_code: int = 200, error: str | None = None,
                         chosen: tuple[set[str], str] = (set(), "")) -> Response:
    state = request.app.state
    req = item.request

    def load():
        decision = state.ledger.get(req.post_id)
        earlier = earlier_decisions(req.post_id, req.image_uri, list(req.reasons), queue=state.queue,
                                    ledger=state.ledger, history=state.history, pdq=req.pdq)
        return decision, earlier

    decision, earlier = await run_in_threadpool(load)
    categories = sorted(req.scores)
    return render(request, "review.html", status_code, item=item, request_=req, lease=lease, decision=decision,
                  earlier=earlier, categories=categories, scores=req.scores, image=image_path(req.image_uri),
                  expires_in=seconds_until(lease.expires_at, state.clock()), error=error, chosen=chosen[0],
                  note=chosen[1])


async def _not_yours(request: Request, post_id: str) -> Response:
    state = request.app.state
    done = await run_in_threadpool(state.queue.done, post_id)
    if done is not None:
        return message_page(request, "Reviewed already",
                            f"Post {post_id} was reviewed by {done.reviewer} at {done.done_at:%Y-%m-%d %H:%M:%S} "
                            "UTC.", 409)
    lease, _ = await run_in_threadpool(state.queue.lease_of, post_id)
    holder = f" to {lease.reviewer} for {seconds_until(lease.expires_at, state.clock())} s more" if lease else ""
    return message_page(request, "Leased to someone else", f"Post {post_id} is leased{holder}.", 409)


async def submit_review(request: Request) -> Response:
    user = require_user(request)
    post_id = _post_id(request)
    form = await checked_form(request)
    state = request.app.state
    verdict = Verdict(action=str(form.get("action") or ""),
                      categories=tuple(str(c) for c in form.getlist("category")),
                      note=str(form.get("note") or "")[:2000])
    token = str(form.get("token") or "")
    try:
        outcome = await run_in_threadpool(
            lambda: state.recorder.record(post_id, token, verdict, reviewer=user, at=state.clock()))
    except InvalidVerdict as error:
        state.metrics.invalid.labels("invalid_verdict").inc()
        item = await run_in_threadpool(state.queue.item, post_id)
        lease = await run_in_threadpool(state.queue.claim, post_id, user) if item else None
        if item is None or lease is None:
            return await _not_yours(request, post_id)
        return await _render_review(request, item, lease, status_code=400, error=str(error),
                                    chosen=(set(verdict.categories), verdict.note))
    except LeaseLost as error:
        log.info("review of %s by %s refused: %s", post_id, user, error)
        return message_page(request, "Lease lost", f"{error}. Your verdict on post {post_id} was not recorded.",
                            409)
    state.metrics.outcomes.labels(outcome.action).inc()
    state.metrics.time_to_decision.observe(outcome.time_to_decision_s)
    log.info("review outcome %s for %s by %s: %s %s", outcome.outcome_id, post_id, user, outcome.action,
             ",".join(outcome.categories))
    request.session["flash"] = f"Recorded {outcome.action} for post {post_id}."
    return RedirectResponse("/review/next", status_code=303)


async def skip_item(request: Request) -> Response:
    require_user(request)
    post_id = _post_id(request)
    form = await checked_form(request)
    await run_in_threadpool(request.app.state.queue.release, post_id, str(form.get("token") or ""))
    return RedirectResponse(f"/review/next?skip={quote(post_id)}", status_code=303)
