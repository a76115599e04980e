"""The trx-energy kind's tables: rental orders (one per source and rental id) and deposits
(one per source and transaction hash, and one per event)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.store.models import amount_field

CREATED = 0  # seed 004's status of a rental order placed and not yet delegated (nor failed)
STILL_CREATED = text("status = 0")


class RentalOrder(SQLModel, table=True):
    __tablename__ = "rental_orders"
    __table_args__ = (
        UniqueConstraint("source", "rental_id", name="uq_rental_source_id"),
        # The gap query reads rental orders still created only, by when they were placed.
        Index(
            "ix_rental_orders_created",
            "source",
            "platform_ts_ms",
            postgresql_where=STILL_CREATED,
            sqlite_where=STILL_CREATED,
        ),
    )

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
    amount_trx: Decimal = amount_field()
    created_at_text: str | None = Field(default=None, max_length=32)
    event_id: str = Field(foreign_key="inbound_events.id", max_length=40)
    applied_at: datetime
