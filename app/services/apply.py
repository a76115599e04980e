"""Applying one parsed event to the ledger tables, inside the caller's transaction.

What an event does is its source kind's (``app.kinds``): this module only asks the kind. Each
kind gets-or-creates its aggregate with an ``INSERT ... ON CONFLICT DO NOTHING``, locks it
(``FOR UPDATE`` on PostgreSQL; SQLite already holds the database write lock), merges
monotonically, and records the event's own effect row, whose unique ``event_id`` makes a
second application impossible at the database level too.
"""

from __future__ import annotations

from sqlmodel import Session

from app import kinds
from app.domain.payloads import ParsedEvent
from app.kinds.base import ApplyContext
from app.store.aggregates import Aggregate, lock_aggregates
from app.store.models import InboundEvent

__all__ = ["ApplyContext", "aggregate_of", "apply_event", "lock_aggregates"]


def aggregate_of(row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext) -> Aggregate | None:
    """The aggregate ``parsed`` changes, if any (deposits and unhandled events have none)."""
    if parsed.event is None:
        return None
    return kinds.get(parsed.kind).aggregate(row, parsed, ctx)


def apply_event(session: Session, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext) -> str:
    """Apply ``parsed`` (stored as ``row``); return ``"processed"`` or ``"unhandled"``.

    Raises ``PermanentError`` when the event can never be applied."""
    if parsed.event is None:
        return "unhandled"
    kinds.get(parsed.kind).apply(session, row, parsed, ctx)
    return "processed"
