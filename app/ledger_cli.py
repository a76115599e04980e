"""``hookledger ledger export`` and ``hookledger ledger verify``."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

from sqlmodel import Session

from app.responses import dumps
from app.settings import Settings
from app.store import ledger as queries
from app.store.db import make_engine, read_only
from app.store.verify import verify


def parse_date(text: str, *, end_of_day: bool = False) -> int:
    """Unix seconds from ``YYYY-MM-DD`` (UTC; the day's last second with ``end_of_day``) or
    from Unix seconds. Raises ``argparse.ArgumentTypeError``."""
    if text.isdigit():
        return int(text)
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither YYYY-MM-DD nor Unix seconds"
        ) from exc
    return int(day.timestamp()) + (86_399 if end_of_day else 0)


def _end_of_day(text: str) -> int:
    return parse_date(text, end_of_day=True)


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    return "" if value is None else value


def csv_chunks(
    rows: Iterable[dict[str, Any]],
    *,
    on_row: Callable[[], None] | None = None,
    chunk_rows: int = 500,
) -> Iterator[str]:
    """The CSV export of ``rows`` (``posting_row`` dicts): the header line, then the rows, as
    text chunks of at most ``chunk_rows`` rows. The CLI and the web console both write this."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=queries.TRANSACTION_FIELDS, lineterminator="\n")
    writer.writeheader()
    for n, row in enumerate(rows, 1):
        writer.writerow({k: _cell(v) for k, v in row.items()})
        if on_row is not None:
            on_row()
        if n % chunk_rows == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


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
    if start > end:
        print(f"hookledger: --from ({start}) is after --to ({end})", file=sys.stderr)
        return 2
    flt = queries.PostingFilter(
        accounts=[args.account] if args.account else None, from_date=start, to_date=end
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
            report = verify(session, settings.file.ledger.quote_currencies)
    finally:
        engine.dispose()
    print(
        f"checked {report.checked_postings} postings, {report.checked_entries} entries, "
        f"{report.checked_orders} orders",
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
    ledger = sub.add_parser("ledger", help="export or verify the ledger")
    verbs = ledger.add_subparsers(dest="ledger_command", required=True, metavar="VERB")
    p = verbs.add_parser("export", help="write customer transactions as CSV or JSON")
    p.add_argument(
        "--from",
        dest="from_date",
        required=True,
        metavar="DATE",
        type=parse_date,
        help="YYYY-MM-DD (UTC) or Unix seconds",
    )
    p.add_argument(
        "--to",
        dest="to_date",
        required=True,
        metavar="DATE",
        type=_end_of_day,
        help="inclusive: YYYY-MM-DD (the whole day, UTC) or Unix seconds",
    )
    p.add_argument("--account", default=None)
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--output", "-o", default="-", help="file to write (default: standard output)")
    p.set_defaults(ledger_func="export")
    verbs.add_parser("verify", help="check every ledger invariant").set_defaults(
        ledger_func="verify"
    )
