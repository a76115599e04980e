"""The htx kind's reads: its rows in the accountants' API, an order's full record, and the
checks ``ledger verify`` runs on orders."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, select
from sqlmodel import Session, col

from app.domain.journal import split_symbol
from app.kinds.htx.tables import Order, OrderEvent, Trade
from app.store.ledger import posting_row, postings_of_events
from app.store.models import InboundEvent, LedgerPosting

ZERO = Decimal(0)


def order_row(o: Order) -> dict[str, Any]:
    return {
        "source": o.source,
        "order_id": o.order_id,
        "account_id": o.account_id,
        "client_order_id": o.client_order_id,
        "symbol": o.symbol,
        "side": o.side,
        "type": o.order_type,
        "amount": o.amount,
        "price": o.price,
        "state": o.state,
        "filled_amount": o.filled_amount,
        "filled_cash_amount": o.filled_cash_amount,
        "filled_fees": o.filled_fees,
        "created_at": o.created_at_ms,
        "err_code": o.err_code,
        "err_msg": o.err_msg,
        "last_event_id": o.last_event_id,
    }


def order_history(session: Session, order: Order) -> list[dict[str, Any]]:
    """Each event applied to ``order``: what it added and where it came from (provenance)."""
    rows = session.execute(
        select(OrderEvent, InboundEvent)
        .join(InboundEvent, and_(col(InboundEvent.id) == col(OrderEvent.event_id)))
        .where(col(OrderEvent.order_pk) == order.id)
        .order_by(col(OrderEvent.id))
    ).all()
    history = []
    for applied, inbound in rows:
        history.append(
            {
                "event_id": inbound.id,
                "event": inbound.event_type,
                "state": applied.state,
                "added_filled_amount": applied.delta_filled_amount,
                "added_filled_cash_amount": applied.delta_filled_cash_amount,
                "added_filled_fees": applied.delta_filled_fees,
                "received_at": int(inbound.received_at.timestamp()),
                "applied_at": int(applied.applied_at.timestamp()),
                "body_sha256": inbound.body_sha256,
                "source": inbound.source,
            }
        )
    return history


def order_trades(session: Session, order: Order) -> list[Trade]:
    return list(
        session.execute(
            select(Trade).where(col(Trade.order_pk) == order.id).order_by(col(Trade.id))
        ).scalars()
    )


def order_detail(session: Session, source: str, order_id: str) -> tuple[str, dict[str, Any]] | None:
    """The order ``order_id`` of ``source``: its account and its record with each event that
    changed it, its trades and its customer postings; None when there is no such order."""
    if "\x00" in source + order_id:  # no stored id holds NUL; PostgreSQL refuses to look
        return None
    order = session.execute(
        select(Order).where(col(Order.source) == source, col(Order.order_id) == order_id)
    ).scalar_one_or_none()
    if order is None:
        return None
    history = order_history(session, order)
    postings = postings_of_events(session, [h["event_id"] for h in history])
    trades = session.execute(
        select(Trade).where(col(Trade.order_pk) == order.id).order_by(col(Trade.id))
    ).scalars()
    return order.account_id, {
        **order_row(order),
        "events": history,
        "trades": [
            {
                "trade_id": t.trade_id,
                "price": t.price,
                "amount": t.amount,
                "time": t.trade_time_ms,
                "event_id": t.event_id,
            }
            for t in trades
        ],
        "transactions": [posting_row(p) for p in postings],
    }


def _trade_sums(session: Session) -> dict[tuple[str, str], Decimal]:
    """Customer trade postings summed exactly per (event, currency)."""
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    rows = session.execute(
        select(
            col(LedgerPosting.event_id), col(LedgerPosting.currency), col(LedgerPosting.amount)
        ).where(col(LedgerPosting.customer).is_(True), col(LedgerPosting.tran_type) == "trade")
    )
    for event_id, currency, amount in rows:
        sums[(event_id, currency)] += amount
    return sums


def verify_orders(session: Session, breach: Any, quotes: tuple[str, ...]) -> int:
    """Each order's cumulative amounts equal what its events added, and its customer trade
    postings add up to its filled amount (base) and filled cash (quote). Returns the count."""
    return _check_orders(session, _trade_sums(session), quotes, breach)


def _check_orders(
    session: Session,
    trade_sums: dict[tuple[str, str], Decimal],
    quotes: tuple[str, ...],
    breach: Callable[[str], None],
) -> int:
    added: dict[int, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    events: dict[int, list[str]] = defaultdict(list)
    for oe in session.execute(select(OrderEvent)).scalars():
        sums = added[oe.order_pk]
        sums[0] += oe.delta_filled_amount
        sums[1] += oe.delta_filled_cash_amount
        sums[2] += oe.delta_filled_fees
        events[oe.order_pk].append(oe.event_id)
    count = 0
    for order in session.execute(select(Order)).scalars():
        count += 1
        assert order.id is not None
        want = [order.filled_amount, order.filled_cash_amount, order.filled_fees]
        if added[order.id] != want:
            breach(
                f"order {order.source}/{order.order_id}: cumulative {want} "
                f"but its events added {added[order.id]}"
            )
        try:
            base, quote = split_symbol(order.symbol, quotes)
        except ValueError:
            breach(f"order {order.source}/{order.order_id}: symbol {order.symbol} cannot be split")
            continue
        sign = Decimal(1) if order.side == "buy" else Decimal(-1)
        base_sum = sum((trade_sums.get((e, base), ZERO) for e in events[order.id]), ZERO)
        quote_sum = sum((trade_sums.get((e, quote), ZERO) for e in events[order.id]), ZERO)
        if base_sum != sign * order.filled_amount or quote_sum != -sign * order.filled_cash_amount:
            breach(
                f"order {order.source}/{order.order_id}: "
                f"trade postings {base_sum} {base} / {quote_sum} {quote} "
                f"do not match filled {order.filled_amount} / {order.filled_cash_amount}"
            )
    return count
