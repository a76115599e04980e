"""The tables every source kind shares: events, their attempts and actions, the journal,
balances, signals. Each kind's own tables (orders, contracts, deposits, ...) live in its package
(``app.kinds.<kind>.tables``) on the same metadata. Invariants enforced by the database as well
as by code:

- one inbound event per (source, idempotency_key): the durable dedupe guarantee;
- one journal entry per event at most; every entry balances per currency (a PostgreSQL
  statement trigger); amounts are exact decimals.

The schema itself is made and changed by the revisions in ``app/store/migrations`` (see
``app.store.schema``); a change to a model here needs a revision there, and
``tests/migrations`` fails until the two agree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Engine,
    Index,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlmodel import Field, SQLModel

from app.store.db import ExactDecimal, insert_ignore

ZERO = Decimal(0)


def amount_field(*, nullable: bool = False, default: Decimal | None = ZERO) -> Decimal:
    """An exact decimal column (``NUMERIC(38, 18)``), for every table that holds money."""
    return Field(default=default, sa_type=ExactDecimal, nullable=nullable)  # type: ignore[no-any-return]


class InboundEvent(SQLModel, table=True):
    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("source", "idempotency_key", name="uq_inbound_source_key"),
        Index("ix_inbound_status_due", "status", "next_attempt_at"),
        Index("ix_inbound_received", "received_at"),
        # What retention has left to prune, oldest first (a partial index: pruned rows leave it).
        Index(
            "ix_inbound_unpruned",
            "received_at",
            postgresql_where=text("body_pruned_at IS NULL"),
            sqlite_where=text("body_pruned_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    source: str = Field(max_length=64)
    source_kind: str = Field(max_length=16)
    idempotency_key: str = Field(max_length=300)
    raw_type: str = Field(max_length=64)
    event_type: str | None = Field(default=None, max_length=64)
    status: str = Field(default="received", max_length=16)
    content_type: str = Field(max_length=64)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    body_sha256: str = Field(max_length=64)
    headers: str = Field(sa_column=Column(Text, nullable=False))
    client_ip: str | None = Field(default=None, max_length=64)
    received_at: datetime
    enqueued_at: datetime | None = None
    queued_job: str | None = Field(default=None, max_length=80)  # RQ job id; None: hl-<id>
    next_attempt_at: datetime | None = None
    processed_at: datetime | None = None
    attempts: int = 0
    retry_base: int = 0  # attempts made before the last replay: retries count from here
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    body_pruned_at: datetime | None = None  # retention dropped the raw body; the hash remains
    # push: a callback the counterpart sent; pull: an answer hookledger asked its API for
    origin: str = Field(default="push", max_length=8, sa_column_kwargs={"server_default": "push"})


class EventConflict(SQLModel, table=True):
    """A callback with a stored event's idempotency key but another body: answered
    ``duplicate``, and kept here on the first event (one row per distinct body)."""

    __tablename__ = "event_conflicts"
    __table_args__ = (UniqueConstraint("event_id", "body_sha256", name="uq_conflict_event_body"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="inbound_events.id", index=True, max_length=40)
    source: str = Field(max_length=64)
    body_sha256: str = Field(max_length=64)
    headers: str = Field(sa_column=Column(Text, nullable=False))  # redacted, as JSON
    diff: str = Field(sa_column=Column(Text, nullable=False))  # parsed fields that differ, JSON
    first_at: datetime
    last_at: datetime
    count: int = 1


class PullState(SQLModel, table=True):
    """Where asking a counterpart for one missing thing (an order, a rental order) stands."""

    __tablename__ = "pull_state"
    __table_args__ = (
        UniqueConstraint("source", "ident", name="uq_pull_source_ident"),
        Index("ix_pull_due", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    ident: str = Field(max_length=128)
    attempts: int = 0
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_outcome: str | None = Field(default=None, max_length=16)  # pulled|not_found|error|...
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    pulled_event_id: str | None = Field(default=None, max_length=40)


class EventAction(SQLModel, table=True):
    """Every replay and discard (and bulk prune), with who did it, when and why."""

    __tablename__ = "event_actions"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="inbound_events.id", index=True, max_length=40)
    action: str = Field(max_length=16)  # replay | discard
    outcome: str = Field(max_length=24)  # requeued | already_applied | discarded | refused
    actor: str = Field(max_length=128)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    at: datetime


class EventAttempt(SQLModel, table=True):
    __tablename__ = "event_attempts"
    __table_args__ = (Index("ix_event_attempts_finished", "finished_at"),)  # retention

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="inbound_events.id", index=True, max_length=40)
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str = Field(max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text))


class JournalEntry(SQLModel, table=True):
    """One balanced set of postings, caused by exactly one inbound event (unique)."""

    __tablename__ = "journal_entries"
    __table_args__ = (UniqueConstraint("event_id", name="uq_journal_event"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="inbound_events.id", max_length=40)
    business_type: str = Field(max_length=32)
    market: str = Field(max_length=16)
    product_code: str = Field(max_length=128)
    description: str = Field(sa_column=Column(Text, nullable=False))
    date: int = Field(sa_type=BigInteger, index=True)
    sett_date: int = Field(sa_type=BigInteger)
    created_at: datetime


class LedgerPosting(SQLModel, table=True):
    """One leg of a journal entry. ``balance`` is the account's running balance in ``currency``
    after this posting: postings of one (account, currency) are made in ``id`` order under a
    lock on its ``account_balances`` row."""

    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="ck_posting_not_zero"),
        CheckConstraint("io_type IN ('in', 'out')", name="ck_posting_io_type"),
        Index("ix_postings_account_id", "account_id", "id"),
        Index("ix_postings_account_currency", "account_id", "currency", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="journal_entries.id", index=True)
    event_id: str = Field(max_length=40)
    account_id: str = Field(max_length=64)
    customer: bool
    currency: str = Field(max_length=16)
    amount: Decimal = amount_field()
    io_type: str = Field(max_length=3)  # "in" | "out": the sign of amount, queryable on SQLite too
    balance: Decimal = amount_field()
    tran_type: str = Field(max_length=16)
    business_type: str = Field(max_length=32)
    business_sub_type: str = Field(max_length=16)
    market: str = Field(max_length=16)
    product_code: str = Field(max_length=128)
    product_name: str = Field(max_length=128)
    price: Decimal | None = amount_field(nullable=True, default=None)
    qty: Decimal | None = amount_field(nullable=True, default=None)
    fx_currency: str | None = Field(default=None, max_length=16)
    fx_amt: Decimal | None = amount_field(nullable=True, default=None)
    fx_rate: Decimal | None = amount_field(nullable=True, default=None)
    date: int = Field(sa_type=BigInteger)
    sett_date: int = Field(sa_type=BigInteger)


class AccountBalance(SQLModel, table=True):
    """Current balance per (account, currency): the lock that orders postings."""

    __tablename__ = "account_balances"
    __table_args__ = (UniqueConstraint("account_id", "currency", name="uq_balance_account_ccy"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: str = Field(max_length=64)
    currency: str = Field(max_length=16)
    balance: Decimal = amount_field()
    last_posting_id: int | None = None
    updated_at: datetime


class Signal(SQLModel, table=True):
    """A follow-up signal: written with the ledger effect that caused it (the outbox), then
    delivered. Unique per (event, rule): a rule never fires twice for one event."""

    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("event_id", "rule", name="uq_signal_event_rule"),
        Index("ix_signals_status_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="inbound_events.id", max_length=40)
    rule: str = Field(max_length=64)
    target: str = Field(max_length=64)
    status: str = Field(
        default="pending", max_length=16
    )  # pending|sending|retrying|delivered|dead|discarded
    payload: str = Field(sa_column=Column(Text, nullable=False))  # what to say, without a timestamp
    body: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary)
    )  # last body sent, as sent
    body_stamp: datetime | None = None  # the timestamp inside ``body``
    sending_since: datetime | None = None
    outcome_unknown: bool = False  # a send ended without an answer: it may have been acted on
    attempts: int = 0
    retry_base: int = 0
    next_attempt_at: datetime | None = None
    enqueued_at: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class SignalAttempt(SQLModel, table=True):
    """The delivery log: one row per request sent (or refused before sending)."""

    __tablename__ = "signal_attempts"
    __table_args__ = (Index("ix_signal_attempts_at", "at"),)  # retention

    id: int | None = Field(default=None, primary_key=True)
    signal_id: int = Field(foreign_key="signals.id", index=True)
    attempt: int
    at: datetime
    latency_ms: int | None = None
    http_status: int | None = None
    outcome: str = Field(max_length=16)
    response: str | None = Field(default=None, sa_column=Column(Text))  # an excerpt
    error: str | None = Field(default=None, sa_column=Column(Text))


class TargetState(SQLModel, table=True):
    """The kill switch: a paused target sends nothing until resumed."""

    __tablename__ = "target_states"

    target: str = Field(primary_key=True, max_length=64)
    paused: bool = False
    changed_by: str = Field(max_length=128)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    changed_at: datetime


class LedgerMeta(SQLModel, table=True):
    """Facts about this database itself; ``instance_id`` names it (see ``instance_id``)."""

    __tablename__ = "hookledger_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


def instance_id(engine: Engine) -> str:
    """This database's id, made once when it is first used: Redis keys that vouch for rows in
    it carry it, so a new or recreated database never trusts what Redis remembers of another."""
    table = table_of(LedgerMeta)
    with engine.begin() as conn:
        conn.execute(
            insert_ignore(
                engine.dialect.name,
                table,
                {"key": "instance_id", "value": uuid.uuid4().hex},
                ["key"],
            )
        )
        value = conn.execute(select(table.c.value).where(table.c.key == "instance_id")).scalar_one()
    return str(value)


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy ``Table`` of a table model."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table
