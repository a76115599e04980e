"""Posting journal entries: the caller's transaction, balances locked in a fixed order."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, text
from sqlmodel import Session

from app.domain.journal import EntryDraft, checked
from app.store.db import insert_ignore
from app.store.models import AccountBalance, JournalEntry, LedgerPosting, table_of

LEDGER_LOCK = 7414002


def _locked_balance(
    session: Session, account_id: str, currency: str, now: datetime
) -> AccountBalance:
    dialect = session.get_bind().dialect.name
    session.execute(
        insert_ignore(
            dialect,
            table_of(AccountBalance),
            {
                "account_id": account_id,
                "currency": currency,
                "balance": Decimal(0),
                "updated_at": now,
            },
            ["account_id", "currency"],
        )
    )
    stmt = (
        select(AccountBalance)
        .where(AccountBalance.account_id == account_id, AccountBalance.currency == currency)  # type: ignore[arg-type]
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    balance: AccountBalance = session.execute(stmt).scalar_one()
    return balance


def post_entry(
    session: Session,
    draft: EntryDraft,
    *,
    event_id: str,
    date: int,
    sett_date: int,
    now: datetime,
) -> JournalEntry:
    """Write ``draft`` with running balances; return the entry. Does not commit.

    Balance rows are locked in (account, currency) order before any posting gets its id, so
    postings of one account and currency are numbered in the order their balances moved and
    concurrent workers cannot deadlock on them."""
    checked(draft)
    if session.get_bind().dialect.name == "postgresql":
        # Posting ids come from a sequence at insert time; without this lock a later-committed
        # transaction could hold a smaller id than rows already read, and "id > last seen"
        # paging would miss it. Held to commit, it hands out ids in commit order. (SQLite
        # already serialises writers.)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_LOCK})
    entry = JournalEntry(
        event_id=event_id,
        business_type=draft.business_type,
        market=draft.market,
        product_code=draft.product_code,
        description=draft.description,
        date=date,
        sett_date=sett_date,
        created_at=now,
    )
    session.add(entry)
    session.flush()
    assert entry.id is not None
    keys = sorted({(p.account_id, p.currency) for p in draft.postings})
    balances = {key: _locked_balance(session, *key, now) for key in keys}
    for p in draft.postings:
        balance = balances[(p.account_id, p.currency)]
        balance.balance += p.amount
        row = LedgerPosting(
            entry_id=entry.id,
            event_id=event_id,
            account_id=p.account_id,
            customer=p.customer,
            currency=p.currency,
            amount=p.amount,
            io_type="in" if p.amount > 0 else "out",
            balance=balance.balance,
            tran_type=p.tran_type,
            business_type=draft.business_type,
            business_sub_type=p.business_sub_type,
            market=draft.market,
            product_code=draft.product_code,
            product_name=draft.product_name,
            price=p.price,
            qty=p.qty,
            fx_currency=p.fx_currency,
            fx_amt=p.fx_amt,
            fx_rate=p.fx_rate,
            date=date,
            sett_date=sett_date,
        )
        session.add(row)
        session.flush()
        balance.last_posting_id = row.id
        balance.updated_at = now
        session.add(balance)
    return entry
