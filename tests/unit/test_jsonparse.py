"""app.domain.jsonparse.loads_exact: exact decimals, bounded numbers and nesting, BadRequest only."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.domain.errors import BadRequest
from app.domain.jsonparse import MAX_DEPTH, MAX_NUMBER_CHARS, loads_exact
from app.routes.errors import status_of


def test_fractions_become_exact_decimals() -> None:
    value = loads_exact(b'{"a": 0.1, "b": 1e-7, "c": -2.50}')
    assert value == {"a": Decimal("0.1"), "b": Decimal("1e-7"), "c": Decimal("-2.50")}
    assert all(type(v) is Decimal for v in value.values())
    # The exact text survives, trailing zeros included.
    assert str(value["c"]) == "-2.50"


def test_integers_stay_int() -> None:
    value = loads_exact(b"[0, -7, 1704440609000, 123456789012345678901234567890]")
    assert value == [0, -7, 1704440609000, 123456789012345678901234567890]
    assert all(type(v) is int for v in value)


def test_str_input_is_accepted_too() -> None:
    assert loads_exact('{"x": 1.5}') == {"x": Decimal("1.5")}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant: str) -> None:
    with pytest.raises(BadRequest, match="not allowed"):
        loads_exact(f'{{"amount": {constant}}}'.encode())


@pytest.mark.parametrize(
    "number",
    [
        "9" * 10_000,
        "1." + "0" * 10_000,
        "1e" + "9" * 10_000,
        "-" + "1" * 10_000,
    ],
    ids=["int", "fraction", "exponent", "negative"],
)
def test_ten_thousand_digit_numbers_are_refused_quickly(number: str) -> None:
    started = time.perf_counter()
    with pytest.raises(BadRequest, match=f"longer than {MAX_NUMBER_CHARS}"):
        loads_exact(f'{{"amount": {number}}}'.encode())
    assert time.perf_counter() - started < 0.5


def test_number_at_the_length_limit_is_accepted() -> None:
    text = "1" * MAX_NUMBER_CHARS
    assert loads_exact(text) == int(text)
    with pytest.raises(BadRequest):
        loads_exact("1" * (MAX_NUMBER_CHARS + 1))


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_hundred_thousand_deep_nesting_is_bad_request_not_recursion_error(opener: str) -> None:
    started = time.perf_counter()
    with pytest.raises(BadRequest, match="nested deeper"):
        loads_exact((opener * 100_000).encode())
    assert time.perf_counter() - started < 1.0


def test_deep_but_closed_nesting_is_bad_request() -> None:
    with pytest.raises(BadRequest, match="nested deeper"):
        loads_exact("[" * 5_000 + "]" * 5_000)


def test_nesting_at_max_depth_is_accepted_and_one_more_is_refused() -> None:
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    value = loads_exact(at_limit)
    for _ in range(MAX_DEPTH - 1):
        assert len(value) == 1
        value = value[0]
    assert value == []

    over = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    with pytest.raises(BadRequest, match="nested deeper"):
        loads_exact(over)


def test_objects_nested_one_over_max_depth_are_refused() -> None:
    over = '{"a":' * (MAX_DEPTH + 1) + "{}" + "}" * (MAX_DEPTH + 1)
    with pytest.raises(BadRequest, match="nested deeper"):
        loads_exact(over)


@pytest.mark.parametrize(
    "text",
    [
        "[" * MAX_DEPTH + "0" + "]" * MAX_DEPTH,
        '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH,
    ],
    ids=["arrays", "objects"],
)
def test_scalar_inside_max_depth_containers_is_accepted(text: str) -> None:
    assert loads_exact(text) is not None


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    brackets = "[{" * 5_000 + '\\"' + "[" * 1_000
    value = loads_exact(json.dumps({"note": brackets}).encode())
    assert value == {"note": brackets}


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b'{"a": "\xc3"}', b'{"a": "\xed\xa0\x80"}'],
    ids=["bom16", "truncated", "surrogate"],
)
def test_non_utf8_bytes_are_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest, match="UTF-8"):
        loads_exact(body)


def test_invalid_json_names_line_and_column() -> None:
    with pytest.raises(BadRequest) as info:
        loads_exact(b'{\n  "a": 1,\n  "b": }')
    assert "line 3" in info.value.message
    assert "column 8" in info.value.message


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"{", b"{'a': 1}", b'{"a": 1} extra', b"[1,]", b"01"],
)
def test_malformed_json_is_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest, match="invalid JSON"):
        loads_exact(body)


def test_a_byte_order_mark_is_refused_without_python_hints() -> None:
    with pytest.raises(
        BadRequest, match=r"^body starts with a byte order mark; send JSON without one$"
    ):
        loads_exact(b"\xef\xbb\xbf{}")


@st.composite
def decimals_from_text(draw: st.DrawFn) -> Decimal:
    whole = draw(st.integers(min_value=-(10**20), max_value=10**20))
    frac = draw(st.text(alphabet="0123456789", min_size=1, max_size=18))
    exponent = draw(st.sampled_from(["", "e5", "E-3", "e+2"]))
    return Decimal(f"{whole}.{frac}{exponent}")


# Text a database can hold: no NUL and no lone surrogates (loads_exact refuses both).
safe_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | safe_text
    | decimals_from_text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(safe_text, children, max_size=4)
    ),
    max_leaves=30,
)


def dumps(value: Any, *, ensure_ascii: bool) -> str:
    """json.dumps that writes a Decimal as its exact text (the stdlib cannot)."""
    if isinstance(value, Decimal):
        text = str(value)
        # Decimal('0.00e2') prints as '0', which JSON reads as an int: keep it a fraction.
        return text if any(c in text for c in ".eE") else text + "e0"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v, ensure_ascii=ensure_ascii) for v in value) + "]"
    if isinstance(value, dict):
        items = (
            json.dumps(k, ensure_ascii=ensure_ascii) + ":" + dumps(v, ensure_ascii=ensure_ascii)
            for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    return json.dumps(value, ensure_ascii=ensure_ascii)


def same(a: Any, b: Any) -> bool:
    """Equal values of equal JSON type (True is not 1, Decimal('1.0') is not the int 1)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None)
