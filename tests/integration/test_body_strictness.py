"""JSON and form bodies refuse the same things, with a 400 that names the problem.

A JSON object naming a key twice, a form field given twice, text that is not UTF-8 (raw bytes
in JSON, a percent-escape in a form), a lone surrogate, NUL: refused alike. Amounts are plain
decimal text, without surrounding spaces. The property test posts the same fields as JSON and
as a form to the same source and requires the same answer, and for an accepted body the same
event.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col

from app.store.models import InboundEvent
from tests.support import count, htx_update

FORM = "application/x-www-form-urlencoded"

# Text pieces as a sender would put them in each encoding: (JSON text, form text).
_PIECES = {
    "plain": ('"x"', "x"),
    "nul": ('"a\\u0000b"', "a%00b"),
    "surrogate": ('"a\\ud800b"', "a%ED%A0%80b"),
    "not-utf8": (b'"a\xffb"'.decode("latin-1"), "a%FFb"),
    "emoji": ('"\\ud83d\\ude00"', "%F0%9F%98%80"),
}


def _fields(order_id: int) -> list[tuple[str, str]]:
    payload = htx_update(order_id, "filled", "0.01", "420", "0.00002")
    return [(name, str(value)) for name, value in payload.items()]


def _json_body(fields: list[tuple[str, str]], raw: dict[int, str]) -> bytes:
    """Fields as a JSON object; ``raw`` gives JSON text (not a string) for some positions."""
    items = [
        json.dumps(name) + ":" + (raw[i] if i in raw else json.dumps(value))
        for i, (name, value) in enumerate(fields)
    ]
    return ("{" + ",".join(items) + "}").encode("latin-1" if raw else "utf-8")


def _form_body(fields: list[tuple[str, str]], raw: dict[int, str]) -> bytes:
    items = [
        quote(name, safe="") + "=" + (raw[i] if i in raw else quote(value, safe=""))
        for i, (name, value) in enumerate(fields)
    ]
    return "&".join(items).encode()


def _post(client, body: bytes, content_type: str):
    return client.post("/hooks/open", content=body, headers={"content-type": content_type})


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    order_id=st.integers(1, 30),
    twice=st.lists(st.integers(0, 11), max_size=2),
    twice_same=st.booleans(),
    pieces=st.dictionaries(st.integers(0, 11), st.sampled_from(sorted(_PIECES)), max_size=2),
    spaced_amount=st.booleans(),
)
def test_json_and_form_agree_on_what_they_accept(
    client, runtime, order_id, twice, twice_same, pieces, spaced_amount
):
    fields = _fields(order_id)
    for index in twice:  # a name given a second time, with the same or another value
        name, value = fields[index]
        fields.append((name, value if twice_same else value + "1"))
    if spaced_amount:
        fields = [(n, f" {v}" if n == "filled-fees" else v) for n, v in fields]
    json_raw = {i: _PIECES[p][0] for i, p in pieces.items()}
    form_raw = {i: _PIECES[p][1] for i, p in pieces.items()}
    as_json = _post(client, _json_body(fields, json_raw), "application/json")
    as_form = _post(client, _form_body(fields, form_raw), FORM)
    assert as_json.status_code == as_form.status_code, (as_json.text, as_form.text)
    assert as_json.status_code < 500
    if as_json.status_code == 200:
        assert as_form.json() == {"status": "duplicate", "event_id": as_json.json()["event_id"]}
    if twice or {"nul", "surrogate", "not-utf8"} & set(pieces.values()):
        assert as_json.status_code == 400
    elif spaced_amount:
        assert as_json.status_code == 422


@pytest.mark.parametrize(
    ("json_body", "form_body", "needle"),
    [
        (
            b'{"order-id": 1, "account-id": "1001", "account-id": "9999"}',
            b"order-id=1&account-id=1001&account-id=9999",
            "account-id",
        ),
        (b'{"err-msg": "a\xffb"}', b"err-msg=a%FFb", "UTF-8"),
        (b'{"err-msg": "a\\ud800b"}', b"err-msg=a%ED%A0%80b", None),
        (b'{"err-msg": "a\\u0000b"}', b"err-msg=a%00b", "NUL"),
    ],
    ids=["duplicate-name", "not-utf8", "lone-surrogate", "nul"],
)
def test_each_refusal_is_a_400_that_names_the_problem(
    client, runtime, json_body, form_body, needle
):
    for body, content_type in ((json_body, "application/json"), (form_body, FORM)):
        response = _post(client, body, content_type)
        assert response.status_code == 400, response.text
        message = response.json()["message"]
        if needle:
            assert needle in message, message
        assert "utf-8-sig" not in message
    # Both bodies passed authentication: each is kept for ops as rejected, nothing else.
    assert count(runtime.engine, InboundEvent) == 2
    assert count(runtime.engine, InboundEvent, col(InboundEvent.status) != "rejected") == 0


def test_a_duplicate_key_is_refused_even_where_text_looks_like_keys(client, runtime):
    payload = json.dumps(htx_update(7, "filled", "0.01", "420", "0"))
    tricky = payload[:-1] + ', "err-msg": "x\\": \\"y\\":", "state": "filled"}'
    response = _post(client, tricky.encode(), "application/json")
    assert response.status_code == 400
    assert "'state' twice" in response.json()["message"]
    harmless = payload[:-1] + ', "err-msg": "x\\": \\"y\\":"}'
    assert _post(client, harmless.encode(), "application/json").status_code == 200


def test_amounts_with_surrounding_spaces_are_422(client, runtime):
    body = json.dumps(htx_update(8, "filled", " 0.01", "420", "0")).encode()
    response = _post(client, body, "application/json")
    assert response.status_code == 422
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["body", "filled-amount"]
    assert "no spaces" in detail["msg"]


def test_a_byte_order_mark_is_refused_in_plain_words(client, runtime):
    body = b"\xef\xbb\xbf" + json.dumps(htx_update(9, "filled", "0.01", "420", "0")).encode()
    response = _post(client, body, "application/json")
    assert response.status_code == 400
    assert response.json()["message"] == "body starts with a byte order mark; send JSON without one"


@pytest.mark.parametrize(
    "content_type",
    ["application/vnd.htx+json", "application/json; charset=latin-1", "text/plain"],
)
def test_only_the_documented_media_types_are_accepted(client, runtime, content_type):
    body = json.dumps(htx_update(10, "filled", "0.01", "420", "0")).encode()
    response = _post(client, body, content_type)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
