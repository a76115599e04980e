"""Logging in to the console with the admin token, and out again.

No admin token configured: nobody can log in, and the login page says why (as the admin API
answers every call 401). The token is compared in constant time; a wrong one is logged (never
what was typed), counted against the client address (``app.throttle``, shared with the admin
API) and answered 401; past the limit the address gets the login page with 429 and
``Retry-After``, and its attempts are not evaluated. The name typed is a label recorded with
replays and discards, not an account: every attempt does the same one comparison, whatever the
name, so there is nothing to tell apart by timing.

A login is live in Redis (``session``); logout ends it there, so every copy of the cookie stops
working. While Redis does not answer nobody can log in (503, the page says why).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app import metrics
from app.console.inputs import Query, read_form, safe_next
from app.console.session import (
    ConsoleSession,
    SessionsUnavailable,
    csrf_matches,
    end,
    new_session,
    register,
    token_matches,
)
from app.console.web import Console, Visit
from app.routes.errors import status_of
from app.routes.refusals import NotAuthenticated, Refused, StaleForm, Throttled
from app.throttle import ThrottleUnavailable, throttle_for

log = structlog.get_logger(__name__)
_NAME = re.compile(r"[^\w .@+-]", re.UNICODE)
_DISABLED = (
    "The console is disabled: HOOKLEDGER_ADMIN_TOKEN is not set. Set it in the web process's "
    "environment and restart it; then log in here with that token."
)
_REDIS_DOWN = "Logging in needs Redis, which is unavailable; try again shortly."


def actor_for(name: str) -> str:
    """``console:<name>`` for the name typed at login (cleaned, at most 64 characters), else
    ``console``."""
    cleaned = _NAME.sub("", name).strip()[:64]
    return f"console:{cleaned}" if cleaned else "console"


def _form_page(
    console: Console,
    request: Request,
    session: ConsoleSession | None,
    next_path: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    return console.render(
        request,
        session,
        "login.html",
        {
            "next": next_path,
            "error": error,
            "disabled": None if console.sessions.enabled else _DISABLED,
        },
        status=status,
    )


def login_page(console: Console) -> Callable[[Request], Awaitable[Response]]:
    async def login(request: Request) -> Response:
        home = str(request.url_for("console:home").path)
        try:
            next_path = safe_next(request, Query(request, {"next"}).text("next"), home)
        except Refused:
            next_path = home
        if not console.sessions.enabled:
            return _form_page(console, request, None, next_path, status=503)
        try:
            session = await console.current(request)
        except SessionsUnavailable as exc:
            log.error("console.sessions_unavailable")
            return _form_page(
                console, request, new_session(), next_path, status=status_of(exc), error=_REDIS_DOWN
            )
        if request.method == "GET":
            if session is not None and session.logged_in:
                return RedirectResponse(next_path, status_code=303)
            return _form_page(console, request, session or new_session(), next_path)
        return await _attempt(console, request, session, home)

    return login


async def _attempt(
    console: Console, request: Request, session: ConsoleSession | None, home: str
) -> Response:
    try:
        form = await read_form(request)
    except Refused as exc:
        return _form_page(
            console, request, new_session(), home, status=status_of(exc), error=exc.message
        )
    next_path = safe_next(request, form.get("next"), home)
    if session is None or not csrf_matches(session, form.get("csrf", "")):
        # A stale or forged form: show a fresh one rather than a dead end.
        return _form_page(
            console,
            request,
            new_session(),
            next_path,
            status=status_of(StaleForm),
            error="This login form had expired. Enter the token again.",
        )
    try:
        return await _judge(console, request, session, form, next_path)
    except (ThrottleUnavailable, SessionsUnavailable) as exc:
        log.error("console.sessions_unavailable")
        return _form_page(
            console, request, session, next_path, status=status_of(exc), error=_REDIS_DOWN
        )


async def _judge(
    console: Console,
    request: Request,
    session: ConsoleSession,
    form: dict[str, str],
    next_path: str,
) -> Response:
    """The token's verdict: 429 before it is looked at when the address is over the limit, 401
    (counted) when wrong, else a fresh login. Raises ``ThrottleUnavailable`` and
    ``SessionsUnavailable``."""
    throttle = throttle_for(request)
    client = request.client.host if request.client else None
    wait = await throttle.retry_after()
    if wait is not None:
        log.warning("console.login_throttled", client=client, retry_after=wait)
        metrics.child(metrics.AUTH_THROTTLED, "console").inc()
        error = f"Too many wrong tokens from your address: try again in {wait} seconds."
        response = _form_page(
            console, request, session, next_path, status=status_of(Throttled), error=error
        )
        response.headers["retry-after"] = str(wait)
        return response
    token = console.settings.admin_token
    assert token is not None  # sessions are enabled only with a token
    if not token_matches(token, form.get("token", "")):
        if form.get("token"):  # an empty field guesses nothing (as a missing bearer header)
            await throttle.failed()
        log.warning("console.login_refused", client=client)
        return _form_page(
            console,
            request,
            session,
            next_path,
            status=status_of(NotAuthenticated),
            error="Wrong admin token.",
        )
    redis = request.app.state.aioredis
    if session.logged_in:
        await end(redis, session)  # logging in again replaces the login, not adds one
    fresh = new_session(actor_for(form.get("name", "")))
    await register(redis, fresh)
    fresh.flash("ok", f"Logged in; replays and discards are recorded as {fresh.actor}.")
    log.info("console.login", actor=fresh.actor)
    response = RedirectResponse(next_path, status_code=303)
    console.sessions.save(request, response, fresh)
    return response


async def logout(visit: Visit) -> Response:
    """End the login in Redis (every copy of the cookie with it), then drop the cookie. Raises
    ``SessionsUnavailable`` (a 503 page: the login is not ended)."""
    await end(visit.request.app.state.aioredis, visit.session)
    log.info("console.logout", actor=visit.actor)
    response = RedirectResponse(visit.path("console:login"), status_code=303)
    visit.console.sessions.clear(visit.request, response)
    return response
