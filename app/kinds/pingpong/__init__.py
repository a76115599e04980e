"""The ``pingpong`` source kind: PingPong-style FX contract lifecycle callbacks. Key: ``msg_id``.
``positionCreate``/``positionCancel``/``positionSettle`` are known; any other ``event_type``
(PingPong's own example sends ``positionExtend``) is stored and ends ``unhandled``. The
aggregate is the contract: created < canceled < settled, whatever order callbacks arrive in;
cash moves once per contract (one settlement entry, one penalty entry at most). Gaps: contracts
past their value date neither settled nor canceled; PingPong has no query API to pull from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlmodel import Session, SQLModel

from app.domain.payloads import ParsedEvent
from app.domain.states import CONTRACT_RANK, merge_ranked
from app.kinds.base import ApplyContext, Gap, Listing, SourceKind
from app.kinds.pingpong.gaps import overdue_contracts
from app.kinds.pingpong.journal import fx_penalty, fx_settlement
from app.kinds.pingpong.payload import CANONICAL, ContractEvent, parse
from app.kinds.pingpong.tables import Contract, ContractEventRow
from app.store.aggregates import Aggregate, count_by_event, locked, post
from app.store.models import InboundEvent

_NEW = "new"  # the status of a contract created ahead of its first event; below every real one
_CONTRACT_STATUS = {
    "contract.created": "created",
    "contract.canceled": "canceled",
    "contract.settled": "settled",
}


def contract_row(c: Contract) -> dict[str, Any]:
    return {
        "source": c.source,
        "position_id": c.position_id,
        "account_id": c.account_id,
        "parent_position_id": c.parent_position_id,
        "root_position_id": c.root_position_id,
        "c_order_id": c.c_order_id,
        "status": c.status,
        "buy_currency": c.buy_currency,
        "buy_amount": c.buy_amount,
        "sell_currency": c.sell_currency,
        "sell_amount": c.sell_amount,
        "price": c.price,
        "value_date": c.value_date,
        "violate_money": c.violate_money,
        "violate_currency": c.violate_currency,
        "last_event_id": c.last_event_id,
    }


class PingPong(SourceKind):
    name = "pingpong"
    canonical_events = frozenset(CANONICAL.values())
    business_types = frozenset({"fx_contract"})
    sample_body: ClassVar[dict[str, Any]] = {
        "event_type": "positionSettle",
        "msg_id": "P24010816531715000001",
        "payload": {
            "position_id": "240105SP051608727",
            "buy_currency": "CNH",
            "buy_amount": 3645.95,
            "sell_currency": "MXN",
            "sell_amount": 8667.49,
            "price": 2.37729,
            "base_currency": "CNH",
            "status": "settle",
            "value_date": "2024-01-05",
            "trade_channel": "api",
            "source_type": "spot",
        },
    }
    tables: ClassVar[tuple[type[SQLModel], ...]] = (Contract, ContractEventRow)
    listings: ClassVar[tuple[Listing, ...]] = (
        Listing("contracts", "contract", Contract, contract_row),
    )

    def parse(self, data: dict[str, Any]) -> ParsedEvent:
        return parse(data)

    def aggregate(
        self, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> Aggregate | None:
        assert isinstance(parsed.payload, ContractEvent)
        return _contract_of(row, parsed.payload, ctx)

    def apply(
        self, session: Session, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> None:
        assert isinstance(parsed.payload, ContractEvent) and parsed.event is not None
        _apply_contract(session, row, parsed.payload, parsed.event, ctx)

    def rule_amount(self, parsed: ParsedEvent) -> Decimal | None:
        assert isinstance(parsed.payload, ContractEvent)
        return None if parsed.payload.payload is None else parsed.payload.payload.sell_amount

    def effects(self, session: Session, event_ids: Sequence[str]) -> dict[str, int]:
        return {"contract_events": count_by_event(session, ContractEventRow, event_ids)}

    def gaps(
        self, session: Session, source: str, *, gap_after_s: float, now: datetime, limit: int
    ) -> list[Gap]:
        return overdue_contracts(session, source, now=now, limit=limit)

    can_pull = False  # PingPong has no query API: its gaps are shown, never pulled


def _contract_of(row: InboundEvent, e: ContractEvent, ctx: ApplyContext) -> Aggregate:
    assert e.payload is not None and e.payload.position_id is not None  # known types have both
    return Aggregate(
        Contract,
        {"source": row.source, "position_id": e.payload.position_id},
        {
            "account_id": ctx.account_id,
            "status": _NEW,
            "updated_at": ctx.now,
            "last_event_id": row.id,
        },
    )


def _apply_contract(
    session: Session,
    row: InboundEvent,
    e: ContractEvent,
    event: str,
    ctx: ApplyContext,
) -> None:
    now = ctx.now
    p = e.payload
    assert p is not None and p.position_id is not None  # the model requires both for known types
    contract: Contract = locked(session, _contract_of(row, e, ctx))
    lifecycle = _CONTRACT_STATUS[event]
    contract.status = merge_ranked(contract.status, lifecycle, CONTRACT_RANK)
    for name in (
        "parent_position_id",
        "root_position_id",
        "c_order_id",
        "buy_currency",
        "buy_amount",
        "sell_currency",
        "sell_amount",
        "price",
        "value_date",
    ):
        value = getattr(p, name)
        if value is not None and (lifecycle == "settled" or getattr(contract, name) is None):
            setattr(contract, name, value)
    if lifecycle == "canceled" and p.violate_money is not None:
        contract.violate_money = p.violate_money
        contract.violate_currency = p.violate_currency
    # Cash moves once per contract whatever the order or number of lifecycle callbacks.
    if lifecycle == "settled" and contract.settlement_entry_id is None:
        assert (
            p.sell_currency
            and p.buy_currency
            and p.sell_amount is not None
            and p.buy_amount is not None
        )
        draft = fx_settlement(
            source=row.source,
            account_id=contract.account_id,
            position_id=contract.position_id,
            sell_currency=p.sell_currency,
            sell_amount=p.sell_amount,
            buy_currency=p.buy_currency,
            buy_amount=p.buy_amount,
            price=p.price,
        )
        contract.settlement_entry_id = post(session, row, draft, now, sett_date=_day(p.value_date))
    elif lifecycle == "canceled" and p.violate_money and contract.penalty_entry_id is None:
        assert p.violate_currency is not None
        draft = fx_penalty(
            source=row.source,
            account_id=contract.account_id,
            position_id=contract.position_id,
            currency=p.violate_currency,
            amount=p.violate_money,
        )
        contract.penalty_entry_id = post(session, row, draft, now)
    contract.updated_at = now
    contract.last_event_id = row.id
    session.add(contract)
    assert contract.id is not None
    session.add(
        ContractEventRow(
            event_id=row.id, contract_pk=contract.id, lifecycle=lifecycle, applied_at=now
        )
    )


def _day(value_date: str | None) -> int | None:
    """Unix seconds of midnight UTC of a ``YYYY-MM-DD`` date."""
    if not value_date:
        return None
    try:
        day = datetime.strptime(value_date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp())
