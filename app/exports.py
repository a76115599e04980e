"""The CSV form of the accountants' transactions, written by ``hookledger ledger export`` and
the web console's download alike, so the two are the same bytes."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from app.domain.money import canonical
from app.store import ledger as queries


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return canonical(value)  # every digit: the context's 28-digit rounding never applies
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
