"""The pingpong kind's tables: contracts (one per source and position id) and the lifecycle
events applied to them (``contract_events``, one per event)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.store.models import amount_field

FINAL_STATUSES = ("settled", "canceled")
OPEN_CONTRACT = text("status NOT IN ('settled', 'canceled')")


class Contract(SQLModel, table=True):
    __tablename__ = "contracts"
    __table_args__ = (
        UniqueConstraint("source", "position_id", name="uq_contract_source_id"),
        # The gap query reads open contracts only, by value date (settled or canceled leave it).
        Index(
            "ix_contracts_open",
            "source",
            "value_date",
            postgresql_where=OPEN_CONTRACT,
            sqlite_where=OPEN_CONTRACT,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    position_id: str = Field(max_length=128)
    account_id: str = Field(max_length=64)
    parent_position_id: str | None = Field(default=None, max_length=128)
    root_position_id: str | None = Field(default=None, max_length=128)
    c_order_id: str | None = Field(default=None, max_length=128)
    status: str = Field(max_length=16)
    buy_currency: str | None = Field(default=None, max_length=12)
    buy_amount: Decimal | None = amount_field(nullable=True, default=None)
    sell_currency: str | None = Field(default=None, max_length=12)
    sell_amount: Decimal | None = amount_field(nullable=True, default=None)
    price: Decimal | None = amount_field(nullable=True, default=None)
    value_date: str | None = Field(default=None, max_length=10)
    violate_money: Decimal | None = amount_field(nullable=True, default=None)
    violate_currency: str | None = Field(default=None, max_length=12)
    settlement_entry_id: int | None = None  # cash is settled once per contract
    penalty_entry_id: int | None = None  # a penalty is charged once per contract
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
