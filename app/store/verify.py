"""``hookledger ledger verify``: check every ledger invariant against the database.

Streams postings in id order and checks, without trusting any stored total:
1. each entry has two or more postings that sum to zero per currency; no zero amounts;
2. each posting's ``balance`` is the running sum of its (account, currency) in id order;
3. ``account_balances`` equals the final running sums (and points at the last posting);
4. every entry's event exists and is ``processed``; every event has at most one entry;
5. whatever each source kind checks of its own tables against the ledger (``checks``: an
   order's cumulative amounts against what its events added and its trade postings, a
   deposit against its entry, ...).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlmodel import Session, col

from app.domain.money import exact
from app.store.ledger import PostingFilter, iter_postings
from app.store.models import (
    AccountBalance,
    InboundEvent,
    JournalEntry,
)

ZERO = Decimal(0)


Breach = Callable[[str], None]
Check = Callable[[Session, Breach], dict[str, int]]


@dataclass
class Report:
    checked_postings: int = 0
    checked_entries: int = 0
    checked: dict[str, int] = field(default_factory=dict)  # rows of what each check looked at
    breaches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaches


def verify(session: Session, checks: Sequence[Check] = ()) -> Report:
    """Check every invariant of the journal, then run ``checks`` (each source kind's); return
    a report listing each breach found."""
    with exact():
        return _verify(session, checks)


def _verify(session: Session, checks: Sequence[Check]) -> Report:
    report = Report()
    breach = report.breaches.append
    per_entry: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    legs: dict[int, int] = defaultdict(int)
    running: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    last_id: dict[tuple[str, str], int] = {}
    for p in iter_postings(session, PostingFilter(customer_only=False), batch=5000):
        assert p.id is not None
        report.checked_postings += 1
        if p.amount == 0:
            breach(f"posting {p.id}: amount is zero")
        if p.io_type != ("in" if p.amount > 0 else "out"):
            breach(f"posting {p.id}: io_type {p.io_type} contradicts amount {p.amount}")
        per_entry[p.entry_id][p.currency] += p.amount
        legs[p.entry_id] += 1
        key = (p.account_id, p.currency)
        running[key] += p.amount
        last_id[key] = p.id
        if p.balance != running[key]:
            breach(
                f"posting {p.id}: balance {p.balance} of {p.account_id} {p.currency} "
                f"should be {running[key]} (running sum)"
            )
            running[key] = p.balance  # report each wrong row once, not every row after it
    for entry_id, sums in per_entry.items():
        off = {ccy: total for ccy, total in sums.items() if total != 0}
        if off:
            breach(f"entry {entry_id}: postings do not sum to zero: {off}")
        if legs[entry_id] < 2:
            breach(f"entry {entry_id}: fewer than two postings")
    _check_balances(session, running, last_id, breach)
    report.checked_entries = _check_entries(session, set(per_entry), breach)
    for check in checks:
        report.checked.update(check(session, breach))
    return report


def _check_balances(
    session: Session,
    running: dict[tuple[str, str], Decimal],
    last_id: dict[tuple[str, str], int],
    breach: Callable[[str], None],
) -> None:
    seen = set()
    for bal in session.execute(select(AccountBalance)).scalars():
        key = (bal.account_id, bal.currency)
        seen.add(key)
        if bal.balance != running.get(key, ZERO):
            breach(
                f"balance {bal.account_id} {bal.currency}: {bal.balance}, "
                f"postings sum to {running.get(key, ZERO)}"
            )
        if key in last_id and bal.last_posting_id != last_id[key]:
            breach(
                f"balance {bal.account_id} {bal.currency}: last posting {bal.last_posting_id}, "
                f"should be {last_id[key]}"
            )
    for key in set(running) - seen:
        breach(f"balance {key[0]} {key[1]}: postings exist but no balance row")


def _check_entries(session: Session, with_postings: set[int], breach: Callable[[str], None]) -> int:
    count = 0
    rows = session.execute(
        select(JournalEntry.id, JournalEntry.event_id, InboundEvent.status).outerjoin(  # type: ignore[call-overload]
            InboundEvent, col(InboundEvent.id) == col(JournalEntry.event_id)
        )
    )
    for entry_id, event_id, status in rows:
        count += 1
        if entry_id not in with_postings:
            breach(f"entry {entry_id}: has no postings")
        if status is None:
            breach(f"entry {entry_id}: its event {event_id} does not exist")
        elif status != "processed":
            breach(f"entry {entry_id}: its event {event_id} is {status}, not processed")
    return count
