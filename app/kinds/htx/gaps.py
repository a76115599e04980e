"""The htx kind's gaps: orders not final ``gap_after_s`` after their last event.

HTX sends a callback on every state change; an order still ``submitted`` or ``partial-filled``
long after its last one has most likely changed without the callback arriving. The query reads
the partial index ``ix_orders_open`` (open orders only, by source and last change), so it costs
the number of open orders, not of all orders.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlmodel import Session, col

from app.kinds.base import Gap
from app.kinds.htx.tables import Order
from app.store.db import as_utc

_OPEN = text("orders.state NOT IN ('filled', 'canceled', 'partial-canceled', 'rejected')")
KIND = "htx"


def open_orders(
    session: Session, source: str, *, gap_after_s: float, now: datetime, limit: int
) -> list[Gap]:
    """Orders of ``source`` not final and unchanged for ``gap_after_s``, oldest change first."""
    cutoff = now - timedelta(seconds=gap_after_s)
    rows = session.execute(
        select(Order)
        .where(col(Order.source) == source, _OPEN, col(Order.updated_at) <= cutoff)
        .order_by(col(Order.updated_at), col(Order.id))
        .limit(limit)
    ).scalars()
    return [
        Gap(
            source=source,
            kind=KIND,
            ident=order.order_id,
            what="order not final",
            since=as_utc(order.updated_at) + timedelta(seconds=gap_after_s),
            state=order.state,
            account_id=order.account_id,
        )
        for order in rows
    ]