@given(value=json_values, ensure_ascii=st.booleans())
def test_json_values_round_trip_exactly(value: Any, ensure_ascii: bool) -> None:
    text = dumps(value, ensure_ascii=ensure_ascii)
    assert same(loads_exact(text.encode("utf-8")), value)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_parse_or_raise_bad_request_only(body: bytes) -> None:
    try:
        loads_exact(body)
    except BadRequest as exc:
        assert status_of(exc) == 400


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "x\\u0000y"}',
        b'{"a\\u0000": 1}',
        b'{"a": "\\ud800"}',
        b'{"\\udfff": 1}',
        b'{"a": ["ok", {"b": "\\ud83d"}]}',
    ],
    ids=["nul-value", "nul-key", "lone-high-surrogate", "lone-low-surrogate-key", "nested"],
)
def test_text_no_database_can_hold_is_refused(body: bytes) -> None:
    with pytest.raises(BadRequest, match=r"NUL|surrogate"):
        loads_exact(body)


def test_a_surrogate_pair_escape_is_fine() -> None:
    assert loads_exact(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


@pytest.mark.parametrize("number", [b"1e999999999", b"1e-5000000", b"-2E+65"])
def test_numbers_of_absurd_magnitude_are_refused(number: bytes) -> None:
    with pytest.raises(BadRequest, match="out of range"):
        loads_exact(b'{"a": ' + number + b"}")


# --- the orjson fast path gives what the exact standard-library parser gives ----------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)


def _render(value: Any) -> str:
    """JSON text of ``value``, with each Decimal written as its own exact number text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_render(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _outcome(parse: Any, body: bytes | str) -> tuple[str, Any]:
    try:
        value = parse(body)
    except BadRequest as exc:
        return ("refused", exc.message)
    return ("value", (value, _types(value)))


def _types(value: Any) -> Any:
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    return type(value).__name__, str(value)


@settings(max_examples=400, deadline=None)
@given(_json_values)
def test_fast_path_equals_the_exact_parser_on_valid_json(value: Any) -> None:
    from app.domain.jsonparse import loads_exact_stdlib

    text = _render(value)
    for body in (text, text.encode("utf-8", "surrogatepass")):
        assert _outcome(loads_exact, body) == _outcome(loads_exact_stdlib, body)


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=64) | st.text(alphabet='{}[]",:.-+eE0123456789 \\u\x00tfnalrs', max_size=40)
)
def test_fast_path_equals_the_exact_parser_on_any_input(body: bytes | str) -> None:
    from app.domain.jsonparse import loads_exact_stdlib

    assume(not _has_duplicate_keys(body))  # the one documented difference, tested below
    assert _outcome(loads_exact, body) == _outcome(loads_exact_stdlib, body)


def _has_duplicate_keys(body: bytes | str) -> bool:
    seen_twice = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen_twice
        seen_twice |= len({key for key, _ in items}) != len(items)
        return dict(items)

    try:
        json.loads(
            body, object_pairs_hook=pairs, parse_float=str, parse_int=str, parse_constant=str
        )
    except (ValueError, RecursionError):
        return False
    return seen_twice


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1e99, "a": 1}',
        b'{"a": 1, "a": 1}',
        b'{"a": "x", "b": {"c": 1, "c": 2}}',
        b'{"a" :1, "b": [{"a": 1}, {"d": "e\\":", "d": 0}]}',
        b'{"a": 1.5, "a": 1.5}',
    ],
)
def test_an_object_naming_a_key_twice_is_refused_on_both_paths(body: bytes) -> None:
    from app.domain.jsonparse import loads_exact_stdlib

    for parse in (loads_exact, loads_exact_stdlib):
        with pytest.raises(BadRequest, match=r"twice|out of range"):
            parse(body)


def test_text_that_looks_like_a_key_does_not_refuse_a_body() -> None:
    assert loads_exact(b'{"a": "\\": \\":", "b": 2}') == {"a": '": ":', "b": 2}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "\\ud800"}',  # a lone surrogate escape
        b'{"a": "x\\u0000"}',  # NUL
        b'{"\\u0000": 1}',
        b"\xef\xbb\xbf{}",  # a byte order mark
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b"18446744073709551616",  # beyond 64 bits: orjson gives a float
        b'{"a": -0, "b": 1E2, "c": 0.10}',
        b'{"a": 1, "a": 2}',
        b'{"a": 1234567890123456789012345678901234567890123456789012345678901234567890, "c": "\\u0000"}',
    ],
)
def test_fast_path_edge_cases_match(body: bytes) -> None:
    from app.domain.jsonparse import loads_exact_stdlib

    assert _outcome(loads_exact, body) == _outcome(loads_exact_stdlib, body)
