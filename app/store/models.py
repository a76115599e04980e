"""SQL tables. Invariants enforced by the database as well as by code:

- one inbound event per (source, idempotency_key): the durable dedupe guarantee;
- one order per (source, order_id), one contract per (source, position_id), one rental order per
  (source, rental_id), one deposit per (source, tx_hash), one trade per (source, trade_id);
- one ``order_event`` row per (event, order): an event's effect on an order is applied once;
- cumulative order amounts are non-negative (CHECK); amounts are exact decimals.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from app.store.db import ExactDecimal

ZERO = Decimal(0)


def _amount(*, nullable: bool = False, default: Decimal | None = ZERO) -> Decimal:
    return Field(default=default, sa_type=ExactDecimal, nullable=nullable)  # type: ignore[no-any-return]


class InboundEvent(SQLModel, table=True):
    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("source", "idempotency_key", name="uq_inbound_source_key"),
        Index("ix_inbound_status_due", "status", "next_attempt_at"),
        Index("ix_inbound_received", "received_at"),
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
    next_attempt_at: datetime | None = None
    processed_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class EventAttempt(SQLModel, table=True):
    __tablename__ = "event_attempts"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="inbound_events.id", index=True, max_length=40)
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str = Field(max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text))


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("source", "order_id", name="uq_order_source_id"),
        CheckConstraint(
            "filled_amount >= 0 AND filled_cash_amount >= 0 AND filled_fees >= 0",
            name="ck_order_amounts_non_negative",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    order_id: str = Field(max_length=128)
    account_id: str = Field(max_length=64)
    client_order_id: str | None = Field(default=None, max_length=128)
    symbol: str = Field(max_length=32)
    side: str = Field(max_length=8)
    order_type: str = Field(max_length=40)
    amount: Decimal | None = _amount(nullable=True, default=None)
    price: Decimal | None = _amount(nullable=True, default=None)
    state: str = Field(max_length=32)
    filled_amount: Decimal = _amount()
    filled_cash_amount: Decimal = _amount()
    filled_fees: Decimal = _amount()
    created_at_ms: int | None = Field(default=None, sa_type=BigInteger)
    err_code: str | None = Field(default=None, max_length=128)
    err_msg: str | None = Field(default=None, sa_column=Column(Text))
    updated_at: datetime
    last_event_id: str = Field(max_length=40)


class OrderEvent(SQLModel, table=True):
    """One row per event applied to an order: what it added (the ledger's provenance)."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("event_id", name="uq_order_event"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="inbound_events.id", max_length=40)
    order_pk: int = Field(foreign_key="orders.id", index=True)
    state: str = Field(max_length=32)
    delta_filled_amount: Decimal = _amount()
    delta_filled_cash_amount: Decimal = _amount()
    delta_filled_fees: Decimal = _amount()
    applied_at: datetime


class Trade(SQLModel, table=True):
    __tablename__ = "trades"
    __table_args__ = (UniqueConstraint("source", "trade_id", name="uq_trade_source_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    trade_id: str = Field(max_length=128)
    order_pk: int = Field(foreign_key="orders.id", index=True)
    trade_time_ms: int | None = Field(default=None, sa_type=BigInteger)
    price: Decimal = _amount()
    amount: Decimal = _amount()
    event_id: str = Field(foreign_key="inbound_events.id", max_length=40)


class Contract(SQLModel, table=True):
    __tablename__ = "contracts"
    __table_args__ = (UniqueConstraint("source", "position_id", name="uq_contract_source_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    position_id: str = Field(max_length=128)
    account_id: str = Field(max_length=64)
    parent_position_id: str | None = Field(default=None, max_length=128)
    root_position_id: str | None = Field(default=None, max_length=128)
    c_order_id: str | None = Field(default=None, max_length=128)
    status: str = Field(max_length=16)
    buy_currency: str | None = Field(default=None, max_length=12)
    buy_amount: Decimal | None = _amount(nullable=True, default=None)
    sell_currency: str | None = Field(default=None, max_length=12)
    sell_amount: Decimal | None = _amount(nullable=True, default=None)
    price: Decimal | None = _amount(nullable=True, default=None)
    value_date: str | None = Field(default=None, max_length=10)
    violate_money: Decimal | None = _amount(nullable=True, default=None)
    violate_currency: str | None = Field(default=None, max_length=12)
    updated_at: datetime
    last_event_id: str = Field(max_length=40)


class ContractEventRow(SQLModel, table=True):
    """One row per lifecycle event applied to a contract."""

    __tablename__ = "contract_events"
    __table_args__ = (UniqueConstraint("event_id", name="uq_contract_event"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="inbound_events.id", max_length=40)
    contract_pk: int = Field(foreign_key="contracts.id", index=True)
    lifecycle: str = Field(max_length=16)
    applied_at: datetime


class RentalOrder(SQLModel, table=True):
    __tablename__ = "rental_orders"
    __table_args__ = (UniqueConstraint("source", "rental_id", name="uq_rental_source_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    rental_id: str = Field(max_length=128)
    account_id: str = Field(max_length=64)
    status: int
    resource_type: int
    receiver_address: str = Field(max_length=64)
    order_time_s: int | None = Field(default=None, sa_type=BigInteger)
    times: int | None = Field(default=None, sa_type=BigInteger)
    platform_ts_ms: int | None = Field(default=None, sa_type=BigInteger)
    updated_at: datetime
    last_event_id: str = Field(max_length=40)


class Deposit(SQLModel, table=True):
    __tablename__ = "deposits"
    __table_args__ = (
        UniqueConstraint("source", "tx_hash", name="uq_deposit_source_hash"),
        UniqueConstraint("event_id", name="uq_deposit_event"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    tx_hash: str = Field(max_length=64)
    account_id: str = Field(max_length=64)
    address: str = Field(max_length=64)
    from_address: str = Field(max_length=64)
    amount_sun: int = Field(sa_type=BigInteger)
    amount_trx: Decimal = _amount()
    created_at_text: str | None = Field(default=None, max_length=32)
    event_id: str = Field(foreign_key="inbound_events.id", max_length=40)
    applied_at: datetime


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy ``Table`` of a table model."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def create_all(engine: object) -> None:
    """Create every table that does not exist yet."""
    SQLModel.metadata.create_all(engine)  # type: ignore[arg-type]
