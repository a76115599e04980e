"""Posting journal entries: the caller's transaction, balances locked in a fixed order.

A ``LedgerWriter`` belongs to one transaction (``ledger_writer(session)``). An entry gets its
id when it is posted (reserved from the sequence; a contract records it at once); the entry and
its postings are buffered. When the transaction commits (a ``before_commit`` hook, so nothing
can be forgotten) the writer takes the ledger lock, locks the touched balance rows in (account,
currency) order, computes every posting's running balance, and writes the entries, postings
and balances with three executemany statements. So a job applying many events pays for the
balances once, and the ledger lock is held only from that write to the commit, not while
events are applied: workers apply their batches in parallel and queue only for the short
write. Around a savepoint, ``mark()`` and ``restore()`` drop what a rolled-back event posted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, Inexact, InvalidOperation, Overflow, Underflow
from typing import Any

from sqlalchemy import bindparam, event, func, select, text, tuple_, update
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from app.domain.errors import PermanentError
from app.domain.journal import EntryDraft, checked
from app.domain.money import exact
from app.store.db import BulkInsert, insert_ignore_many
from app.store.models import AccountBalance, JournalEntry, LedgerPosting, table_of

LEDGER_LOCK = 7414002
_WRITER = "hookledger_ledger_writer"


def lock_ledger(session: Session) -> None:
    """On PostgreSQL, take the ledger lock (held to commit; re-taking it is free).

    Posting ids come from a sequence at insert time; without this lock a later-committed
    transaction could hold a smaller id than rows already read, and "id > last seen" paging
    would miss it. Held to commit, it hands out ids in commit order. Taken before any row lock,
    it also means two ledger transactions never wait on each other in opposite orders. (SQLite
    already serialises writers with ``BEGIN IMMEDIATE``.)"""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_LOCK})


class LedgerWriter:
    """The ledger writes of one transaction. Use ``ledger_writer(session)``."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._entries: list[dict[str, Any]] = []
        self._postings: list[dict[str, Any]] = []
        self._rows: list[tuple[Any, tuple[str, ...], dict[str, Any]]] = []  # add_row's
        self._ids: list[int] = []  # entry ids reserved and not used yet
        self._reserve = 1
        self._last_id = 0
        self._written = 0  # entries this transaction has written (flushed)

    def expect(self, entries: int) -> None:
        """Say how many entries this transaction may post, so their ids are reserved in one
        round trip (unused ones become gaps; entry ids are unique, not gapless)."""
        self._reserve = max(1, entries)

    def _next_id(self) -> int:
        if not self._ids:
            self._ids = _reserve_ids(
                self._session, table_of(JournalEntry), self._reserve, after=self._last_id
            )
            self._ids.reverse()
        entry_id = self._ids.pop()
        self._last_id = entry_id
        return entry_id

    def post(
        self, draft: EntryDraft, *, event_id: str, date: int, sett_date: int, now: datetime
    ) -> int:
        """Buffer ``draft``'s entry and postings; return the entry's (reserved) id."""
        checked(draft)
        entry_id = self._next_id()
        self._entries.append(
            {
                "id": entry_id,
                "event_id": event_id,
                "business_type": draft.business_type,
                "market": draft.market,
                "product_code": draft.product_code,
                "description": draft.description,
                "date": date,
                "sett_date": sett_date,
                "created_at": now,
            }
        )
        for p in draft.postings:
            self._postings.append(
                {
                    "entry_id": entry_id,
                    "event_id": event_id,
                    "account_id": p.account_id,
                    "customer": p.customer,
                    "currency": p.currency,
                    "amount": p.amount,
                    "io_type": "in" if p.amount > 0 else "out",
                    "balance": None,  # the running balance, known when written
                    "tran_type": p.tran_type,
                    "business_type": draft.business_type,
                    "business_sub_type": p.business_sub_type,
                    "market": draft.market,
                    "product_code": draft.product_code,
                    "product_name": draft.product_name,
                    "price": p.price,
                    "qty": p.qty,
                    "fx_currency": p.fx_currency,
                    "fx_amt": p.fx_amt,
                    "fx_rate": p.fx_rate,
                    "date": date,
                    "sett_date": sett_date,
                }
            )
        return entry_id

    def add_row(self, table: Any, row: dict[str, Any], *, conflict: tuple[str, ...] = ()) -> None:
        """Buffer an event's effect row for ``table`` (an order event, a trade), written by
        ``flush`` with the ledger, one multi-row insert per table, in the order added; with
        ``conflict``, a row whose key is already stored (or added before) is skipped. Rows of a
        table must all have the same keys. Like postings, they are dropped by ``restore``.
        Written after the last savepoint, a row the database refuses fails the whole batch,
        which is then redone one event at a time (correct, only slower)."""
        self._rows.append((table, conflict, row))

    def has_posted(self) -> bool:
        """True when this transaction posted an entry (written or still buffered)."""
        return bool(self._written or self._entries)

    def mark(self) -> tuple[int, int, int]:
        """What is buffered now; ``restore`` returns to it after a savepoint rolled back."""
        return len(self._entries), len(self._postings), len(self._rows)

    def restore(self, mark: tuple[int, int, int]) -> None:
        del self._entries[mark[0] :]
        del self._postings[mark[1] :]
        del self._rows[mark[2] :]

    def flush(self, now: datetime) -> None:
        """Write the buffered effect rows; then lock the ledger and the touched balances, and
        write the buffered postings (ids in posting order, running balances) and the new
        balances."""
        self._write_rows()
        if not self._entries:
            return
        lock_ledger(self._session)
        running = self._lock_balances(
            sorted({(row["account_id"], row["currency"]) for row in self._postings}), now
        )
        try:
            with exact():  # a running balance is never rounded
                for row in self._postings:
                    key = (row["account_id"], row["currency"])
                    running[key] = row["balance"] = running[key] + row["amount"]
        except (Inexact, InvalidOperation, Overflow, Underflow) as exc:
            raise PermanentError(
                "a running balance would lose precision (it would need rounding, or is too large)"
            ) from exc
        # Under the ledger lock nobody else takes posting ids: reserved now, they are higher
        # than every committed one and follow the list (= running balance) order.
        postings = table_of(LedgerPosting)
        ids = _reserve_ids(self._session, postings, len(self._postings))
        last: dict[tuple[str, str], int] = {}
        for row, posting_id in zip(self._postings, ids, strict=True):
            row["id"] = posting_id
            last[(row["account_id"], row["currency"])] = posting_id
        dialect = self._session.get_bind().dialect
        entries = table_of(JournalEntry)
        BulkInsert.of(dialect, entries, tuple(self._entries[0])).execute(
            self._session, self._entries
        )
        BulkInsert.of(dialect, postings, tuple(self._postings[0])).execute(
            self._session, self._postings
        )
        balances = table_of(AccountBalance)
        self._session.execute(
            update(balances)
            .where(
                balances.c.account_id == bindparam("b_account"),
                balances.c.currency == bindparam("b_currency"),
            )
            .values(
                balance=bindparam("b_balance"),
                last_posting_id=bindparam("b_last"),
                updated_at=now,
            ),
            [
                {"b_account": a, "b_currency": c, "b_balance": running[(a, c)], "b_last": i}
                for (a, c), i in sorted(last.items())
            ],
        )
        self._written += len(self._entries)
        self._entries.clear()
        self._postings.clear()

    def _write_rows(self) -> None:
        """``add_row``'s rows: per table (and conflict rule), one insert of all its rows. They
        need no ledger lock, so they are written before it is taken."""
        if not self._rows:
            return
        dialect = self._session.get_bind().dialect
        by_table: dict[tuple[Any, tuple[str, ...]], list[dict[str, Any]]] = {}
        for table, conflict, row in self._rows:
            by_table.setdefault((table, conflict), []).append(row)
        for (table, conflict), rows in by_table.items():
            bulk = BulkInsert.of(dialect, table, tuple(rows[0]), conflict=conflict)
            bulk.execute(self._session, rows)
        self._rows.clear()

    def _lock_balances(
        self, keys: list[tuple[str, str]], now: datetime
    ) -> dict[tuple[str, str], Decimal]:
        """Create missing balance rows, then lock them in (account, currency) order."""
        dialect = self._session.get_bind().dialect.name
        table = table_of(AccountBalance)
        self._session.execute(
            insert_ignore_many(dialect, table, ["account_id", "currency"]),
            [
                {"account_id": a, "currency": c, "balance": Decimal(0), "updated_at": now}
                for a, c in keys
            ],
        )
        stmt = (
            select(table.c.account_id, table.c.currency, table.c.balance)
            .where(tuple_(table.c.account_id, table.c.currency).in_(keys))
            .order_by(table.c.account_id, table.c.currency)
            .with_for_update()
        )
        return {(a, c): balance for a, c, balance in self._session.execute(stmt)}


