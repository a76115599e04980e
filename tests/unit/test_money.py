"""app.domain.money: exact, bounded decimals and their canonical text."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.money import MAX_FRAC_DIGITS, MAX_INT_DIGITS, canonical, parse_decimal


@pytest.mark.parametrize("value", [0.1, 1.0, 0.0, float("nan"), True, False])
def test_floats_and_bools_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="not a float"):
        parse_decimal(value)


@pytest.mark.parametrize(
    "text", ["1e5", "1E5", "1.5e-3", "NaN", "Infinity", "-inf", "+1", ".5", "1.", "01", "1,5", ""]
)
def test_non_plain_decimal_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="plain decimal text"):
        parse_decimal(text)


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, b"1"])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="decimal number"):
        parse_decimal(value)


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_decimals_are_refused(value: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_decimal(value)


def test_plain_text_is_kept_exactly() -> None:
    result = parse_decimal("0.0100000000")
    assert result == Decimal("0.01")
    assert result.as_tuple() == Decimal("0.0100000000").as_tuple()
    assert parse_decimal("-12.5") == Decimal("-12.5")


@pytest.mark.parametrize("text", [" -12.5", "12.5 ", "\t1", "1\n"])
def test_text_with_surrounding_spaces_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="no spaces"):
        parse_decimal(text)


def test_ints_and_decimals_pass_through() -> None:
    assert parse_decimal(42) == Decimal(42)
    assert type(parse_decimal(42)) is Decimal
    assert parse_decimal(Decimal("3645.95")) == Decimal("3645.95")


def test_twenty_integer_digits_fit_and_twenty_one_do_not() -> None:
    assert parse_decimal("9" * MAX_INT_DIGITS) == Decimal("9" * MAX_INT_DIGITS)
    with pytest.raises(ValueError, match="integer digits"):
        parse_decimal("1" * (MAX_INT_DIGITS + 1))
    with pytest.raises(ValueError, match="integer digits"):
        parse_decimal(10**MAX_INT_DIGITS)
    with pytest.raises(ValueError, match="integer digits"):
        parse_decimal(Decimal("1E+20"))


def test_eighteen_fractional_digits_fit_and_nineteen_do_not() -> None:
    eighteen = "0." + "0" * (MAX_FRAC_DIGITS - 1) + "1"
    assert parse_decimal(eighteen) == Decimal(eighteen)
    with pytest.raises(ValueError, match="fractional digits"):
        parse_decimal("0." + "0" * MAX_FRAC_DIGITS + "1")
    with pytest.raises(ValueError, match="fractional digits"):
        parse_decimal(Decimal("1E-19"))


def test_nineteen_fractional_digits_are_fine_when_the_extra_ones_are_zeros() -> None:
    assert parse_decimal("0.1" + "0" * MAX_FRAC_DIGITS) == Decimal("0.1")
    assert parse_decimal("0." + "0" * 25) == 0


def test_the_widest_value_that_fits_numeric_38_18_is_kept_exactly() -> None:
    widest = "12345678901234567890.123456789012345678"
    assert parse_decimal(widest) == Decimal(widest)


def test_trailing_zero_beyond_eighteen_digits_does_not_round_a_wide_value() -> None:
    assert parse_decimal("12345678901234567890.1234567890123456780") == Decimal(
        "12345678901234567890.123456789012345678"
    )


@pytest.mark.parametrize("text", ["1\u0662\u0663", "0.\u0665", "1\uff12"])
def test_non_ascii_digits_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="plain decimal text"):
        parse_decimal(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1.500"), "1.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("0E-10"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("0.0300000000"), "0.03"),
        (Decimal("-12.50"), "-12.5"),
        (Decimal("1E-18"), "0.000000000000000001"),
        (Decimal("42"), "42"),
    ],
)
def test_canonical_is_the_shortest_plain_text(value: Decimal, text: str) -> None:
    assert canonical(value) == text


def test_canonical_keeps_every_digit_numeric_38_18_allows() -> None:
    a = Decimal("12345678901234567890.123456789012345678")
    b = Decimal("12345678901234567890.123456789012345677")
    assert canonical(a) == "12345678901234567890.123456789012345678"
    assert canonical(a) != canonical(b)


@settings(max_examples=200, deadline=None)
@given(
    value=st.decimals(
        min_value=Decimal("-99999999"),
        max_value=Decimal("99999999"),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    ),
    extra_zeros=st.integers(min_value=0, max_value=8),
)
def test_canonical_ignores_trailing_zeros_and_round_trips(value: Decimal, extra_zeros: int) -> None:
    padded = Decimal(f"{value:f}" + ("0" * extra_zeros if "." in f"{value:f}" else ""))
    text = canonical(value)
    assert canonical(padded) == text
    assert Decimal(text) == value
    assert "E" not in text
    assert "e" not in text
    assert parse_decimal(text) == value
