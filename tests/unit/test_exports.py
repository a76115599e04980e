"""The CSV export writes amounts exactly: every digit of NUMERIC(38, 18), no exponent."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from app.exports import csv_chunks
from app.store.ledger import TRANSACTION_FIELDS

# What NUMERIC(38, 18) holds: up to 20 digits before the point and 18 after.
AMOUNTS = st.decimals(
    min_value=Decimal("-99999999999999999999.999999999999999999"),
    max_value=Decimal("99999999999999999999.999999999999999999"),
    places=18,
    allow_nan=False,
    allow_infinity=False,
)


def _row(amount: Decimal) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(TRANSACTION_FIELDS)
    row["amt"] = amount
    return row


@given(AMOUNTS)
def test_every_digit_of_an_amount_reaches_the_csv(amount: Decimal) -> None:
    text = "".join(csv_chunks([_row(amount)]))
    (cell,) = [r["amt"] for r in csv.DictReader(io.StringIO(text))]
    assert Decimal(cell) == amount
    assert "E" not in cell.upper()


def test_a_38_digit_amount_is_not_rounded() -> None:
    amount = Decimal("12345678901234567890.123456789012345678")
    text = "".join(csv_chunks([_row(amount)]))
    assert "12345678901234567890.123456789012345678" in text
