"""Ledger pages for accountants: customer transactions with filters and a CSV download, and
balances by account and currency. Amounts are ``Decimal`` from the database to the page, shown
as their exact text; the CSV is written by ``app.exports.csv_chunks``, the same code as
``hookledger ledger export``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session, col
from starlette.responses import Response, StreamingResponse

from app.console.inputs import Query
from app.console.web import Visit
from app.domain.money import exact
from app.exports import csv_chunks
from app.routes.ledger import MAX_ROW_ID, business_types
from app.routes.refusals import BadInput
from app.store import ledger as queries
from app.store.db import read_only
from app.store.models import AccountBalance
from app.timeparse import parse_day

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_PAGE = 1_000_000
FILTERS = {"account", "business_type", "io_type", "from", "to"}
TX_PARAMS = FILTERS | {"page", "page_size", "as_of_id"}


def _date(q: Query, name: str, *, end_of_day: bool) -> tuple[str, int] | None:
    """The date filter ``name`` as typed and as Unix seconds, or ``None`` when not given."""
    raw = q.text(name, max_len=20)
    if raw is None:
        return None
    try:
        return raw, parse_day(raw, end_of_day=end_of_day)
    except ValueError as exc:
        raise BadInput(f"{name} {exc}.") from None


def posting_filter(q: Query) -> queries.PostingFilter:
    """The transactions filter of the page's query. Raises ``BadInput``."""
    account = q.text("account", max_len=64)
    business_type = q.choice("business_type", business_types())
    io_type = q.choice("io_type", ("in", "out"))
    start = _date(q, "from", end_of_day=False)
    end = _date(q, "to", end_of_day=True)
    if start is not None and end is not None and start[1] > end[1]:
        raise BadInput(f"from {start[0]} is after to {end[0]}.")
    return queries.PostingFilter(
        accounts=[account] if account else None,
        business_types=[business_type] if business_type else None,
        io_type=io_type,
        from_date=start[1] if start else None,
        to_date=end[1] if end else None,
    )


async def transactions(visit: Visit) -> Response:
    q = Query(visit.request, TX_PARAMS)
    flt = posting_filter(q)
    page = q.integer("page", 1, low=1, high=MAX_PAGE)
    page_size = q.integer("page_size", PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
    pinned = q.text("as_of_id", max_len=10)
    if pinned is not None and not (pinned.isascii() and pinned.isdigit()):
        raise BadInput("as_of_id must be the value of a paging link.")

    def query(session: Session) -> dict[str, Any]:
        as_of_id = int(pinned) if pinned is not None else queries.max_posting_id(session)
        pinned_flt = replace(flt, max_id=min(as_of_id, MAX_ROW_ID))
        total, rows = queries.page_of_postings(session, pinned_flt, page=page, page_size=page_size)
        return {
            "total": total,
            "as_of_id": as_of_id,
            "rows": [queries.posting_row(r) for r in rows],
        }

    found = await visit.read(query)
    filters = {k: v for k, v in q.raw().items() if k in FILTERS}
    pages = max(1, math.ceil(found["total"] / page_size))
    paging = {**filters, "page_size": page_size, "as_of_id": found["as_of_id"]}
    return visit.render(
        "transactions.html",
        {
            **found,
            "filters": filters,
            "business_types": sorted(business_types()),
            "page": page,
            "pages": pages,
            "prev_query": {**paging, "page": page - 1} if page > 1 else None,
            "next_query": {**paging, "page": page + 1} if page < pages else None,
        },
    )


def _csv_stream(engine: Engine, flt: queries.PostingFilter) -> Iterator[str]:
    with Session(read_only(engine)) as session:
        yield from csv_chunks(queries.posting_row(p) for p in queries.iter_postings(session, flt))


async def transactions_csv(visit: Visit) -> Response:
    """The filtered transactions as the CSV ``hookledger ledger export`` writes, streamed.
    The rows are those that exist when the download starts (pinned to the highest id)."""
    flt = posting_filter(Query(visit.request, FILTERS))
    engine = visit.runtime.engine
    as_of_id = await visit.read(
        queries.max_posting_id
    )  # a dead database is a page, not a cut stream
    pinned = replace(flt, max_id=as_of_id)
    return StreamingResponse(
        _csv_stream(engine, pinned),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="hookledger-transactions.csv"'},
    )


async def balances(visit: Visit) -> Response:
    q = Query(visit.request, {"account", "as_of"})
    account = q.text("account", max_len=64)
    as_of_day = _date(q, "as_of", end_of_day=True)
    as_of = as_of_day[1] if as_of_day else None

    def query(session: Session) -> dict[str, Any]:
        customer = queries.balances_as_of(session, [account] if account else None, as_of)
        stmt = select(AccountBalance).order_by(
            col(AccountBalance.account_id), col(AccountBalance.currency)
        )
        if account:
            stmt = stmt.where(col(AccountBalance.account_id) == account)
        every = [] if as_of is not None else list(session.execute(stmt).scalars())
        totals: dict[str, Decimal] = {}
        with exact():
            for row in every:
                totals[row.currency] = totals.get(row.currency, Decimal(0)) + row.balance
        return {
            "customer": customer,
            "every": every,
            "totals": sorted(totals.items()),
        }

    found = await visit.read(query)
    return visit.render(
        "balances.html",
        {
            **found,
            "filters": q.raw(),
            "as_of": as_of,
            "as_of_text": as_of_day[0] if as_of_day else None,
        },
    )
