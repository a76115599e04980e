"""Read queries of the accountants' API and the ledger export. Only customer-side postings
are ever returned to a key, and only for the accounts it may read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlmodel import Session, col

from app.domain.money import exact
from app.store.models import AccountBalance, JournalEntry, LedgerPosting


@dataclass(frozen=True, slots=True)
class PostingFilter:
    """``accounts`` None means every customer account."""

    accounts: Sequence[str] | None = None
    business_types: Sequence[str] | None = None
    io_type: str | None = None
    from_date: int | None = None
    to_date: int | None = None
    max_id: int | None = None
    after_id: int | None = None
    customer_only: bool = True  # False: counterpart postings too (verify)

    def clauses(self) -> list[ColumnElement[bool]]:
        p = LedgerPosting
        where: list[ColumnElement[bool]] = [col(p.customer).is_(True)] if self.customer_only else []
        if self.accounts is not None:
            where.append(col(p.account_id).in_(list(self.accounts)))
        if self.business_types:
            where.append(col(p.business_type).in_(list(self.business_types)))
        if self.io_type is not None:
            where.append(col(p.io_type) == self.io_type)
        if self.from_date is not None:
            where.append(col(p.date) >= self.from_date)
        if self.to_date is not None:
            where.append(col(p.date) <= self.to_date)
        if self.max_id is not None:
            where.append(col(p.id) <= self.max_id)
        if self.after_id is not None:
            where.append(col(p.id) > self.after_id)
        return where


def page_of_postings(
    session: Session, flt: PostingFilter, *, page: int, page_size: int
) -> tuple[int, list[LedgerPosting]]:
    """Return the total count and one page of customer postings in ascending id order."""
    where = flt.clauses()
    total = session.execute(
        select(func.count()).select_from(LedgerPosting).where(*where)
    ).scalar_one()
    rows = session.execute(
        select(LedgerPosting)
        .where(*where)
        .order_by(col(LedgerPosting.id))
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).scalars()
    return int(total), list(rows)


def max_posting_id(session: Session) -> int:
    return int(session.execute(select(func.coalesce(func.max(LedgerPosting.id), 0))).scalar_one())


def iter_postings(
    session: Session, flt: PostingFilter, *, batch: int = 2000
) -> Iterator[LedgerPosting]:
    """Every matching posting in id order, fetched in keyset batches (for exports)."""
    after = flt.after_id or 0
    while True:
        rows = list(
            session.execute(
                select(LedgerPosting)
                .where(*replace(flt, after_id=after).clauses())
                .order_by(col(LedgerPosting.id))
                .limit(batch)
            ).scalars()
        )
        if not rows:
            return
        yield from rows
        assert rows[-1].id is not None
        after = rows[-1].id
        session.expunge_all()  # a stream: keep the identity map from growing with it


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: str
    currency: str
    balance: Decimal
    postings: int
    last_transaction_id: int


def balances_as_of(
    session: Session, accounts: Sequence[str] | None, as_of: int | None
) -> list[Balance]:
    """Customer balances per (account, currency) from the postings dated ``<= as_of`` (all
    when None). Summed exactly in Python: posting ids follow processing order, not ``date``,
    so no single posting's running balance is the balance at a past time."""
    flt = PostingFilter(accounts=accounts, to_date=as_of)
    totals: dict[tuple[str, str], list[Any]] = {}
    with exact():
        for p in iter_postings(session, flt):
            entry = totals.setdefault((p.account_id, p.currency), [Decimal(0), 0, 0])
            entry[0] += p.amount
            entry[1] += 1
            entry[2] = p.id
    return [
        Balance(account, currency, total, n, last)
        for (account, currency), (total, n, last) in sorted(totals.items())
    ]