def _reserve_ids(session: Session, table: Any, count: int, *, after: int = 0) -> list[int]:
    """``count`` new ids of ``table``, ascending. PostgreSQL: from its sequence (unused ones
    are gaps). SQLite: above the highest stored id (and ``after``); the caller's transaction
    holds the write lock, so nobody else takes them."""
    if session.get_bind().dialect.name == "postgresql":
        return sorted(
            session.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"
                ),
                {"t": table.name, "n": count},
            ).scalars()
        )
    top = session.execute(select(func.max(table.c.id))).scalar_one() or 0
    start = max(top, after) + 1
    return list(range(start, start + count))


def ledger_writer(session: Session) -> LedgerWriter:
    """The ledger writer of ``session``'s current transaction (made on first use)."""
    writer = session.info.get(_WRITER)
    if not isinstance(writer, LedgerWriter):
        writer = session.info[_WRITER] = LedgerWriter(session)
    return writer


def flush_ledger(session: Session, now: datetime) -> None:
    """Write what the session's transaction posted so far (commit does this by itself)."""
    writer = session.info.get(_WRITER)
    if isinstance(writer, LedgerWriter):
        writer.flush(now)


def post_entry(
    session: Session,
    draft: EntryDraft,
    *,
    event_id: str,
    date: int,
    sett_date: int,
    now: datetime,
) -> int:
    """Write ``draft`` with running balances in the session's transaction; return the entry
    id. Its postings reach the database by commit (or ``flush_ledger``)."""
    return ledger_writer(session).post(
        draft, event_id=event_id, date=date, sett_date=sett_date, now=now
    )


@event.listens_for(OrmSession, "before_commit")
def _flush_on_commit(session: OrmSession) -> None:
    if session.in_nested_transaction():  # a savepoint released: the transaction goes on
        return
    writer = session.info.get(_WRITER)
    if isinstance(writer, LedgerWriter):
        writer.flush(datetime.now(UTC))


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_writer(session: OrmSession, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction ended: commit or rollback
        session.info.pop(_WRITER, None)
