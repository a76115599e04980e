"""Ops on the event log: listing, detail, replay, discard, retention. SQL is the source of truth.

Replay puts an event back to ``received`` (its retry budget counting afresh) and the caller
queues its job after the commit; replaying an event that is already applied changes nothing.
Discard is for events that are not applied. Every replay and discard is recorded in
``event_actions`` with who, when, why and the outcome, refused ones included.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, func, select, update
from sqlmodel import Session, col

from app.errors import HookledgerError
from app.store import conflicts as conflict_store
from app.store import events as event_store
from app.store.models import (
    EventAction,
    EventAttempt,
    InboundEvent,
    JournalEntry,
    LedgerPosting,
    SignalAttempt,
)

STATUSES = ("received", "processed", "unhandled", "retrying", "dead", "discarded", "rejected")
REPLAYABLE = frozenset({"received", "retrying", "dead", "discarded", "rejected"})


class OpsError(HookledgerError):
    """An ops request that cannot be carried out: bad input (a missing reason, ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(OpsError):
    """No such event or signal."""


class Conflict(OpsError):
    """The event or signal is not in a state that allows the request."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    source: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[Any]:
        e = InboundEvent
        where: list[Any] = []
        if self.source:
            where.append(col(e.source) == self.source)
        if self.status:
            if self.status not in STATUSES:
                raise OpsError(f"status must be one of {', '.join(STATUSES)}")
            where.append(col(e.status) == self.status)
        if self.since:
            where.append(col(e.received_at) >= self.since)
        if self.until:
            where.append(col(e.received_at) <= self.until)
        return where


def list_events(
    session: Session, flt: EventFilter, *, limit: int, before: str | None = None
) -> list[InboundEvent]:
    """Newest first; ``before`` is the id after which to continue (ids are time-ordered)."""
    where = flt.clauses()
    if before:
        where.append(col(InboundEvent.id) < before)
    stmt = select(InboundEvent).where(*where).order_by(col(InboundEvent.id).desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def summary(row: InboundEvent) -> dict[str, Any]:
    """One line of the event log."""
    return {
        "event_id": row.id,
        "source": row.source,
        "source_kind": row.source_kind,
        "type": row.raw_type,
        "event": row.event_type,
        "status": row.status,
        "attempts": row.attempts,
        "received_at": row.received_at.isoformat(),
        "processed_at": row.processed_at.isoformat() if row.processed_at else None,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "last_error": row.last_error,
    }


def _body(row: InboundEvent) -> dict[str, Any]:
    if row.body_pruned_at is not None:
        return {"pruned_at": row.body_pruned_at.isoformat(), "sha256": row.body_sha256}
    try:
        return {"text": row.body.decode("utf-8"), "sha256": row.body_sha256}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(row.body).decode(), "sha256": row.body_sha256}


EffectCounter = Callable[[Session, Sequence[str]], dict[str, int]]


def detail(
    session: Session, event_id: str, counters: Sequence[EffectCounter] = ()
) -> dict[str, Any]:
    """Everything about one event: raw body, redacted headers, attempts, actions, effects
    (with the rows each of ``counters`` counts: ``app.kinds.effect_counters()``) and the
    conflicting bodies sent under its key."""
    row = session.get(InboundEvent, event_id)
    if row is None:
        raise NotFound(f"no event {event_id}")
    attempts = session.execute(
        select(EventAttempt)
        .where(col(EventAttempt.event_id) == event_id)
        .order_by(col(EventAttempt.attempt))
    ).scalars()
    actions = session.execute(
        select(EventAction)
        .where(col(EventAction.event_id) == event_id)
        .order_by(col(EventAction.id))
    ).scalars()
    return {
        **summary(row),
        "idempotency_key": row.idempotency_key,
        "content_type": row.content_type,
        "client_ip": row.client_ip,
        "headers": orjson.loads(row.headers),
        "body": _body(row),
        "attempts_log": [
            {
                "attempt": a.attempt,
                "started_at": a.started_at.isoformat(),
                "finished_at": a.finished_at.isoformat(),
                "outcome": a.outcome,
                "error": a.error,
            }
            for a in attempts
        ],
        "actions": [
            {
                "action": a.action,
                "outcome": a.outcome,
                "actor": a.actor,
                "reason": a.reason,
                "at": a.at.isoformat(),
            }
            for a in actions
        ],
        "effects": effects(session, event_id, counters),
        "conflicts": conflict_store.of_event(session, event_id),
    }


def effects(
    session: Session, event_id: str, counters: Sequence[EffectCounter] = ()
) -> dict[str, Any]:
    """What the event did to the ledger: its journal postings, and per effect table of its
    source kind (``counters``, each kind's ``effects``) how many rows it wrote."""
    postings = session.execute(
        select(LedgerPosting)
        .where(col(LedgerPosting.event_id) == event_id)
        .order_by(col(LedgerPosting.id))
    ).scalars()
    found: dict[str, Any] = {
        "journal_entries": [
            e.id
            for e in session.execute(
                select(JournalEntry).where(col(JournalEntry.event_id) == event_id)
            ).scalars()
        ],
        "postings": [
            {
                "account_id": p.account_id,
                "currency": p.currency,
                "amount": p.amount,
                "balance": p.balance,
                "tran_type": p.tran_type,
            }
            for p in postings
        ],
    }
    for count in counters:
        found.update(count(session, [event_id]))
    return found


def record_action(
    session: Session,
    event_id: str,
    action: str,
    outcome: str,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
) -> None:
    session.add(
        EventAction(
            event_id=event_id,
            action=action,
            outcome=outcome,
            actor=actor[:128],
            reason=reason,
            at=now,
        )
    )


def replay(
    session: Session, event_id: str, *, actor: str, reason: str | None, now: datetime
) -> str:
    """Make a not-yet-applied event pending again; return ``"requeued"`` or
    ``"already_applied"``. The caller commits, then queues the job. Raises ``OpsError``."""
    row = event_store.lock_event(session, event_id)
    if row is None:
        raise NotFound(f"no event {event_id}")
    if row.status in event_store.APPLIED:
        record_action(
            session, event_id, "replay", "already_applied", actor=actor, reason=reason, now=now
        )
        return "already_applied"
    if row.body_pruned_at is not None:
        raise Conflict(f"event {event_id} cannot be replayed: its raw body was pruned")
    row.status = "received"
    row.retry_base = row.attempts
    row.next_attempt_at = None
    row.enqueued_at = now
    row.queued_job = None  # its own single-event job (hl-<id>)
    session.add(row)
    record_action(session, event_id, "replay", "requeued", actor=actor, reason=reason, now=now)
    return "requeued"


def discard(session: Session, event_id: str, *, actor: str, reason: str, now: datetime) -> str:
    """Give up on an event that is not applied; return ``"discarded"``. Raises ``OpsError``."""
    if not reason.strip():
        raise OpsError("a discard needs a reason")
    row = event_store.lock_event(session, event_id)
    if row is None:
        raise NotFound(f"no event {event_id}")
    if row.status in event_store.APPLIED:
        raise Conflict(f"event {event_id} is {row.status}: its effect stays; nothing to discard")
    if row.status == "discarded":
        return "discarded"
    row.status = "discarded"
    row.next_attempt_at = None
    session.add(row)
    record_action(session, event_id, "discard", "discarded", actor=actor, reason=reason, now=now)
    return "discarded"


def dead_letters(
    session: Session, flt: EventFilter, *, limit: int = 100_000, status: str = "dead"
) -> list[str]:
    """Ids of events of ``status`` (dead letters, or ``rejected``) matching ``flt``'s source
    and times, oldest first."""
    where = [
        *EventFilter(flt.source, None, flt.since, flt.until).clauses(),
        col(InboundEvent.status) == status,
    ]
    stmt = select(col(InboundEvent.id)).where(*where).order_by(col(InboundEvent.id)).limit(limit)
    return list(session.execute(stmt).scalars())


PRUNABLE = ("processed", "unhandled", "discarded")  # final: the raw body is not needed again


def _prunable(older_than: datetime) -> list[Any]:
    return [
        col(InboundEvent.body_pruned_at).is_(None),
        col(InboundEvent.received_at) < older_than,
        col(InboundEvent.status).in_(PRUNABLE),
    ]


def prunable(session: Session, *, older_than: datetime, limit: int) -> list[str]:
    """Applied or discarded events received before ``older_than`` that still hold a body,
    oldest first (the partial index ``ix_inbound_unpruned``: a batch never rescans what the
    batches before it pruned)."""
    stmt = (
        select(col(InboundEvent.id))
        .where(*_prunable(older_than))
        .order_by(col(InboundEvent.received_at))
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def count_prunable(session: Session, *, older_than: datetime) -> int:
    """How many events ``prunable`` would yield, all batches together."""
    stmt = select(func.count()).select_from(InboundEvent).where(*_prunable(older_than))
    return int(session.execute(stmt).scalar_one())


def prune(session: Session, event_ids: Sequence[str], *, now: datetime) -> int:
    """Drop the raw bodies of ``event_ids``; the hash and receipt time stay. Returns how many."""
    if not event_ids:
        return 0
    result = session.execute(
        update(InboundEvent)
        .where(
            col(InboundEvent.id).in_(list(event_ids)), col(InboundEvent.body_pruned_at).is_(None)
        )
        .values(body=b"", body_pruned_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def delete_attempts(session: Session, *, older_than: datetime, limit: int) -> tuple[int, int]:
    """Delete up to ``limit`` event attempts that finished, and up to ``limit`` signal delivery
    log rows made, before ``older_than``, oldest first. The events and signals keep their
    attempt counts and last errors. Returns (event attempts, delivery rows) deleted."""
    counts = []
    for model, when in (
        (EventAttempt, EventAttempt.finished_at),
        (SignalAttempt, SignalAttempt.at),
    ):
        oldest = (
            select(col(model.id)).where(col(when) < older_than).order_by(col(when)).limit(limit)
        )
        result = session.execute(delete(model).where(col(model.id).in_(oldest)))
        counts.append(int(result.rowcount))  # type: ignore[attr-defined]
    return counts[0], counts[1]


def days_ago(now: datetime, days: float) -> datetime:
    return now - timedelta(days=days)
