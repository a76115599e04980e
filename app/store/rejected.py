"""Rejected callbacks: kept, counted, given their real key when a replay parses them, expired.

A callback that passed its source's authentication but not parsing (400) or the schema (422)
is stored with status ``rejected`` under the key ``rejected:<body sha256>``: one row per
distinct body of a source, whatever the number of sends. It is never queued. A replay that
parses it under the current code and config gives it the key and event type a valid
callback would have had (``accept``); retention deletes the ones still rejected after
``rejected_days`` (``expired`` and ``delete``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from app.store import events as event_store
from app.store.db import insert_ignore
from app.store.models import EventAction, EventAttempt, EventConflict, InboundEvent, table_of

STATUS = "rejected"
PREFIX = "rejected:"  # of the idempotency key a rejected body is kept under


def key_of(body_sha256: str) -> str:
    """The idempotency key a rejected body is kept under: its hash (it has no other)."""
    return f"{PREFIX}{body_sha256}"


def is_rejected_key(idempotency: str) -> bool:
    """Whether an idempotency key is a rejected body's (``key_of``)."""
    return idempotency.startswith(PREFIX)


def count(session: Session, source: str) -> int:
    """How many callbacks of ``source`` are kept as rejected (a range of
    ``ix_inbound_status_due``, at most the source's ``rejected_max`` rows)."""
    stmt = (
        select(func.count())
        .select_from(InboundEvent)
        .where(col(InboundEvent.status) == STATUS, col(InboundEvent.source) == source)
    )
    return int(session.execute(stmt).scalar_one())


def keep(session: Session, row: dict[str, Any]) -> bool:
    """Store a rejected callback (every ``inbound_events`` column of ``row``) unless its
    source already keeps that body; return whether this call stored it. Does not commit."""
    table = table_of(InboundEvent)
    stmt = insert_ignore(session.get_bind().dialect.name, table, row, ["source", "idempotency_key"])
    return session.execute(stmt.returning(table.c.id)).first() is not None


def accept(
    session: Session,
    row: InboundEvent,
    *,
    key: str,
    raw_type: str,
    event_type: str | None,
    source_kind: str,
    now: datetime,
) -> str | None:
    """Give a locked rejected ``row`` that now parses the key and type it parses to and make
    it ``received`` (its receipt time stays); return ``None``. If the source already holds an
    event under that key (the counterpart sent a valid version since), the row is left as it
    is and that event's id is returned: it must not be applied twice. Does not commit."""
    found = event_store.stored_ids(session, [(row.source, key)])
    if found:
        return found[(row.source, key)]
    try:
        with session.begin_nested():
            session.execute(
                update(InboundEvent)
                .where(col(InboundEvent.id) == row.id)
                .values(
                    idempotency_key=key,
                    raw_type=raw_type,
                    event_type=event_type,
                    source_kind=source_kind,
                    status="received",
                    last_error=None,
                    retry_base=row.attempts,
                    next_attempt_at=None,
                    enqueued_at=now,
                    queued_job=None,
                )
            )
    except IntegrityError:
        # A receipt stored the key between the lookup and the update: it is that event's.
        found = event_store.stored_ids(session, [(row.source, key)])
        if not found:
            raise
        return found[(row.source, key)]
    session.refresh(row)
    return None


def expired(session: Session, *, older_than: datetime, limit: int) -> list[str]:
    """Ids of events still ``rejected`` that were received before ``older_than``, oldest
    first (the ``status`` range of ``ix_inbound_status_due``; rejected rows are few: each
    source keeps at most its ``rejected_max``)."""
    stmt = (
        select(col(InboundEvent.id))
        .where(col(InboundEvent.status) == STATUS, col(InboundEvent.received_at) < older_than)
        .order_by(col(InboundEvent.id))
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def delete_events(session: Session, event_ids: Sequence[str]) -> int:
    """Delete the rejected events ``event_ids`` with the rows that name them (actions and
    attempts first: their foreign keys). A rejected event has no ledger effect and no
    signal. Returns how many events were deleted. Does not commit."""
    if not event_ids:
        return 0
    # Only rows still rejected: one replayed since it was listed keeps everything.
    still = select(col(InboundEvent.id)).where(
        col(InboundEvent.id).in_(list(event_ids)), col(InboundEvent.status) == STATUS
    )
    ids = list(session.execute(still.with_for_update()).scalars())
    if not ids:
        return 0
    for model in (EventAction, EventAttempt, EventConflict):
        session.execute(delete(model).where(col(model.event_id).in_(ids)))
    result = session.execute(delete(InboundEvent).where(col(InboundEvent.id).in_(ids)))
    return int(result.rowcount)  # type: ignore[attr-defined]
