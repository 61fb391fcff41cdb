"""The web plumbing of the review app, apart from its pages: templates, who is signed in, CSRF, security headers.

Every page is rendered on the server (Jinja2, autoescaped); the only script is static/review.js (keyboard
shortcuts). The Content-Security-Policy allows scripts, styles and images from the app itself only.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from starlette.datastructures import FormData, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from tagwatch.review.auth import csrf_matches, new_csrf_token

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_DIR = HERE / "static"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class SecurityHeaders:
    """Adds the headers above to every response, and ``no-store`` to every one that does not set caching."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def current_user(request: Request) -> str | None:
    """The signed-in reviewer: the trusted proxy's header when configured (and nothing else then), else the
    session's."""
    header = request.app.state.settings.review.trusted_user_header
    if header:
        value = (request.headers.get(header) or "").strip()
        return value[:128] or None
    user = request.session.get("user")
    return user if isinstance(user, str) and user else None


class NotSignedIn(Exception):
    """Raised by ``require_user``; the app answers 303 to /signin (or 401 behind a proxy)."""


def require_user(request: Request) -> str:
    user = current_user(request)
    if user is None:
        raise NotSignedIn()
    return user


def not_signed_in(request: Request, exc: Exception) -> Response:
    if request.app.state.settings.review.trusted_user_header:
        return message_page(request, "Not signed in",
                            "This app is reached through the sign-in proxy, which did not name a user.", 401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = request.session["csrf"] = new_csrf_token()
    return token


async def checked_form(request: Request) -> FormData:
    """The POSTed form, if it carries this session's CSRF token; else 403 and nothing else happens."""
    form = await request.form(max_files=0, max_fields=64)
    if not csrf_matches(request.session.get("csrf"), form.get("csrf_token")):
        request.app.state.metrics.invalid.labels("csrf").inc()
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    context.setdefault("user", current_user(request))
    context.setdefault("proxy", bool(request.app.state.settings.review.trusted_user_header))
    context.setdefault("flash", request.session.pop("flash", None))
    return TEMPLATES.TemplateResponse(request, template, {"csrf_token": csrf_token(request), **context},
                                      status_code=status_code)


def message_page(request: Request, title: str, message: str, status_code: int) -> HTMLResponse:
    return render(request, "message.html", status_code, title=title, message=message)


def http_error(request: Request, exc: HTTPException) -> Response:
    titles = {403: "Refused", 404: "Not found", 405: "Not allowed", 409: "Conflict"}
    return message_page(request, titles.get(exc.status_code, "Error"), str(exc.detail), exc.status_code)


def seconds_until(when: datetime, now: datetime) -> int:
    return max(0, int((when - now).total_seconds()))
