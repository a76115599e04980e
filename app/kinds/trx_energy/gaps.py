"""The trx-energy kind's gaps: rental orders still ``created`` after their ``orderTime``.

Seed 004: a rental order is placed (status 0, created) at ``timeStamp`` (Unix milliseconds)
for ``orderTime`` seconds of resource rental; it is then delegated (1) or fails (-1), each with
a push. One still created once its term is over missed its push. Without ``orderTime`` the
source's ``gap_after_s`` stands in for the term; without ``timeStamp``, a rental order is a gap
``gap_after_s`` after its last event, as an HTX order is.
The query reads the partial index ``ix_rental_orders_created`` (created orders only, by source
and placement time).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, or_, select, text
from sqlmodel import Session, col

from app.kinds.base import Gap
from app.kinds.trx_energy.tables import RentalOrder
from app.store.db import as_utc

_CREATED = text("rental_orders.status = 0")
KIND = "trx-energy"


def created_rentals(
    session: Session, source: str, *, gap_after_s: float, now: datetime, limit: int
) -> list[Gap]:
    """Rental orders of ``source`` still created past their term, oldest first."""
    now_ms = int(now.timestamp() * 1000)
    default_ms = int(gap_after_s * 1000)
    term_ms = func.coalesce(col(RentalOrder.order_time_s) * 1000, default_ms)
    placed = col(RentalOrder.platform_ts_ms)
    rows = session.execute(
        select(RentalOrder)
        .where(
            col(RentalOrder.source) == source,
            _CREATED,
            or_(
                and_(placed.is_not(None), placed <= now_ms, placed + term_ms <= now_ms),
                and_(
                    placed.is_(None),
                    col(RentalOrder.updated_at) <= now - timedelta(seconds=gap_after_s),
                ),
            ),
        )
        .order_by(placed, col(RentalOrder.id))
        .limit(limit)
    ).scalars()
    return [
        Gap(
            source=source,
            kind=KIND,
            ident=rental.rental_id,
            what="rental order still created",
            since=_due(rental, gap_after_s),
            state=str(rental.status),
            account_id=rental.account_id,
        )
        for rental in rows
    ]


def _due(rental: RentalOrder, gap_after_s: float) -> datetime:
    if rental.platform_ts_ms is not None:
        term = gap_after_s if rental.order_time_s is None else rental.order_time_s
        return datetime.fromtimestamp(rental.platform_ts_ms / 1000, UTC) + timedelta(seconds=term)
    return as_utc(rental.updated_at) + timedelta(seconds=gap_after_s)
