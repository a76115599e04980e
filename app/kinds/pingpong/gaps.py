"""The pingpong kind's gaps: contracts past their value date neither settled nor canceled.

A contract settles (or is canceled) on or before its ``value_date``; one still open once that
day is over (UTC) missed its callback. The query reads the partial index ``ix_contracts_open``
(open contracts only, by source and value date). A contract whose value date is unknown is
never a gap: nothing says when it was due.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text
from sqlmodel import Session, col

from app.kinds.base import Gap
from app.kinds.pingpong.tables import Contract

_OPEN = text("contracts.status NOT IN ('settled', 'canceled')")
KIND = "pingpong"


def overdue_contracts(session: Session, source: str, *, now: datetime, limit: int) -> list[Gap]:
    """Open contracts of ``source`` whose value date is before today (UTC), oldest first."""
    today = now.astimezone(UTC).strftime("%Y-%m-%d")  # ISO dates order as text
    rows = session.execute(
        select(Contract)
        .where(
            col(Contract.source) == source,
            _OPEN,
            col(Contract.value_date).is_not(None),
            col(Contract.value_date) < today,
        )
        .order_by(col(Contract.value_date), col(Contract.id))
        .limit(limit)
    ).scalars()
    return [
        Gap(
            source=source,
            kind=KIND,
            ident=contract.position_id,
            what="contract past value date",
            since=_day_after(contract.value_date),
            state=contract.status,
            account_id=contract.account_id,
        )
        for contract in rows
    ]


def _day_after(value_date: str | None) -> datetime:
    assert value_date is not None  # the query keeps only contracts with one
    day = datetime.strptime(value_date, "%Y-%m-%d").replace(tzinfo=UTC)
    return day + timedelta(days=1)
