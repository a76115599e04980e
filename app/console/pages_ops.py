"""Ops pages: the dashboard, the event log and its search, one event, dead letters, and the
replay and discard forms. Replay and discard call ``app.services.replay`` exactly as the admin API
and the CLI do, so they are recorded in ``event_actions`` the same way, with the console actor.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col
from starlette.responses import Response

from app import kinds
from app.console.inputs import Query
from app.console.web import Visit
from app.routes.refusals import BadInput, NoSuchPage
from app.services import gaps as gap_service
from app.services import replay as service
from app.store import events as event_store
from app.store import ops
from app.store import signals as signal_store
from app.store.models import InboundEvent, Signal

_ID = re.compile(r"(evt|sig)_[0-9a-f]{1,40}")
_MAX_REASON = 1000
PAGE_SIZE = 50
MAX_LIMIT = 500
_OUTCOMES = {
    "requeued": "requeued; a worker will process it shortly",
    "already_applied": "already applied; nothing changed",
    "duplicate": "a duplicate of a stored event (its idempotency key); not applied twice",
    "discarded": "discarded",
}


def _path_id(visit: Visit) -> str:
    value: str = visit.request.path_params["event_id"]
    if not _ID.fullmatch(value) or (
        value.startswith("sig_") and signal_store.parse_signal_id(value) is None
    ):
        raise ops.NotFound("No such event or signal.")
    return value


def _cursor(q: Query) -> str | None:
    cursor = q.text("cursor", max_len=48)
    if cursor is not None and not _ID.fullmatch(cursor):
        raise BadInput("cursor must be the value of a Next link.")
    return cursor


def _reason(visit: Visit, *, required: bool) -> str | None:
    reason = visit.form.get("reason", "").strip()
    if len(reason) > _MAX_REASON:
        raise BadInput(f"The reason is longer than {_MAX_REASON} characters.")
    if required and not reason:
        raise BadInput("A discard needs a reason: say why this event is given up.")
    return reason or None


async def dashboard(visit: Visit) -> Response:
    Query(visit.request, set())

    def counts(session: Session) -> dict[str, Any]:
        by_status = dict(
            session.execute(
                select(col(InboundEvent.status), func.count()).group_by(col(InboundEvent.status))
            ).all()
        )
        dead_signals = session.execute(
            select(func.count()).select_from(Signal).where(col(Signal.status) == "dead")
        ).scalar_one()
        return {
            "by_status": [(s, int(by_status.get(s, 0))) for s in ops.STATUSES],
            "dead_signals": int(dead_signals),
        }

    return visit.render("dashboard.html", await visit.read(counts))


EVENT_PARAMS = {"source", "status", "since", "until", "event_id", "limit", "cursor"}


async def events(visit: Visit) -> Response:
    q = Query(visit.request, EVENT_PARAMS)
    wanted = q.text("event_id", max_len=48)
    if wanted is not None:
        if not _ID.fullmatch(wanted):
            raise BadInput(f"{wanted!r} is not an event id (evt_...) or signal id (sig_N).")
        return visit.redirect(visit.path("console:event", event_id=wanted))
    since, until = q.window("since", "until")
    source = q.text("source", max_len=64)
    flt = ops.EventFilter(
        source=source, status=q.choice("status", ops.STATUSES), since=since, until=until
    )
    limit = q.integer("limit", PAGE_SIZE, low=1, high=MAX_LIMIT)
    cursor = _cursor(q)

    def query(session: Session) -> list[dict[str, Any]]:
        return [ops.summary(r) for r in ops.list_events(session, flt, limit=limit, before=cursor)]

    rows = await visit.read(query)
    filters = {k: v for k, v in q.raw().items() if k != "cursor"}
    next_cursor = rows[-1]["event_id"] if len(rows) == limit else None
    sources = sorted(visit.console.settings.sources)
    return visit.render(
        "events.html",
        {
            "rows": rows,
            "filters": filters,
            "statuses": ops.STATUSES,
            "sources": sources,
            "unknown_source": source if source and source not in sources and not rows else None,
            "next_query": {**filters, "cursor": next_cursor} if next_cursor else None,
            "first_query": filters if cursor else None,
        },
    )


async def event(visit: Visit) -> Response:
    event_id = _path_id(visit)
    signal_id = signal_store.parse_signal_id(event_id)
    if signal_id is not None:
        return await _signal(visit, event_id, signal_id)

    def query(session: Session) -> dict[str, Any]:
        data = ops.detail(session, event_id, kinds.effect_counters())
        data["signals"] = [
            signal_store.summary(s)
            for s in session.execute(
                select(Signal).where(col(Signal.event_id) == event_id).order_by(col(Signal.id))
            ).scalars()
        ]
        return data

    data = await visit.read(query)
    status = data["status"]
    return visit.render(
        "event.html",
        {
            "e": data,
            "replayable": status in ops.REPLAYABLE and "pruned_at" not in data["body"],
            "discardable": status not in event_store.APPLIED and status != "discarded",
        },
    )


async def _signal(visit: Visit, name: str, signal_id: int) -> Response:
    def query(session: Session) -> dict[str, Any]:
        sig = session.get(Signal, signal_id)
        if sig is None:
            raise ops.NotFound(f"No signal {name}.")
        return {
            **signal_store.summary(sig),
            "attempts_log": signal_store.attempts(session, signal_id),
        }

    data = await visit.read(query)
    return visit.render(
        "signal.html",
        {
            "s": data,
            "replayable": data["status"] in ("dead", "discarded", "retrying", "pending"),
            "discardable": data["status"] not in ("delivered", "discarded", "sending"),
        },
    )


DEAD_PARAMS = {"source", "since", "until", "limit", "cursor"}


async def dead_letters(visit: Visit) -> Response:
    q = Query(visit.request, DEAD_PARAMS)
    source = q.text("source", max_len=64)
    since, until = q.window("since", "until")
    limit = q.integer("limit", PAGE_SIZE, low=1, high=MAX_LIMIT)
    cursor = _cursor(q)
    flt = ops.EventFilter(source=source, status="dead", since=since, until=until)

    def query(session: Session) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows = [ops.summary(r) for r in ops.list_events(session, flt, limit=limit, before=cursor)]
        signals = [
            signal_store.summary(s)
            for s in signal_store.list_signals(
                session, status="dead", source=source, since=since, until=until, limit=MAX_LIMIT
            )
        ]
        return rows, signals

    rows, signals = await visit.read(query)
    filters = {k: v for k, v in q.raw().items() if k != "cursor"}
    next_cursor = rows[-1]["event_id"] if len(rows) == limit else None
    return visit.render(
        "dead_letters.html",
        {
            "rows": rows,
            "signals": signals if cursor is None else [],
            "filters": filters,
            "sources": sorted(visit.console.settings.sources),
            "here": visit.request.url.path
            + (f"?{visit.request.url.query}" if visit.request.url.query else ""),
            "next_query": {**filters, "cursor": next_cursor} if next_cursor else None,
            "first_query": filters if cursor else None,
        },
    )


async def gaps(visit: Visit) -> Response:
    """What should have happened and has not, per source, with the last pull of each."""
    q = Query(visit.request, {"source"})
    settings = visit.console.settings
    source = q.text("source", max_len=64)
    if source is not None and source not in settings.sources:
        raise BadInput(f"No source named {source!r}.")
    engine = visit.runtime.engine
    rows = await visit.call(lambda: gap_service.listing(engine, settings, source=source))
    return visit.render(
        "gaps.html",
        {"rows": rows, "source": source or "", "sources": sorted(settings.sources)},
    )


async def replay(visit: Visit) -> Response:
    event_id = _path_id(visit)
    reason = _reason(visit, required=False)
    runtime, actor = visit.runtime, visit.actor
    outcome = await visit.call(
        lambda: service.replay(runtime, event_id, actor=actor, reason=reason)
    )
    return _acted(visit, event_id, outcome.outcome)


async def discard(visit: Visit) -> Response:
    event_id = _path_id(visit)
    reason = _reason(visit, required=True)
    assert reason is not None
    runtime, actor = visit.runtime, visit.actor
    outcome = await visit.call(
        lambda: service.discard(runtime, event_id, actor=actor, reason=reason)
    )
    return _acted(visit, event_id, outcome.outcome)


def _acted(visit: Visit, event_id: str, outcome: str) -> Response:
    """Say what a replay or discard did, and go back (to the event's page by default)."""
    visit.session.flash("ok", f"{event_id}: {_OUTCOMES.get(outcome, outcome)}.")
    return visit.redirect(visit.local_next(visit.path("console:event", event_id=event_id)))


async def not_found(visit: Visit) -> Response:
    raise NoSuchPage("There is no such console page.")
