"""The inbound event log: durable receipt, status changes, and what the sweep must re-queue.

Statuses: ``received`` -> ``processed`` | ``unhandled`` | ``retrying`` -> ... -> ``dead``;
``discarded`` is set by ops. ``FINAL`` statuses are never processed again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlmodel import Session, col

from app.store.db import insert_ignore
from app.store.models import EventAttempt, InboundEvent, table_of

FINAL = frozenset({"processed", "unhandled", "dead", "discarded"})
APPLIED = frozenset({"processed", "unhandled"})
PENDING = ("received", "retrying")


def new_event_id(now: float | None = None) -> str:
    """Return a new opaque, time-ordered event id: ``evt_`` + 12 hex ms + 12 hex random."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"evt_{ms:012x}{os.urandom(6).hex()}"


@dataclass(frozen=True, slots=True)
class Receipt:
    event_id: str
    created: bool


def insert_or_get(session: Session, event: InboundEvent) -> Receipt:
    """Store ``event`` unless (source, idempotency_key) exists; return the id that is stored.

    Does not commit: the caller owns the transaction."""
    dialect = session.get_bind().dialect.name
    table = table_of(InboundEvent)
    values = {c.name: getattr(event, c.name) for c in table.columns}
    stmt = insert_ignore(dialect, table, values, ["source", "idempotency_key"]).returning(
        table.c.id
    )
    inserted = session.execute(stmt).scalar_one_or_none()
    if inserted is not None:
        return Receipt(inserted, True)
    existing = session.execute(
        select(InboundEvent.id).where(  # type: ignore[call-overload]
            InboundEvent.source == event.source,
            InboundEvent.idempotency_key == event.idempotency_key,
        )
    ).scalar_one()
    return Receipt(existing, False)


def lock_event(session: Session, event_id: str) -> InboundEvent | None:
    """Return the event row locked for update (PostgreSQL), or ``None`` if there is none."""
    stmt = (
        select(InboundEvent)
        .where(InboundEvent.id == event_id)  # type: ignore[arg-type]
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(stmt).scalar_one_or_none()


def add_attempt(
    session: Session,
    event: InboundEvent,
    *,
    started: datetime,
    finished: datetime,
    outcome: str,
    error: str | None = None,
) -> None:
    """Record one processing attempt of ``event`` (its ``attempts`` already counted)."""
    session.add(
        EventAttempt(
            event_id=event.id,
            attempt=event.attempts,
            started_at=started,
            finished_at=finished,
            outcome=outcome,
            error=error,
        )
    )


def due_for_sweep(
    session: Session, *, now: datetime, stale_after_s: float, limit: int
) -> list[str]:
    """Ids of unfinished events the sweep should (re-)queue, oldest first.

    Due: a ``retrying`` event whose ``next_attempt_at`` has passed, or any pending event with no
    retry pending whose last enqueue (or receipt) is older than ``stale_after_s``: its job was
    lost (Redis flushed, worker killed) or never made (Redis was down at receipt)."""
    stale = now - timedelta(seconds=stale_after_s)
    last_queued = func.coalesce(InboundEvent.enqueued_at, InboundEvent.received_at)
    next_at = col(InboundEvent.next_attempt_at)
    stmt = (
        select(InboundEvent.id)  # type: ignore[call-overload]
        .where(
            col(InboundEvent.status).in_(PENDING),
            or_(
                and_(next_at.is_not(None), next_at <= now),
                and_(next_at.is_(None), last_queued < stale),
            ),
        )
        .order_by(InboundEvent.received_at)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def mark_enqueued(session: Session, event_ids: list[str], *, now: datetime) -> None:
    """Note that jobs were (re-)made for ``event_ids``; a pending retry is now in the queue."""
    if not event_ids:
        return
    session.execute(
        update(InboundEvent)
        .where(InboundEvent.id.in_(event_ids))  # type: ignore[attr-defined]
        .where(InboundEvent.status.in_(PENDING))  # type: ignore[attr-defined]
        .values(enqueued_at=now, next_attempt_at=None)
    )
