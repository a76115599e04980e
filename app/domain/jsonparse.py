"""Exact, bounded, unambiguous JSON parsing of callback bodies.

orjson would turn ``0.1`` into a float, so a body orjson reads with any float in it (a number
with a fraction or exponent, or an integer beyond 64 bits) is parsed again with the standard
library's scanner with ``parse_float=Decimal``: every such number becomes an exact ``Decimal``,
integers stay ``int``. Bodies without one (amounts as strings, the usual case) take orjson's
answer, about ten times faster; the two paths give equal results (a property test holds them
to it), and any body either path refuses is refused by the standard library, with its
message.

An object that names a key twice is refused: which ``account-id`` would be meant is anyone's
guess, and form bodies refuse a field given twice too. orjson keeps the last value silently,
so its answer is trusted only when the body holds no more key-like ``"...":`` spots than the
parsed objects hold keys (each real key is one such spot; text that merely contains ``":``
adds spots and sends the body to the exact parser, which checks every object).

NaN and Infinity are refused, numbers longer than ``MAX_NUMBER_CHARS`` are refused before
conversion (no 10k-digit int parsing), nesting that exhausts the recursion limit is refused,
and a leading byte order mark is refused, all as ``BadRequest``.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from app.domain.errors import BadRequest

MAX_NUMBER_CHARS = 64
MAX_EXPONENT = 64
MAX_DEPTH = 64
_KEY_SPOT = re.compile(rb'"[ \t\n\r]*:')
_KEY_SPOT_TEXT = re.compile(r'"[ \t\n\r]*:')


def _parse_float(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise BadRequest(f"JSON number longer than {MAX_NUMBER_CHARS} characters")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the scanner only hands over numbers
        raise BadRequest("invalid JSON number") from exc
    # 1e999999999 is ten characters: refuse magnitudes no amount or id can have, before any
    # arithmetic on them can overflow or underflow.
    if value and not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
        raise BadRequest(f"JSON number {text[:20]} is out of range")
    return value


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise BadRequest(f"JSON number longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _parse_constant(name: str) -> Any:
    raise BadRequest(f"JSON constant {name} is not allowed")


def check_text(text: str) -> None:
    """Refuse text no database column can hold: NUL, and lone surrogates (from ``\\ud800``
    escapes), which are not Unicode scalar values and cannot be encoded."""
    if "\x00" in text:
        raise BadRequest("text may not contain NUL (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest("text contains a lone surrogate (an unpaired \\ud800 escape)") from exc


def _check_tree(value: Any, limit: int) -> int | None:
    """Refuse nesting deeper than ``limit`` (scalars add nothing) and text ``check_text``
    refuses, in object keys and values alike. Iterative: no recursion on hostile input.
    Returns the number of object keys in the tree, or None, and stops, at the first float
    (orjson's inexact reading of a number)."""
    keys = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            check_text(node)
        elif isinstance(node, float):
            return None
        elif isinstance(node, dict | list):
            depth += 1
            if depth > limit:
                raise BadRequest(f"JSON nested deeper than {limit} levels")
            if isinstance(node, dict):
                keys += len(node)
                for key in node:
                    check_text(key)
                stack.extend((child, depth) for child in node.values())
            else:
                stack.extend((child, depth) for child in node)
    return keys


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses an object naming a key twice."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for name, _value in pairs:
            if name in seen:
                raise BadRequest(f"JSON object has the key {name[:64]!r} twice")
            seen.add(name)
    return result


def _name_spots(body: bytes | str) -> int:
    """How many places in ``body`` look like the end of an object key: at least one per key."""
    if isinstance(body, bytes):
        return len(_KEY_SPOT.findall(body))
    return len(_KEY_SPOT_TEXT.findall(body))


def decode_text(body: bytes) -> str:
    """Return ``body`` as text; raise ``BadRequest`` when it is not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 (byte {exc.start})") from exc


_INEXACT = object()  # orjson's answer holds a float: parse again, exactly


def loads_exact(body: bytes | str) -> Any:
    """Parse JSON with exact decimals. Raises ``BadRequest`` for anything that is not sane JSON."""
    value = _loads_fast(body)
    if value is not _INEXACT:
        return value
    return loads_exact_stdlib(body)


def _loads_fast(body: bytes | str) -> Any:
    """orjson's parse when it is exact: no float anywhere. Checks what ``_check_tree`` checks."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _INEXACT  # the standard library says what is wrong, in its words
    try:
        names = _check_tree(value, MAX_DEPTH)
    except BadRequest:
        return _INEXACT  # refused either way; the exact parser's message is the one given
    if names is None or (names and _name_spots(body) != names):
        return _INEXACT  # a float, or perhaps a key given twice: the exact parser decides
    return value


def loads_exact_stdlib(body: bytes | str) -> Any:
    """``loads_exact`` on the standard library's scanner alone (exact for every number)."""
    text = decode_text(body) if isinstance(body, bytes) else body
    if text.startswith("\ufeff"):
        raise BadRequest("body starts with a byte order mark; send JSON without one")
    # Cheap pre-check: a body that cannot be shallow enough is refused before recursion.
    if text.count("[") + text.count("{") > 10 * MAX_DEPTH and _looks_deep(text):
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(
            text,
            parse_float=_parse_float,
            parse_int=_parse_int,
            parse_constant=_parse_constant,
            object_pairs_hook=_unique_keys,
        )
    except BadRequest:
        raise
    except RecursionError as exc:
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except ValueError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from exc
    _check_tree(value, MAX_DEPTH)
    return value


def _looks_deep(text: str) -> bool:
    """True when brackets outside strings nest deeper than ``MAX_DEPTH`` (a linear scan)."""
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in "]}":
            depth -= 1
    return False
