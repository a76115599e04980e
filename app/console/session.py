"""The console's session: one signed cookie holding a CSRF token, who logged in, and flashes,
and for a login a session id that must also be live in Redis.

The cookie is signed with itsdangerous under a key derived from the admin token by HMAC-SHA256,
so rotating ``HOOKLEDGER_ADMIN_TOKEN`` ends every session at once. It is HttpOnly,
SameSite=Strict, scoped to the console's path, Secure when the console is served over https,
and it expires ``LOGIN_TTL_S`` after the login (re-signing a flash does not extend it).

Before login the cookie already carries a CSRF token (``actor`` is ``None``): the login form is
a POST form like every other. A successful login issues a fresh token (no session fixation).

A login also gets a random session id, kept in Redis as ``hl:console:session:{id}`` (value: the
actor) for ``LOGIN_TTL_S``, so every web process sees it. A logged-in cookie counts only while
its id is there: logout deletes it, so a copy of the cookie taken before logout is refused
afterwards, as is every cookie after Redis loses its data. Redis not answering raises
``SessionsUnavailable``; the console then refuses (503 page) rather than trust a cookie it
cannot check, and nobody can log in or out until Redis is back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from itsdangerous import BadData, URLSafeSerializer
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from app.errors import DependencyDown

COOKIE = "hookledger_console"
LOGIN_TTL_S = 8 * 3600
FORM_TTL_S = 3600  # a login form left open longer asks for a reload
_KEY_INFO = b"hookledger console session v1"
_MAX_FLASHES = 5
_LIVE_PREFIX = "hl:console:session:"


class SessionsUnavailable(DependencyDown):
    """Redis did not answer: no login can be started, checked or ended."""


@dataclass(slots=True)
class ConsoleSession:
    csrf: str
    expires: int
    actor: str | None = None  # None: not logged in (yet)
    sid: str | None = None  # a login's id in Redis; None before login
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    changed: bool = False

    @property
    def logged_in(self) -> bool:
        return self.actor is not None

    def flash(self, kind: str, text: str) -> None:
        """Show ``text`` on the next page (kind ``ok`` or ``error``)."""
        self.flashes = [*self.flashes, (kind, text[:500])][-_MAX_FLASHES:]
        self.changed = True

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        self.changed = self.changed or bool(taken)
        return taken


def new_session(actor: str | None = None, *, now: float | None = None) -> ConsoleSession:
    """A session with a fresh CSRF token: logged in as ``actor``, or a login form's."""
    ttl = LOGIN_TTL_S if actor is not None else FORM_TTL_S
    return ConsoleSession(
        csrf=secrets.token_urlsafe(32),
        expires=int((now or time.time()) + ttl),
        actor=actor,
        sid=secrets.token_urlsafe(32) if actor is not None else None,
        changed=True,
    )


def csrf_matches(session: ConsoleSession, presented: str) -> bool:
    """Whether a form's ``csrf`` field is this session's token (constant-time compare)."""
    return hmac.compare_digest(presented.encode("utf-8", "replace"), session.csrf.encode())


def token_matches(configured: str, presented: str) -> bool:
    """Whether ``presented`` is the admin token (constant-time compare)."""
    return hmac.compare_digest(presented.encode("utf-8", "replace"), configured.encode())


class SessionCodec:
    """Reads and writes the session cookie; without an admin token there are no sessions."""

    def __init__(self, admin_token: str | None) -> None:
        self._serializer: URLSafeSerializer | None = None
        if admin_token is not None:
            key = hmac.new(admin_token.encode(), _KEY_INFO, hashlib.sha256).digest()
            self._serializer = URLSafeSerializer(
                key,
                salt="hookledger.console.session",
                signer_kwargs={"digest_method": hashlib.sha256},
            )

    @property
    def enabled(self) -> bool:
        return self._serializer is not None

    def load(self, request: Request, *, now: float | None = None) -> ConsoleSession | None:
        """The request's valid, unexpired session, or ``None``."""
        raw = request.cookies.get(COOKIE)
        if self._serializer is None or not raw or len(raw) > 4096:
            return None
        try:
            data: Any = self._serializer.loads(raw)
        except BadData:
            return None
        return _session_from(data, now=time.time() if now is None else now)

    def save(self, request: Request, response: Response, session: ConsoleSession) -> None:
        """Set the cookie on ``response`` if ``session`` changed."""
        if self._serializer is None or not session.changed:
            return
        value = self._serializer.dumps(
            {
                "csrf": session.csrf,
                "exp": session.expires,
                "actor": session.actor,
                "sid": session.sid,
                "flash": [list(f) for f in session.flashes],
            }
        )
        response.set_cookie(
            COOKIE,
            str(value),
            max_age=max(0, session.expires - int(time.time())),
            path=cookie_path(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    @staticmethod
    def clear(request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE,
            path=cookie_path(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )


async def register(redis: aioredis.Redis, session: ConsoleSession) -> None:
    """Make the logged-in ``session`` live until it expires. Raises ``SessionsUnavailable``."""
    assert session.sid is not None and session.actor is not None
    ttl = max(1, session.expires - int(time.time()))
    try:
        await redis.set(_LIVE_PREFIX + session.sid, session.actor, ex=ttl)
    except (RedisError, OSError) as exc:
        raise SessionsUnavailable(str(exc)) from exc


async def is_live(redis: aioredis.Redis, session: ConsoleSession) -> bool:
    """Whether the logged-in ``session`` has not been ended. Raises ``SessionsUnavailable``."""
    if session.sid is None:
        return False
    try:
        return bool(await redis.exists(_LIVE_PREFIX + session.sid))
    except (RedisError, OSError) as exc:
        raise SessionsUnavailable(str(exc)) from exc


async def end(redis: aioredis.Redis, session: ConsoleSession) -> None:
    """End ``session`` for every copy of its cookie. Raises ``SessionsUnavailable``."""
    if session.sid is None:
        return
    try:
        await redis.delete(_LIVE_PREFIX + session.sid)
    except (RedisError, OSError) as exc:
        raise SessionsUnavailable(str(exc)) from exc


def cookie_path(request: Request) -> str:
    """The console's mount path (``/console``, below any ASGI root path)."""
    return str(request.scope.get("root_path") or "/console")


def _session_from(data: Any, *, now: float) -> ConsoleSession | None:
    if not isinstance(data, dict):
        return None
    csrf, expires, actor = data.get("csrf"), data.get("exp"), data.get("actor")
    sid, flashes = data.get("sid"), data.get("flash")
    if not isinstance(csrf, str) or not isinstance(expires, int) or expires <= now:
        return None
    if actor is not None and not (isinstance(actor, str) and isinstance(sid, str)):
        return None  # a login without a session id cannot be ended: no login at all
    kept = [
        (f[0], f[1])
        for f in (flashes if isinstance(flashes, list) else [])
        if isinstance(f, list) and len(f) == 2 and all(isinstance(x, str) for x in f)
    ]
    return ConsoleSession(
        csrf=csrf,
        expires=expires,
        actor=actor,
        sid=sid if actor is not None else None,
        flashes=kept,
    )
