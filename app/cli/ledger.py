"""``hookledger ledger export`` and ``hookledger ledger verify``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from sqlmodel import Session

from app import kinds
from app.exports import csv_chunks
from app.responses import dumps
from app.settings import Settings
from app.store import ledger as queries
from app.store.db import make_engine, read_only
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
        description="Export customer transactions, or check every ledger invariant.",
    )
    verbs = ledger.add_subparsers(dest="ledger_command", required=True, metavar="VERB")
    p = verbs.add_parser(
        "export",
        help="write customer transactions as CSV or JSON",
        description="Write the customer transactions of a date range (on their date, UTC), "
        "as GET /account/v1/transactions returns them, in posting order.",
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
        help="only this customer account (default: every one)",
    )
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
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
