"""The reviewer web app: a Starlette app over the review core (queue, outcome recorder, ledger). See docs/review.md.

``create_app`` takes everything it talks to as arguments, so a test builds it against the real embedded stack and
drives it in-process; ``tagwatch review serve`` (review/serve.py) builds the same app and runs it with uvicorn.
Every S3 and Kafka call is blocking and runs in the thread pool.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tagwatch.moderation.ledger import Ledger, LedgerHistory
from tagwatch.review import pages
from tagwatch.review.auth import Accounts, accounts_path, new_csrf_token, safe_next
from tagwatch.review.images import ImageRefused, fetch_image
from tagwatch.review.metrics import CONTENT_TYPE, ReviewMetrics
from tagwatch.review.outcomes import OutcomeRecorder
from tagwatch.review.queue import ReviewQueue, utcnow
from tagwatch.review.web import (STATIC_DIR, NotSignedIn, SecurityHeaders, checked_form, current_user, http_error,
                                 message_page, not_signed_in, render, require_user)
from tagwatch.settings import Settings

log = logging.getLogger(__name__)
SESSION_COOKIE = "tagwatch_review"
SESSION_MAX_AGE_S = 8 * 3600


def create_app(settings: Settings, *, queue: ReviewQueue, recorder: OutcomeRecorder, ledger: Ledger,
               history: LedgerHistory, s3: Any, accounts: Accounts | None = None, metrics: ReviewMetrics | None = None,
               ready: Callable[[], bool] | None = None, clock: Callable = utcnow) -> Starlette:
    """The app. ``ready``: extra readiness (the feeder thread alive); ``metrics``: shared with the feeder and the
    queue's lease-expiry callback when the caller wires them (serve.py does)."""
    routes = [
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint),
        Route("/signin", signin_form, methods=["GET"]), Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout_form, methods=["GET"]), Route("/signout", signout, methods=["POST"]),
        Route("/", pages.queue_page), Route("/review/next", pages.next_item),
        Route("/review/{post_id}", pages.review_page, methods=["GET"]),
        Route("/review/{post_id}", pages.submit_review, methods=["POST"]),
        Route("/review/{post_id}/skip", pages.skip_item, methods=["POST"]),
        Route("/images/{bucket}/{key:path}", image),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=settings.review.session_secret.get_secret_value(),
                   session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE_S, same_site="strict",
                   https_only=settings.review.secure_cookies),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: http_error, NotSignedIn: not_signed_in})
    app.state.settings, app.state.queue, app.state.recorder = settings, queue, recorder
    app.state.ledger, app.state.history, app.state.s3, app.state.clock = ledger, history, s3, clock
    app.state.accounts = accounts or Accounts(accounts_path(settings))
    app.state.metrics = metrics or ReviewMetrics()
    app.state.ready = ready or (lambda: True)
    return app


# ---- health and metrics (no session needed: probes and Prometheus)
async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    state = request.app.state

    def check() -> str | None:
        if not state.ready():
            return "the review feeder is not running"
        try:
            state.s3.head_bucket(Bucket=state.queue.bucket)
        except Exception as error:  # noqa: BLE001 - any failure means not ready; the reason goes to the probe
            return f"S3 unavailable ({type(error).__name__})"
        return None

    problem = await run_in_threadpool(check)
    return PlainTextResponse(problem or "ready", status_code=503 if problem else 200)


async def metrics_endpoint(request: Request) -> Response:
    state = request.app.state
    try:
        stats = await run_in_threadpool(state.queue.stats)
    except Exception:  # noqa: BLE001 - still serve the counters when S3 is away
        log.warning("queue stats unavailable for /metrics", exc_info=True)
        stats = None
    return Response(state.metrics.render(stats), media_type=CONTENT_TYPE)


# ---- sign-in
async def signin_form(request: Request) -> Response:
    if request.app.state.settings.review.trusted_user_header or current_user(request):
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return render(request, "signin.html", next=safe_next(request.query_params.get("next")), error=None)


async def signin(request: Request) -> Response:
    form = await checked_form(request)
    target = safe_next(str(form.get("next") or ""))
    if request.app.state.settings.review.trusted_user_header:
        return RedirectResponse(target, status_code=303)
    name, password = str(form.get("name") or "").strip(), str(form.get("password") or "")
    ok = await run_in_threadpool(request.app.state.accounts.authenticate, name, password)
    if not ok:
        log.info("review sign-in refused for %r", name[:64])  # the name only, never the password
        return render(request, "signin.html", 401, next=target, error="Wrong name or password.")
    request.session.clear()  # a fresh session (and CSRF token) for the signed-in user: no fixation
    request.session.update({"user": name, "csrf": new_csrf_token()})
    log.info("reviewer %s signed in", name)
    return RedirectResponse(target, status_code=303)


async def signout_form(request: Request) -> Response:
    return render(request, "signout.html")


async def signout(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


# ---- images
_PLAIN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,62}$")


async def image(request: Request) -> Response:
    require_user(request)
    state = request.app.state
    bucket, key = request.path_params["bucket"], request.path_params["key"]
    if not _PLAIN.match(bucket):
        raise HTTPException(404, "no such image")
    try:
        data, kind = await run_in_threadpool(fetch_image, state.s3, bucket, key,
                                             posts_bucket=state.settings.s3.buckets.posts)
    except ImageRefused as error:
        log.info("image refused: %s (%s)", error, request.url.path[:200])
        return message_page(request, "Not found", "no such image", 404)
    return Response(data, media_type=kind, headers={"cache-control": "private, max-age=300"})
