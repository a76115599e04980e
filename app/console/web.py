"""The console's plumbing: templates, the login gate around every page, and error pages. The
pages themselves are in ``pages_ops`` and ``pages_ledger``; the session cookie in ``session``;
forms and query parameters in ``inputs``.

Errors are mapped to pages here, in one place, each with its status from the edge's table
(``app.routes.errors``): a refusal of the console's own (``app.routes.refusals``) or an
``ops.OpsError`` is a 4xx page; a database that does not answer is a 503 page, and so is Redis,
where logins live (``session``): a login that cannot be checked is not trusted. A handler never
returns a 500 for anything a person can type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode

import jinja2
import structlog
from anyio import to_thread
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from app.console.inputs import read_form, safe_next
from app.console.session import (
    ConsoleSession,
    SessionCodec,
    SessionsUnavailable,
    csrf_matches,
    is_live,
)
from app.domain.money import canonical
from app.errors import DependencyDown
from app.routes.errors import status_of
from app.routes.refusals import Refused, StaleForm
from app.runtime import Runtime
from app.settings import Settings
from app.store import ops
from app.store.db import read_only

log = structlog.get_logger(__name__)
T = TypeVar("T")
_REDACTED = "[redacted]"
_STALE_FORM = (
    "This form has expired or did not come from the console: reload the page and send it again."
)
_SESSIONS_DOWN = "The console cannot check logins because Redis is unavailable; try again shortly."
_MIN_SECRET_LEN = 6  # shorter values would blank ordinary words; no real secret is that short


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret (and target URL, which may hold a token), longest first."""
    found: set[str] = set()
    if settings.admin_token:
        found.add(settings.admin_token)
    for source in settings.sources.values():
        found.update(source.secrets)
        if source.pull is not None:
            pull = source.pull
            found.update(v for v in (pull.api_key, pull.access_key, pull.secret_key) if v)
    for key in settings.file.api_keys.values():
        found.add(key.secret)
    for target in settings.file.targets.values():
        found.add(target.url)
        if target.secret:
            found.add(target.secret)
    for value in list(found):
        if value.startswith("whsec_"):
            found.add(value.removeprefix("whsec_"))
    return sorted((s for s in found if len(s) >= _MIN_SECRET_LEN), key=len, reverse=True)


def _scrubber(secrets: list[str]) -> Callable[[Any], Any]:
    """Jinja's ``finalize``: every value a template shows passes here, then is escaped."""

    def finalize(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, Decimal):
            return canonical(value)
        if isinstance(value, float):
            raise TypeError("the console never shows a float")  # money is Decimal, always
        if isinstance(value, str):
            for secret in secrets:  # replace, not `in` first: no secret-dependent branch
                value = value.replace(secret, _REDACTED)
        return value

    return finalize


def _utc(value: Any) -> str:
    """A Unix second or an ISO datetime text, as ``YYYY-MM-DD HH:MM:SS`` UTC."""
    if value is None or value == "":
        return ""
    if isinstance(value, int):
        try:
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, OSError, ValueError):
            return str(value)
    return str(value)[:19].replace("T", " ")


@jinja2.pass_context
def _href(context: Any, name: str, query: Mapping[str, Any] | None = None, **params: Any) -> str:
    """The path of route ``name`` (below any root path), with ``query`` appended."""
    request: Request = context["request"]
    path = str(request.url_for(name, **params).path)
    kept = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def _environment(settings: Settings) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("app.console", "templates"),
        autoescape=True,  # every value is HTML-escaped, whatever the template's name
        undefined=jinja2.StrictUndefined,
        finalize=_scrubber(secrets_of(settings)),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["href"] = _href
    env.filters["utc"] = _utc
    return env


