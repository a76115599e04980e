"""The admin API under ``/admin``: the event log, replay and discard, for ops tooling.

``Authorization: Bearer $HOOKLEDGER_ADMIN_TOKEN``, compared in constant time; without a
configured token every call is refused (401). Wrong tokens are counted per client address
(``app.throttle``, shared with the console login): past ``server.auth_failure_limit`` the
address gets 429 with ``Retry-After`` until its window ends, and while Redis does not answer
every call gets 503. Errors are ``{"error", "message"}``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from anyio import to_thread
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from app import kinds, metrics
from app.responses import json_response
from app.routes.errors import status_of
from app.routes.refusals import (
    AuthUnavailable,
    BadInput,
    BodyTooLarge,
    NotAuthenticated,
    Refused,
    Throttled,
)
from app.runtime import Runtime
from app.services import gaps as gap_service
from app.services import replay as service
from app.store import ops
from app.store import signals as signal_store
from app.store.db import read_only
from app.store.models import Signal
from app.throttle import ThrottleUnavailable, throttle_for
from app.timeparse import WHEN_FORMATS, parse_when

MAX_LIMIT = 500
_LIMIT = re.compile(r"[0-9]{1,4}")
_ID = re.compile(r"(evt|sig)_[0-9a-f]{1,40}")


def _path_id(request: Request) -> str:
    value: str = request.path_params["event_id"]
    if not _ID.fullmatch(value) or (
        value.startswith("sig_") and signal_store.parse_signal_id(value) is None
    ):
        raise ops.NotFound("no such event or signal")
    return value


_MAX_BODY = 16_384


async def _authorize(request: Request) -> str:
    token: str | None = request.app.state.settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if token is None:
        raise NotAuthenticated("the admin API is disabled: HOOKLEDGER_ADMIN_TOKEN is not set")
    throttle = throttle_for(request)
    try:
        wait = await throttle.retry_after()
        if wait is not None:
            metrics.child(metrics.AUTH_THROTTLED, "admin").inc()
            raise Throttled(
                f"too many wrong tokens from this address; try again in {wait} s",
                retry_after=wait,
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode("utf-8", "replace"), token.encode()
        ):
            if header.strip():  # a credential was offered: a guess (nothing at all is none)
                await throttle.failed()
            raise NotAuthenticated("missing or wrong bearer token")
    except ThrottleUnavailable as exc:
        raise AuthUnavailable(
            "Redis is unavailable, so no token is checked; try again shortly"
        ) from exc
    actor = request.headers.get("x-actor", "").strip()[:64]
    return f"admin-api:{actor}" if actor else "admin-api"


def _headers(refusal: Refused) -> dict[str, str] | None:
    """The headers of a refusal's answer: ``Retry-After`` when the address is throttled."""
    if isinstance(refusal, Throttled):
        return {"retry-after": str(refusal.retry_after)}
    return None