def page_of(
    session: Session,
    model: Any,
    *,
    accounts: Sequence[str] | None,
    page: int,
    page_size: int,
    extra: Sequence[ColumnElement[bool]] = (),
) -> tuple[int, list[Any]]:
    """A page of orders, contracts or deposits of ``accounts``, by id."""
    where: list[ColumnElement[bool]] = list(extra)
    if accounts is not None:
        where.append(col(model.account_id).in_(list(accounts)))
    total = session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
    rows = session.execute(
        select(model)
        .where(*where)
        .order_by(model.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).scalars()
    return int(total), list(rows)


def postings_of_events(session: Session, event_ids: Sequence[str]) -> list[LedgerPosting]:
    if not event_ids:
        return []
    return list(
        session.execute(
            select(LedgerPosting)
            .where(
                col(LedgerPosting.event_id).in_(list(event_ids)),
                col(LedgerPosting.customer).is_(True),
            )
            .order_by(col(LedgerPosting.id))
        ).scalars()
    )


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Journal entries dated in ``[from_date, to_date]`` (Unix seconds, either end open when
    None); with ``account``, only the entries with a posting of that account, whole."""

    account: str | None = None
    from_date: int | None = None
    to_date: int | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        e = JournalEntry
        where: list[ColumnElement[bool]] = []
        if self.account is not None:
            touching = select(col(LedgerPosting.entry_id)).where(
                col(LedgerPosting.account_id) == self.account
            )
            where.append(col(e.id).in_(touching))
        if self.from_date is not None:
            where.append(col(e.date) >= self.from_date)
        if self.to_date is not None:
            where.append(col(e.date) <= self.to_date)
        return where


def iter_entries(
    session: Session, flt: EntryFilter, *, batch: int = 500
) -> Iterator[tuple[JournalEntry, list[LedgerPosting]]]:
    """Every matching entry with all its postings (in id order), ordered by ``(date, id)``,
    fetched in keyset batches so a large ledger streams."""
    e = JournalEntry
    last: tuple[int, int] | None = None
    while True:
        where = flt.clauses()
        if last is not None:
            where.append(
                or_(col(e.date) > last[0], and_(col(e.date) == last[0], col(e.id) > last[1]))
            )
        entries = list(
            session.execute(
                select(e).where(*where).order_by(col(e.date), col(e.id)).limit(batch)
            ).scalars()
        )
        if not entries:
            return
        legs: dict[int, list[LedgerPosting]] = {x.id: [] for x in entries if x.id is not None}
        for p in session.execute(
            select(LedgerPosting)
            .where(col(LedgerPosting.entry_id).in_(list(legs)))
            .order_by(col(LedgerPosting.id))
        ).scalars():
            legs[p.entry_id].append(p)
        for x in entries:
            assert x.id is not None
            yield x, legs[x.id]
            last = (x.date, x.id)
        session.expunge_all()  # a stream: keep the identity map from growing with it


def first_use(session: Session, flt: EntryFilter) -> dict[str, int]:
    """The earliest ``date`` each account has a posting in the matching entries."""
    rows = session.execute(
        select(col(LedgerPosting.account_id), func.min(col(LedgerPosting.date)))
        .join(JournalEntry, col(JournalEntry.id) == col(LedgerPosting.entry_id))
        .where(*flt.clauses())
        .group_by(col(LedgerPosting.account_id))
    ).all()
    return {str(account): int(day) for account, day in rows}


def entry_sums(session: Session, flt: EntryFilter) -> dict[tuple[str, str], Decimal]:
    """The sum per (account, currency) of the postings of the matching entries, added exactly
    in Python (SQLite would sum in floating point)."""
    totals: dict[tuple[str, str], Decimal] = {}
    with exact():
        for _, legs in iter_entries(session, flt):
            for p in legs:
                key = (p.account_id, p.currency)
                totals[key] = totals.get(key, Decimal(0)) + p.amount
    return totals


def last_entry_date(session: Session) -> int | None:
    """The latest entry ``date`` in the ledger (None when it is empty)."""
    value = session.execute(select(func.max(JournalEntry.date))).scalar_one()
    return None if value is None else int(value)


def balance_rows(session: Session) -> dict[tuple[str, str], Decimal]:
    """Every ``account_balances`` row: the balance per (account, currency) the writer kept."""
    return {
        (b.account_id, b.currency): b.balance
        for b in session.execute(select(AccountBalance)).scalars()
    }


__all__ = [
    "EntryFilter",
    "PostingFilter",
    "balances_as_of",
    "iter_postings",
    "page_of",
    "page_of_postings",
]


def account_out(account_id: str) -> int | str:
    # Seed 002 types account_id as an int: numeric ids are written as numbers.
    return int(account_id) if account_id.isdigit() and len(account_id) < 19 else account_id


def posting_row(p: LedgerPosting) -> dict[str, Any]:
    """A customer posting in seed 002's transaction shape (``amt`` positive, ``io_type`` sign)."""
    return {
        "id": p.id,
        "account_id": account_out(p.account_id),
        "tran_type": p.tran_type,
        "date": p.date,
        "sett_date": p.sett_date,
        "base_currency": p.currency,
        "market": p.market,
        "product_code": p.product_code,
        "product_name": p.product_name,
        "price": p.price,
        "qty": p.qty,
        "amt": p.amount.copy_abs(),  # exact: abs() would round to the context precision
        "balance": p.balance,
        "io_type": p.io_type,
        "fx_currency": p.fx_currency,
        "fx_amt": p.fx_amt,
        "fx_rate": p.fx_rate,
        "remarks": p.event_id,
        "business_type": p.business_type,
        "business_sub_type": p.business_sub_type,
    }


TRANSACTION_FIELDS = (
    "id", "account_id", "tran_type", "date", "sett_date", "base_currency", "market",
    "product_code", "product_name", "price", "qty", "amt", "balance", "io_type", "fx_currency",
    "fx_amt", "fx_rate", "remarks", "business_type", "business_sub_type",
)  # fmt: skip
