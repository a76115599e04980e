"""Exact decimal amounts. A float never touches money.

Amounts are ``Decimal`` from the wire to the database. The bounds match the SQL column type
(NUMERIC(38, 18)): at most 20 integer digits and 18 fractional digits, so anything accepted at
the edge can always be stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Underflow,
    localcontext,
)

MAX_INT_DIGITS = 20
MAX_FRAC_DIGITS = 18
_DECIMAL_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
# Arithmetic on amounts runs in this context: wide enough for any sum of NUMERIC(38, 18)
# values, and any rounding at all raises instead of silently changing an amount.
_EXACT = Context(
    prec=100,
    Emax=10_000,
    Emin=-10_000,
    traps=[Inexact, InvalidOperation, Overflow, Underflow, DivisionByZero],
)


@contextmanager
def exact() -> Iterator[Context]:
    """Run Decimal arithmetic where any rounding raises ``decimal.Inexact``."""
    with localcontext(_EXACT) as ctx:
        yield ctx


def strip_zeros(value: Decimal) -> Decimal:
    """``value`` without trailing fractional zeros, exactly (``normalize()`` would round to the
    context precision): ``1.500`` -> ``1.5``, ``100`` stays ``100``."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0 or not digits:
        return value
    kept = list(digits)
    while exponent < 0 and len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        exponent += 1
    if kept == [0]:
        return Decimal(0)
    return Decimal((sign, tuple(kept), exponent))


def parse_decimal(value: object) -> Decimal:
    """Return ``value`` as an exact, bounded ``Decimal``.

    Accepts ``Decimal`` (as produced by the exact JSON parser), ``int`` and plain decimal text
    such as ``"0.0100"``. Raises ``ValueError`` for floats, booleans, exponents, NaN/Infinity and
    out-of-range values.
    """
    if isinstance(value, bool | float):
        raise ValueError("amount must be an exact decimal (JSON number or string), not a float")
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            if value != value.strip():
                raise ValueError("amount must be plain decimal text such as '12.5', no spaces")
            raise ValueError("amount must be plain decimal text such as '12.5'")
        try:
            result = Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - regex guards it
            raise ValueError("amount is not a decimal") from exc
    else:
        raise ValueError("amount must be a decimal number")
    return check_bounds(result)


def check_bounds(value: Decimal) -> Decimal:
    """Return ``value`` if it is finite and fits NUMERIC(38, 18); raise ``ValueError`` otherwise."""
    if not value.is_finite():
        raise ValueError("amount must be finite")
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    frac = -exponent if exponent < 0 else 0
    int_digits = len(digits) - frac if exponent <= 0 else len(digits) + exponent
    if int_digits > MAX_INT_DIGITS:
        raise ValueError(f"amount has more than {MAX_INT_DIGITS} integer digits")
    if frac > MAX_FRAC_DIGITS:
        stripped = strip_zeros(value)
        s_exp = stripped.as_tuple().exponent
        assert isinstance(s_exp, int)
        if -s_exp > MAX_FRAC_DIGITS:
            raise ValueError(f"amount has more than {MAX_FRAC_DIGITS} fractional digits")
        value = stripped
    return value


def canonical(value: Decimal) -> str:
    """Return the shortest plain text of ``value``, no exponent: ``1.500`` -> ``'1.5'``."""
    if value == 0:
        return "0"
    return format(strip_zeros(value), "f")
