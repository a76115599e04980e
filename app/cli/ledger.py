"""``hookledger ledger export`` and ``hookledger ledger verify``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy import Engine
from sqlmodel import Session

from app import kinds
from app.exports import csv_chunks
from app.journals import FORMATS, JournalError, write_journal
from app.responses import dumps
from app.settings import Settings
from app.store import ledger as queries
from app.store.db import make_engine, read_only
from app.store.models import JournalEntry, LedgerPosting
from app.timeparse import DAY_FORMATS, parse_day


@dataclass(frozen=True, slots=True)
class Day:
    """A ``--from`` or ``--to`` value: the text as typed (for messages) and its Unix seconds."""

    text: str
    seconds: int


def _day(text: str, *, end_of_day: bool) -> Day:
    try:
        return Day(text.strip(), parse_day(text, end_of_day=end_of_day))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _start_of_day(text: str) -> Day:
    return _day(text, end_of_day=False)


def _end_of_day(text: str) -> Day:
    return _day(text, end_of_day=True)


class _Progress:
    """Rows written, on stderr, only when stderr is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.count, self.live = stream, 0, stream.isatty()

    def tick(self) -> None:
        self.count += 1
        if self.live and self.count % 1000 == 0:
            self.stream.write(f"\rexported {self.count} rows")
            self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write(f"\rexported {self.count} rows\n")


def export(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    start, end = args.from_date, args.to_date
    if start.seconds > end.seconds:
        print(f"hookledger: --from {start.text} is after --to {end.text}", file=sys.stderr)
        return 2
    flt = queries.PostingFilter(
        accounts=[args.account] if args.account else None,
        from_date=start.seconds,
        to_date=end.seconds,
    )
    progress = _Progress(sys.stderr)
    engine = make_engine(settings.database_url)
    if args.format in FORMATS:
        try:
            return _journal(engine, args, out, progress)
        finally:
            engine.dispose()
    try:
        with Session(read_only(engine)) as session:
            rows = (queries.posting_row(p) for p in queries.iter_postings(session, flt))
            if args.format == "csv":
                for chunk in csv_chunks(rows, on_row=progress.tick):
                    out.write(chunk)
            else:
                out.write("[")
                for row in rows:
                    out.write(("," if progress.count else "") + "\n" + dumps(row).decode())
                    progress.tick()
                out.write("\n]\n")
    finally:
        engine.dispose()
    out.flush()
    progress.done()
    return 0


def _journal(engine: Engine, args: argparse.Namespace, out: TextIO, progress: _Progress) -> int:
    """Write the journal; exit 1 if a whole-ledger export's balances differ from the ledger's
    balance rows (the ledger itself is then wrong: run ``hookledger ledger verify``)."""
    start, end = args.from_date, args.to_date
    wanted = queries.EntryFilter(account=args.account, from_date=start.seconds, to_date=end.seconds)
    if engine.dialect.name == "postgresql":
        # One snapshot for every query: opening sums, entries and balance rows agree.
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with Session(read_only(engine)) as session:
        before = queries.EntryFilter(account=args.account, to_date=start.seconds - 1)
        opening = queries.entry_sums(session, before)
        first = queries.first_use(session, replace(wanted, from_date=None))

        def entries() -> Iterator[tuple[JournalEntry, list[LedgerPosting]]]:
            for item in queries.iter_entries(session, wanted):
                progress.tick()
                yield item

        try:
            final = write_journal(
                out,
                args.format,
                entries(),
                first_use=first,
                opening=opening,
                opening_date=start.seconds,
            )
        except JournalError as exc:
            print(f"hookledger: {exc}", file=sys.stderr)
            return 1
        out.flush()
        progress.done()
        last = queries.last_entry_date(session)
        if args.account is not None or (last is not None and last > end.seconds):
            return 0  # not the whole ledger: the balance rows are not its final balances
        kept = queries.balance_rows(session)
    zero = Decimal(0)
    wrong = [
        f"{account} {currency}: entries sum to {final.get((account, currency), zero)}, "
        f"balance row says {kept.get((account, currency), zero)}"
        for account, currency in sorted(set(final) | set(kept))
        if final.get((account, currency), zero) != kept.get((account, currency), zero)
    ]
    if wrong:
        print("hookledger: the journal's balances differ from the ledger's:", file=sys.stderr)
        for line in wrong:
            print(f"  - {line}", file=sys.stderr)
        print("the ledger is inconsistent: run `hookledger ledger verify`", file=sys.stderr)
        return 1
    return 0


def run_verify(settings: Settings, out: TextIO) -> int:
    engine = make_engine(settings.database_url)
    try:
        with Session(read_only(engine)) as session:
            report = kinds.verify_ledger(session, settings.file.ledger.quote_currencies)
    finally:
        engine.dispose()
    counts = "".join(f", {n} {name}" for name, n in sorted(report.checked.items()) if n)
    print(
        f"checked {report.checked_postings} postings, {report.checked_entries} entries{counts}",
        file=out,
    )
    if report.ok:
        print("ledger OK: every invariant holds", file=out)
        return 0
    print(f"ledger BROKEN: {len(report.breaches)} breach(es)", file=out)
    for line in report.breaches[:1000]:
        print(f"  - {line}", file=out)
    if len(report.breaches) > 1000:
        print(f"  ... and {len(report.breaches) - 1000} more", file=out)
    return 1


def add_parser(sub: Any) -> None:
    ledger = sub.add_parser(
        "ledger",
        help="export or verify the ledger",
        description="Export customer transactions or journals, or check every ledger invariant.",
    )
    verbs = ledger.add_subparsers(dest="ledger_command", required=True, metavar="VERB")
    p = verbs.add_parser(
        "export",
        help="write customer transactions (CSV, JSON) or a journal (beancount, hledger)",
        description="Write the customer transactions of a date range (on their date, UTC), "
        "as GET /account/v1/transactions returns them, in posting order; or, with --format "
        "beancount or hledger, a journal of the entries dated in the range, in (date, entry id) "
        "order, each whole (every leg, customer and counterpart), after one opening transaction "
        "carrying the balances of the earlier entries, with a balance assertion per account "
        "and currency at the end of each day. A journal of the whole ledger (no --account, "
        "--to at or after the last entry) is checked against the ledger's balance rows: "
        "exit 1 if they differ.",
    )
    p.add_argument(
        "--from",
        dest="from_date",
        required=True,
        metavar="DATE",
        type=_start_of_day,
        help=f"first day: {DAY_FORMATS}",
    )
    p.add_argument(
        "--to",
        dest="to_date",
        required=True,
        metavar="DATE",
        type=_end_of_day,
        help="last day: a date (YYYY-MM-DD, UTC), included whole, or Unix seconds (inclusive)",
    )
    p.add_argument(
        "--account",
        default=None,
        metavar="ACCOUNT",
        help="only this customer account (default: every one); for a journal, every entry "
        "with a posting of this account (customer or counterpart id), with all its legs",
    )
    p.add_argument(
        "--format",
        choices=("csv", "json", *FORMATS),
        default="csv",
        help="csv (default), json, beancount or hledger",
    )
    p.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="FILE",
        help="file to write (default: standard output)",
    )
    p.set_defaults(ledger_func="export")
    verbs.add_parser(
        "verify",
        help="check every ledger invariant; exit 1 on any breach",
        description="Check every ledger invariant (balanced entries, running balances, "
        "order totals); print each breach and exit 1 if there is one.",
    ).set_defaults(ledger_func="verify")