def admin(
    handler: Callable[[Request, Runtime, str], Awaitable[Any]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            actor = await _authorize(request)
            _refuse_nul(request.query_params.multi_items(), "parameter")
            return json_response(await handler(request, request.app.state.runtime, actor))
        except Refused as exc:
            body = {"error": exc.code, "message": exc.message}
            return json_response(body, status_of(exc), headers=_headers(exc))
        except ops.OpsError as exc:
            code = (
                "not_found"
                if isinstance(exc, ops.NotFound)
                else "conflict"
                if isinstance(exc, ops.Conflict)
                else "bad_request"
            )
            return json_response({"error": code, "message": exc.message}, status_of(exc))

    return endpoint


def _when(raw: object, name: str) -> Any:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise BadInput(f"{name} must be a string: {WHEN_FORMATS}")
    try:
        return parse_when(raw)
    except ValueError as exc:
        raise BadInput(f"{name} {exc}") from exc


def _window(since: object, until: object) -> tuple[Any, Any]:
    """``since`` and ``until`` parsed; a window that ends before it starts is refused."""
    start, end = _when(since, "since"), _when(until, "until")
    if start is not None and end is not None and start > end:
        raise BadInput(f"since ({start.isoformat()}) is after until ({end.isoformat()})")
    return start, end


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise BodyTooLarge("request body too large")
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInput("body must be a JSON object")
    _refuse_nul(((k, v) for k, v in data.items() if isinstance(v, str)), "field")
    return data


def _refuse_nul(items: Iterable[tuple[str, str]], what: str) -> None:
    """Refuse NUL in text that may reach SQL: no column can hold it (PostgreSQL refuses)."""
    for name, value in items:
        if "\x00" in value:
            raise BadInput(f"{what} {name} may not contain NUL (\\u0000)")


def _in_thread(fn: Callable[[], Any]) -> Awaitable[Any]:
    return to_thread.run_sync(fn)


@admin
async def list_events(request: Request, runtime: Runtime, _actor: str) -> dict[str, Any]:
    q = request.query_params
    unknown = set(q.keys()) - {"source", "status", "since", "until", "limit", "cursor"}
    if unknown:
        raise BadInput(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    raw_limit = q.get("limit", "50")
    if not _LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise BadInput(f"limit must be 1 to {MAX_LIMIT}")
    limit = int(raw_limit)
    since, until = _window(q.get("since"), q.get("until"))
    flt = ops.EventFilter(
        source=q.get("source") or None, status=q.get("status") or None, since=since, until=until
    )
    cursor = q.get("cursor") or None
    if cursor is not None and not _ID.fullmatch(cursor):
        raise BadInput("cursor must be a next_cursor value")

    def query() -> list[dict[str, Any]]:
        with Session(read_only(runtime.engine)) as session:
            return [
                ops.summary(r) for r in ops.list_events(session, flt, limit=limit, before=cursor)
            ]

    rows = await _in_thread(query)
    next_cursor = rows[-1]["event_id"] if len(rows) == limit else None
    return {"events": rows, "next_cursor": next_cursor}


@admin
async def show_event(request: Request, runtime: Runtime, _actor: str) -> dict[str, Any]:
    event_id = _path_id(request)
    signal_id = signal_store.parse_signal_id(event_id)

    def query() -> dict[str, Any]:
        with Session(read_only(runtime.engine)) as session:
            if signal_id is None:
                return ops.detail(session, event_id, kinds.effect_counters())
            sig = session.get(Signal, signal_id)
            if sig is None:
                raise ops.NotFound(f"no signal {event_id}")
            return {
                **signal_store.summary(sig),
                "attempts_log": signal_store.attempts(session, signal_id),
            }

    result: dict[str, Any] = await _in_thread(query)
    return result


@admin
async def replay_event(request: Request, runtime: Runtime, actor: str) -> dict[str, Any]:
    body = await _json_body(request)
    event_id = _path_id(request)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadInput("reason must be a string")
    outcome = await _in_thread(
        lambda: service.replay(runtime, event_id, actor=actor, reason=reason)
    )
    result: dict[str, Any] = outcome.as_dict()
    return result


@admin
async def discard_event(request: Request, runtime: Runtime, actor: str) -> dict[str, Any]:
    body = await _json_body(request)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise BadInput('a discard needs {"reason": "..."}')
    event_id = _path_id(request)
    outcome = await _in_thread(
        lambda: service.discard(runtime, event_id, actor=actor, reason=reason)
    )
    result: dict[str, Any] = outcome.as_dict()
    return result


@admin
async def replay_dead_letters(request: Request, runtime: Runtime, actor: str) -> dict[str, Any]:
    body = await _json_body(request)
    unknown = set(body) - {"source", "since", "until", "dry_run", "reason", "status"}
    if unknown:
        raise BadInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadInput("dry_run must be true or false")
    for name in ("source", "reason"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadInput(f"{name} must be a string")
    status = body.get("status", "dead")
    if status not in ("dead", "rejected"):
        raise BadInput('status must be "dead" or "rejected"')
    since, until = _window(body.get("since"), body.get("until"))
    flt = ops.EventFilter(
        source=body.get("source") or None, status=status, since=since, until=until
    )
    reason = body.get("reason")

    def run() -> list[service.Outcome]:
        ids = service.dead_letter_ids(runtime, flt)
        return service.replay_many(runtime, ids, actor=actor, reason=reason, dry_run=dry_run)

    results = await _in_thread(run)
    done = [r for r in results if r.outcome in ("requeued", "would_replay")]
    data: dict[str, Any] = {
        "replayed": len(done),
        "event_ids": [r.event_id for r in done],
        "dry_run": dry_run,
    }
    if dry_run:
        data["effects"] = {r.event_id: r.effects for r in done}
    duplicates = [r.as_dict() for r in results if r.outcome == "duplicate"]
    if duplicates:
        data["duplicates"] = duplicates
    errors = [r.as_dict() for r in results if r.outcome == "error"]
    if errors:
        data["errors"] = errors
    return data


@admin
async def list_gaps(request: Request, runtime: Runtime, _actor: str) -> dict[str, Any]:
    """``GET /admin/gaps?source=``: what should have happened and has not, per source, oldest
    first, each with its last pull (``pull``: attempts, outcome, error, next attempt)."""
    q = request.query_params
    unknown = set(q.keys()) - {"source"}
    if unknown:
        raise BadInput(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    source = q.get("source") or None
    settings = request.app.state.settings
    if source is not None and source not in settings.sources:
        raise ops.NotFound(f"no source named {source[:64]!r}")
    rows = await _in_thread(lambda: gap_service.listing(runtime.engine, settings, source=source))
    return {"gaps": rows}