class Console:
    """Built once per app: its templates, the session codec, and the login gate."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = SessionCodec(settings.admin_token)
        self.templates = Jinja2Templates(env=_environment(settings))

    def render(
        self,
        request: Request,
        session: ConsoleSession | None,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
    ) -> Response:
        flashes = session.take_flashes() if session is not None else []
        response = self.templates.TemplateResponse(
            request,
            template,
            {
                "session": session,
                "csrf": session.csrf if session is not None else "",
                "flashes": flashes,
                **context,
            },
            status_code=status,
        )
        if session is not None:
            self.sessions.save(request, response, session)
        return response

    async def current(self, request: Request) -> ConsoleSession | None:
        """The request's session: a login only while it is live in Redis (a logged-out one is
        ``None``), or a login form's. Raises ``SessionsUnavailable``."""
        session = self.sessions.load(request)
        if session is None or not session.logged_in:
            return session
        return session if await is_live(request.app.state.aioredis, session) else None

    def sessions_down(self, request: Request) -> Response:
        """The 503 page shown while Redis does not answer."""
        log.error("console.sessions_unavailable")
        return self.error_page(request, None, status_of(SessionsUnavailable), _SESSIONS_DOWN)

    def error_page(
        self, request: Request, session: ConsoleSession | None, status: int, message: str
    ) -> Response:
        return self.render(
            request, session, "error.html", {"status": status, "message": message}, status=status
        )

    def page(
        self, handler: Callable[[Visit], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler``: a valid session or a redirect to the login page; a form's CSRF
        token checked; errors turned into pages."""

        async def endpoint(request: Request) -> Response:
            try:
                session = await self.current(request)
            except SessionsUnavailable:
                return self.sessions_down(request)
            if session is None or not session.logged_in:
                return _to_login(request)
            try:
                form = await _checked_form(request, session) if request.method == "POST" else {}
                return await handler(Visit(self, request, session, form))
            except (Refused, ops.OpsError) as exc:
                return self.error_page(request, session, status_of(exc), exc.message)
            except SessionsUnavailable:
                return self.sessions_down(request)
            except (OperationalError, InterfaceError) as exc:
                log.error("console.database_unavailable", error=type(exc).__name__)
                return self.error_page(
                    request,
                    session,
                    status_of(DependencyDown),
                    "The database is unavailable; try again shortly.",
                )

        return endpoint


@dataclass(slots=True)
class Visit:
    """One request to a console page by a logged-in person."""

    console: Console
    request: Request
    session: ConsoleSession
    form: dict[str, str]

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.request.app.state.runtime
        return runtime

    @property
    def actor(self) -> str:
        """Who is acting, as recorded with replays and discards."""
        assert self.session.actor is not None
        return self.session.actor

    def render(self, template: str, context: Mapping[str, Any], *, status: int = 200) -> Response:
        return self.console.render(self.request, self.session, template, context, status=status)

    def redirect(self, url: str) -> Response:
        """303 to ``url`` (after a POST), carrying any flash."""
        response = RedirectResponse(url, status_code=303)
        self.console.sessions.save(self.request, response, self.session)
        return response

    def path(self, name: str, **params: Any) -> str:
        return str(self.request.url_for(name, **params).path)

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` with a read-only session, in a worker thread."""
        engine = read_only(self.runtime.engine)

        def run() -> T:
            with Session(engine) as session:
                return fn(session)

        return await to_thread.run_sync(run)

    async def call(self, fn: Callable[[], T]) -> T:
        return await to_thread.run_sync(fn)

    def local_next(self, default: str) -> str:
        """The form's ``next`` if it is a console path, else ``default``."""
        return safe_next(self.request, self.form.get("next"), default)


def _to_login(request: Request) -> Response:
    login = str(request.url_for("console:login").path)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method == "GET" and safe_next(request, target, "") == target:
        login += "?" + urlencode({"next": target})
    return RedirectResponse(login, status_code=303)


async def _checked_form(request: Request, session: ConsoleSession) -> dict[str, str]:
    form = await read_form(request)
    if not csrf_matches(session, form.get("csrf", "")):
        raise StaleForm(_STALE_FORM)
    return form
