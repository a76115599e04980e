"""Applying one parsed event to the ledger tables, inside the caller's transaction.

Each source kind's effect: get-or-create the aggregate (order, contract, rental order) with an
``INSERT ... ON CONFLICT DO NOTHING``, lock it (``FOR UPDATE`` on PostgreSQL; SQLite already
holds the database write lock), merge monotonically, and record the event's own effect row
(``order_events``, ``contract_events``, ``deposits``) whose unique ``event_id`` makes a second
application impossible at the database level too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, any_, literal, or_, select
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, SQLModel

from app.domain.errors import PermanentError
from app.domain.journal import (
    SUN_EXP,
    EntryDraft,
    fx_penalty,
    fx_settlement,
    spot_fill,
    trx_deposit,
)
from app.domain.sources.base import ParsedEvent
from app.domain.sources.htx import HtxOrder
from app.domain.sources.pingpong import ContractEvent
from app.domain.sources.trx_energy import Deposit as DepositPush
from app.domain.sources.trx_energy import RentalOrder as RentalPush
from app.domain.states import (
    CONTRACT_RANK,
    RENTAL_RANK,
    OrderState,
    merge_order,
    merge_ranked,
)
from app.store.db import insert_ignore, insert_ignore_many
from app.store.journal import ledger_writer, post_entry
from app.store.models import (
    Contract,
    ContractEventRow,
    Deposit,
    InboundEvent,
    Order,
    OrderEvent,
    RentalOrder,
    Trade,
    table_of,
)

_NEW = "new"  # placeholder status of a freshly created aggregate; ranks below every real one
_CONTRACT_STATUS = {
    "contract.created": "created",
    "contract.canceled": "canceled",
    "contract.settled": "settled",
}


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


def _locked(session: Session, agg: Aggregate) -> Any:
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


@dataclass(frozen=True, slots=True)
class Context:
    """What applying one event needs besides the session and the event."""

    account_id: str
    quote_currencies: tuple[str, ...]
    now: datetime


def aggregate_of(row: InboundEvent, parsed: ParsedEvent, ctx: Context) -> Aggregate | None:
    """The aggregate ``parsed`` changes, if any (deposits and unhandled events have none)."""
    if parsed.event is None:
        return None
    payload = parsed.payload
    if isinstance(payload, HtxOrder):
        return _order_of(row, payload, ctx, account_id=parsed.account_id or ctx.account_id)
    if isinstance(payload, ContractEvent):
        return _contract_of(row, payload, ctx)
    if isinstance(payload, RentalPush):
        return _rental_of(row, payload, ctx)
    return None


def apply_event(session: Session, row: InboundEvent, parsed: ParsedEvent, ctx: Context) -> str:
    """Apply ``parsed`` (stored as ``row``); return ``"processed"`` or ``"unhandled"``.

    Raises ``PermanentError`` when the event can never be applied."""
    if parsed.event is None:
        return "unhandled"
    payload = parsed.payload
    if isinstance(payload, HtxOrder):
        _apply_htx(session, row, payload, ctx, account_id=parsed.account_id or ctx.account_id)
    elif isinstance(payload, ContractEvent):
        _apply_contract(session, row, payload, parsed.event, ctx)
    elif isinstance(payload, RentalPush):
        _apply_rental(session, row, payload, ctx)
    elif isinstance(payload, DepositPush):
        _apply_deposit(session, row, payload, ctx)
    else:  # pragma: no cover - every known event has a handler above
        raise PermanentError(f"no handler for {parsed.kind} event {parsed.event}")
    return "processed"


def _post(
    session: Session,
    row: InboundEvent,
    draft: EntryDraft,
    now: datetime,
    *,
    sett_date: int | None = None,
) -> int:
    date = int(row.received_at.timestamp())
    return post_entry(
        session, draft, event_id=row.id, date=date, sett_date=sett_date or date, now=now
    )


def _order_of(row: InboundEvent, p: HtxOrder, ctx: Context, *, account_id: str) -> Aggregate:
    return Aggregate(
        Order,
        {"source": row.source, "order_id": p.order_id},
        {
            "account_id": account_id,
            "symbol": p.symbol,
            "side": p.side,
            "order_type": p.type,
            "state": _NEW,
            "filled_amount": Decimal(0),
            "filled_cash_amount": Decimal(0),
            "filled_fees": Decimal(0),
            "updated_at": ctx.now,
            "last_event_id": row.id,
        },
    )


def _apply_htx(
    session: Session, row: InboundEvent, p: HtxOrder, ctx: Context, *, account_id: str
) -> None:
    now = ctx.now
    order: Order = _locked(session, _order_of(row, p, ctx, account_id=account_id))
    if order.symbol != p.symbol or order.side != p.side:
        raise PermanentError(
            f"order {p.order_id} was {order.side} {order.symbol}, "
            f"this event says {p.side} {p.symbol}"
        )
    current = OrderState(
        "" if order.state == _NEW else order.state,
        order.filled_amount,
        order.filled_cash_amount,
        order.filled_fees,
    )
    update = OrderState(p.state, p.filled_amount, p.filled_cash_amount, p.filled_fees)
    merged, delta = merge_order(current, update)
    changes = {
        "state": merged.state,
        "filled_amount": merged.filled_amount,
        "filled_cash_amount": merged.filled_cash_amount,
        "filled_fees": merged.filled_fees,
        "order_type": p.type,
        "amount": order.amount if p.amount is None else p.amount,
        "price": order.price if p.price is None else p.price,
        "client_order_id": order.client_order_id or p.client_order_id,
        "created_at_ms": order.created_at_ms or p.created_at,
        "updated_at": now,
        "last_event_id": row.id,
    }
    if merged.state == p.state and (p.err_code or p.err_msg):
        changes["err_code"], changes["err_msg"] = p.err_code, p.err_msg
    _assign(order, changes)  # loaded in this session: the ORM writes it at the next flush
    assert order.id is not None
    # The event's own rows go with the ledger's writes (one insert per table for a whole
    # batch), not through the ORM's unit of work: about a fifth of a worker's CPU per event.
    ledger = ledger_writer(session)
    ledger.add_row(
        table_of(OrderEvent),
        {
            "event_id": row.id,
            "order_pk": order.id,
            "state": p.state,
            "delta_filled_amount": delta.filled_amount,
            "delta_filled_cash_amount": delta.filled_cash_amount,
            "delta_filled_fees": delta.filled_fees,
            "applied_at": now,
        },
    )
    if delta.moved_money:
        try:
            draft = spot_fill(
                source=row.source,
                account_id=order.account_id,
                symbol=order.symbol,
                side=order.side,
                quote_currencies=ctx.quote_currencies,
                filled=delta.filled_amount,
                cash=delta.filled_cash_amount,
                fees=delta.filled_fees,
            )
        except ValueError as exc:
            raise PermanentError(str(exc)) from exc
        if draft is not None:
            _post(session, row, draft, now)
    for trade in p.trade:  # a trade named again by a later event keeps its first row
        ledger.add_row(
            table_of(Trade),
            {
                "source": row.source,
                "trade_id": trade.trade_id,
                "order_pk": order.id,
                "trade_time_ms": trade.trade_time,
                "price": trade.trade_price,
                "amount": trade.trade_amount,
                "event_id": row.id,
            },
            conflict=("source", "trade_id"),
        )


def _assign(obj: Any, values: dict[str, Any]) -> None:
    """Set the attributes whose values change. Setting an unchanged one costs the model's and
    the ORM's instrumentation (a few microseconds each) and widens the UPDATE for nothing; an
    amount equal in value (``1`` and ``1.000``) is the same stored number."""
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)


def _contract_of(row: InboundEvent, e: ContractEvent, ctx: Context) -> Aggregate:
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
    ctx: Context,
) -> None:
    now = ctx.now
    p = e.payload
    assert p is not None and p.position_id is not None  # the model requires both for known types
    contract: Contract = _locked(session, _contract_of(row, e, ctx))
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
        contract.settlement_entry_id = _post(session, row, draft, now, sett_date=_day(p.value_date))
    elif lifecycle == "canceled" and p.violate_money and contract.penalty_entry_id is None:
        assert p.violate_currency is not None
        draft = fx_penalty(
            source=row.source,
            account_id=contract.account_id,
            position_id=contract.position_id,
            currency=p.violate_currency,
            amount=p.violate_money,
        )
        contract.penalty_entry_id = _post(session, row, draft, now)
    contract.updated_at = now
    contract.last_event_id = row.id
    session.add(contract)
    assert contract.id is not None
    session.add(
        ContractEventRow(
            event_id=row.id, contract_pk=contract.id, lifecycle=lifecycle, applied_at=now
        )
    )


def _rental_of(row: InboundEvent, p: RentalPush, ctx: Context) -> Aggregate:
    return Aggregate(
        RentalOrder,
        {"source": row.source, "rental_id": p.id},
        {
            "account_id": ctx.account_id,
            "status": -99,
            "resource_type": p.resourceType,
            "receiver_address": p.receiverAddress,
            "updated_at": ctx.now,
            "last_event_id": row.id,
        },
    )


def _apply_rental(session: Session, row: InboundEvent, p: RentalPush, ctx: Context) -> None:
    now = ctx.now
    rental: RentalOrder = _locked(session, _rental_of(row, p, ctx))
    rental.status = merge_ranked(rental.status, p.status, RENTAL_RANK)
    rental.order_time_s = rental.order_time_s or p.orderTime
    rental.times = rental.times or p.times
    rental.platform_ts_ms = max(rental.platform_ts_ms or 0, p.timeStamp or 0) or None
    rental.updated_at = now
    rental.last_event_id = row.id
    session.add(rental)


def _apply_deposit(session: Session, row: InboundEvent, p: DepositPush, ctx: Context) -> None:
    now, account_id = ctx.now, ctx.account_id
    dialect = session.get_bind().dialect.name
    values = {
        "source": row.source,
        "tx_hash": p.txHash,
        "account_id": account_id,
        "address": p.address,
        "from_address": p.fromAddress,
        "amount_sun": p.amount,
        "amount_trx": Decimal(p.amount).scaleb(SUN_EXP),
        "created_at_text": p.createdAt,
        "event_id": row.id,
        "applied_at": now,
    }
    table = table_of(Deposit)
    stmt = insert_ignore(dialect, table, values, ["source", "tx_hash"]).returning(table.c.id)
    if session.execute(stmt).scalar_one_or_none() is not None:
        draft = trx_deposit(
            source=row.source, account_id=account_id, tx_hash=p.txHash, amount_sun=p.amount
        )
        _post(session, row, draft, now)


def _day(value_date: str | None) -> int | None:
    """Unix seconds of midnight UTC of a ``YYYY-MM-DD`` date."""
    if not value_date:
        return None
    try:
        day = datetime.strptime(value_date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp())
