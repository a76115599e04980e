"""The htx kind's tables: orders (one per source and order id, cumulative amounts never
negative), what each event added to an order (``order_events``, one per event), and trades
(one per source and trade id)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.store.models import amount_field

# The states after which HTX sends nothing more for an order; every other state (and an order
# created ahead of its first event) is open, and an open order long unchanged is a gap.
FINAL_STATES = ("filled", "canceled", "partial-canceled", "rejected")
OPEN_ORDER = text("state NOT IN ('filled', 'canceled', 'partial-canceled', 'rejected')")


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("source", "order_id", name="uq_order_source_id"),
        CheckConstraint(
            "filled_amount >= 0 AND filled_cash_amount >= 0 AND filled_fees >= 0",
            name="ck_order_amounts_non_negative",
        ),
        # The gap query reads open orders only, oldest change first (final ones leave it).
        Index(
            "ix_orders_open",
            "source",
            "updated_at",
            postgresql_where=OPEN_ORDER,
            sqlite_where=OPEN_ORDER,
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
    amount: Decimal | None = amount_field(nullable=True, default=None)
    price: Decimal | None = amount_field(nullable=True, default=None)
    state: str = Field(max_length=32)
    filled_amount: Decimal = amount_field()
    filled_cash_amount: Decimal = amount_field()
    filled_fees: Decimal = amount_field()
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
    delta_filled_amount: Decimal = amount_field()
    delta_filled_cash_amount: Decimal = amount_field()
    delta_filled_fees: Decimal = amount_field()
    applied_at: datetime


class Trade(SQLModel, table=True):
    __tablename__ = "trades"
    __table_args__ = (UniqueConstraint("source", "trade_id", name="uq_trade_source_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    trade_id: str = Field(max_length=128)
    order_pk: int = Field(foreign_key="orders.id", index=True)
    trade_time_ms: int | None = Field(default=None, sa_type=BigInteger)
    price: Decimal = amount_field()
    amount: Decimal = amount_field()
    event_id: str = Field(foreign_key="inbound_events.id", max_length=40)
