"""The ``htx`` source kind: HTX-style order updates (JSON, or form-encoded with ``trade`` as JSON
text). Key: ``order-id`` + ``state`` + normalised ``filled-amount``, so each partial fill is an
event of its own. Gaps: orders not final ``gap_after_s`` after their last event (``gaps``).
Pull: HTX's signed REST order query and match results, mapped into a callback body
(``pull``, which documents the field mapping). The aggregate is the order: its state only
moves forward and its cumulative amounts never decrease (``app.domain.states.merge_order``),
whatever order events arrive in; what an event added is recorded in ``order_events`` and
posted as a spot fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlmodel import Session, SQLModel

from app.domain.errors import PermanentError
from app.domain.payloads import FORM, JSON, ParsedEvent
from app.domain.states import OrderState, merge_order
from app.kinds.base import ApplyContext, Breach, Gap, Listing, Pulled, PullFailed, SourceKind
from app.kinds.htx import queries
from app.kinds.htx.gaps import open_orders
from app.kinds.htx.journal import spot_fill
from app.kinds.htx.payload import CANONICAL, HtxOrder, parse
from app.kinds.htx.pull import pull_order
from app.kinds.htx.tables import Order, OrderEvent, Trade
from app.store.aggregates import Aggregate, count_by_event, locked, post
from app.store.journal import ledger_writer
from app.store.models import InboundEvent, table_of

_NEW = "new"  # the state of an order created ahead of its first event; below every real one


class Htx(SourceKind):
    name = "htx"
    media_types = frozenset({JSON, FORM})
    canonical_events = frozenset(CANONICAL.values())
    business_types = frozenset({"crypto_spot"})
    sample_body: ClassVar[dict[str, Any]] = {
        "order-id": 59378,
        "client-order-id": "sample-1",
        "account-id": 1001,
        "symbol": "btcusdt",
        "type": "buy-limit",
        "amount": "0.0100000000",
        "price": "43000.00",
        "created-at": 1704440609000,
        "filled-amount": "0.0100000000",
        "filled-cash-amount": "430.0000000000",
        "filled-fees": "0.0000200000",
        "source": "api",
        "state": "filled",
    }
    tables: ClassVar[tuple[type[SQLModel], ...]] = (Order, OrderEvent, Trade)
    listings: ClassVar[tuple[Listing, ...]] = (
        Listing(
            "orders",
            "order",
            Order,
            queries.order_row,
            detail=queries.order_detail,
            detail_param="order_id",
        ),
    )

    def parse(self, data: dict[str, Any]) -> ParsedEvent:
        return parse(data)

    def aggregate(
        self, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> Aggregate | None:
        assert isinstance(parsed.payload, HtxOrder)
        return _order_of(row, parsed.payload, ctx)

    def apply(
        self, session: Session, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> None:
        assert isinstance(parsed.payload, HtxOrder)
        _apply(session, row, parsed.payload, ctx)

    def rule_amount(self, parsed: ParsedEvent) -> Decimal | None:
        assert isinstance(parsed.payload, HtxOrder)
        return parsed.payload.filled_amount

    def verify(
        self, session: Session, breach: Breach, quote_currencies: tuple[str, ...]
    ) -> dict[str, int]:
        return {"orders": queries.verify_orders(session, breach, quote_currencies)}

    def effects(self, session: Session, event_ids: Sequence[str]) -> dict[str, int]:
        return {"order_events": count_by_event(session, OrderEvent, event_ids)}

    def gaps(
        self, session: Session, source: str, *, gap_after_s: float, now: datetime, limit: int
    ) -> list[Gap]:
        return open_orders(session, source, gap_after_s=gap_after_s, now=now, limit=limit)

    can_pull = True

    async def pull(self, client: Any, pull: Any, ident: str) -> Pulled:
        if not pull.access_key or not pull.secret_key:
            raise PullFailed("pull needs access_key and secret_key (HTX REST)", outcome="refused")
        return await pull_order(client, pull.base_url, pull.access_key, pull.secret_key, ident)


def _order_of(row: InboundEvent, p: HtxOrder, ctx: ApplyContext) -> Aggregate:
    return Aggregate(
        Order,
        {"source": row.source, "order_id": p.order_id},
        {
            "account_id": ctx.account_id,
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


def _apply(session: Session, row: InboundEvent, p: HtxOrder, ctx: ApplyContext) -> None:
    now = ctx.now
    order: Order = locked(session, _order_of(row, p, ctx))
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
            post(session, row, draft, now)
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
