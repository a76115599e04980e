"""Logging in to the console with the admin token, and out again.

No admin token configured: nobody can log in, and the login page says why (as the admin API
answers every call 401). The token is compared in constant time; a wrong one is logged (never
what was typed) and answered 401.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.console.inputs import ConsoleError, Query, read_form, safe_next
from app.console.session import ConsoleSession, csrf_matches, new_session, token_matches
from app.console.web import Console, Visit

log = structlog.get_logger(__name__)
_NAME = re.compile(r"[^\w .@+-]", re.UNICODE)
_DISABLED = (
    "The console is disabled: HOOKLEDGER_ADMIN_TOKEN is not set. Set it in the web process's "
    "environment and restart it; then log in here with that token."
)


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
        except ConsoleError:
            next_path = home
        if not console.sessions.enabled:
            return _form_page(console, request, None, next_path, status=503)
        session = console.sessions.load(request)
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
    except ConsoleError as exc:
        return _form_page(
            console, request, new_session(), home, status=exc.status, error=exc.message
        )
    next_path = safe_next(request, form.get("next"), home)
    if session is None or not csrf_matches(session, form.get("csrf", "")):
        # A stale or forged form: show a fresh one rather than a dead end.
        return _form_page(
            console,
            request,
            new_session(),
            next_path,
            status=403,
            error="This login form had expired. Enter the token again.",
        )
    token = console.settings.admin_token
    assert token is not None  # sessions are enabled only with a token
    if not token_matches(token, form.get("token", "")):
        client = request.client.host if request.client else None
        log.warning("console.login_refused", client=client)
        return _form_page(
            console, request, session, next_path, status=401, error="Wrong admin token."
        )
    fresh = new_session(actor_for(form.get("name", "")))
    fresh.flash("ok", f"Logged in; replays and discards are recorded as {fresh.actor}.")
    log.info("console.login", actor=fresh.actor)
    response = RedirectResponse(next_path, status_code=303)
    console.sessions.save(request, response, fresh)
    return response


async def logout(visit: Visit) -> Response:
    log.info("console.logout", actor=visit.actor)
    response = RedirectResponse(visit.path("console:login"), status_code=303)
    visit.console.sessions.clear(visit.request, response)
    return response
