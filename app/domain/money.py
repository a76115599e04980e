"""Exact decimal amounts. A float never touches money.

Amounts are ``Decimal`` from the wire to the database. The bounds match the SQL column type
(NUMERIC(38, 18)): at most 20 integer digits and 18 fractional digits, so anything accepted at
the edge can always be stored.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation

MAX_INT_DIGITS = 20
MAX_FRAC_DIGITS = 18
_DECIMAL_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
# normalize() rounds to the context precision (28 by default): use one wide enough for any
# value that passes the bounds, so trailing zeros are stripped without losing a digit.
_WIDE = Context(prec=80)


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
        text = value.strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            raise ValueError("amount must be plain decimal text such as '12.5'")
        try:
            result = Decimal(text)
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
        stripped = value.normalize(_WIDE)
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
    return format(value.normalize(_WIDE), "f")
