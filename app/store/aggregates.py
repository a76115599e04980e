"""Aggregates (the rows events change: orders, contracts, ...) created and locked for a
batch, and journal entries posted for an event. Used by every source kind's ``apply``.

``lock_aggregates`` creates and locks, ahead, every aggregate a batch will change (one
multi-row insert and one ``SELECT ... FOR UPDATE`` per table, in key order, so batches never
deadlock on them); ``locked`` returns one of them, creating and locking it if it was not.
Locked rows are kept for the transaction only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, any_, func, literal, or_, select
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, SQLModel

from app.domain.journal import EntryDraft
from app.store.db import insert_ignore, insert_ignore_many
from app.store.journal import post_entry
from app.store.models import InboundEvent, table_of

_LOCKED = "hookledger_locked_aggregates"


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The row an event changes (an order, a contract, a rental order): its model, its natural
    key, and the values it is created with if it does not exist yet."""

    model: type[SQLModel]
    keys: dict[str, Any]
    initial: dict[str, Any]

    @property
    def ident(self) -> tuple[Any, ...]:
        return (self.model.__name__, *self.keys.values())


def locked(session: Session, agg: Aggregate) -> Any:
    """The aggregate's row, created if missing and locked for update (``FOR UPDATE`` on
    PostgreSQL; SQLite already holds the write lock). Rows locked ahead by ``lock_aggregates``
    in this transaction are taken from there."""
    cached = session.info.get(_LOCKED, {}).get(agg.ident)
    if cached is not None:
        return cached
    dialect = session.get_bind().dialect.name
    table = table_of(agg.model)
    session.execute(insert_ignore(dialect, table, {**agg.keys, **agg.initial}, list(agg.keys)))
    stmt = (
        select(agg.model)
        .filter_by(**agg.keys)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(stmt).scalar_one()


def lock_aggregates(session: Session, aggregates: list[Aggregate]) -> None:
    """Create and lock, ahead, every aggregate a batch of events will change: per model one
    multi-row insert and one ``SELECT ... FOR UPDATE`` in key order (so batches never deadlock
    on them). The first event naming an aggregate gives its initial values, as applying the
    events one by one would. Kept for this transaction only."""
    by_model: dict[type[SQLModel], dict[tuple[Any, ...], Aggregate]] = {}
    for agg in aggregates:
        by_model.setdefault(agg.model, {}).setdefault(agg.ident, agg)
    dialect = session.get_bind().dialect.name
    locked = session.info.setdefault(_LOCKED, {})
    for model in sorted(by_model, key=lambda m: m.__name__):
        found = sorted(by_model[model].values(), key=lambda a: tuple(a.keys.values()))
        names = list(found[0].keys)
        table = table_of(model)
        session.execute(
            insert_ignore_many(dialect, table, names), [{**a.keys, **a.initial} for a in found]
        )
        columns = [getattr(model, name) for name in names]
        stmt = (
            select(model)
            .where(_keys_match(dialect, columns, [tuple(a.keys.values()) for a in found]))
            .order_by(*columns)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        for obj in session.execute(stmt).scalars():
            locked[(model.__name__, *(getattr(obj, name) for name in names))] = obj


def _keys_match(dialect: str, columns: list[Any], keys: list[tuple[Any, ...]]) -> Any:
    """``(source, key) IN keys`` written so the unique index is used whatever the plan: per
    source, ``key = ANY(array)`` on PostgreSQL (a prepared statement's generic plan would scan
    the table for a long row-value ``IN``), ``key IN (...)`` on SQLite."""
    first, second = columns
    by_first: dict[Any, list[Any]] = {}
    for a, b in keys:
        by_first.setdefault(a, []).append(b)
    clauses = [
        and_(
            first == a,
            second == any_(literal(bs, ARRAY(second.type)))
            if dialect == "postgresql"
            else second.in_(bs),
        )
        for a, bs in sorted(by_first.items())
    ]
    return or_(*clauses)


@sa_event.listens_for(OrmSession, "after_transaction_end")
def _forget_locked(session: OrmSession, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction ended: its locks are gone
        session.info.pop(_LOCKED, None)


def post(
    session: Session,
    row: InboundEvent,
    draft: EntryDraft,
    now: datetime,
    *,
    sett_date: int | None = None,
) -> int:
    """Post ``draft`` for the event stored as ``row``, dated at its receipt (``sett_date``,
    the settlement day, defaults to the same); return the entry id."""
    date = int(row.received_at.timestamp())
    return post_entry(
        session, draft, event_id=row.id, date=date, sett_date=sett_date or date, now=now
    )


def count_by_event(session: Session, model: type[SQLModel], event_ids: Sequence[str]) -> int:
    """How many rows of ``model`` (a table with an ``event_id`` column) name these events."""
    if not event_ids:
        return 0
    column = table_of(model).c.event_id
    stmt = select(func.count()).select_from(table_of(model)).where(column.in_(list(event_ids)))
    return int(session.execute(stmt).scalar_one())
