"""Malformed input of every kind gets the right 4xx with a message, never a 5xx."""

from __future__ import annotations

import pytest
from sqlmodel import col

from app.store.models import InboundEvent
from tests.support import body_of, count, htx_headers, htx_update


def _post(client, body: bytes, *, content_type: str = "application/json", source: str = "htx-main"):
    headers = {**htx_headers(body), "content-type": content_type}
    return client.post(f"/hooks/{source}", content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "expected", "needle"),
    [
        (b"{not json", 400, "invalid JSON"),
        (b"", 400, "invalid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "limit"),
        (b"[" * 30_000 + b"]" * 30_000, 400, "nested deeper"),
        (b'{"a":' * 200 + b"1" + b"}" * 200, 400, "nested deeper"),
        (b'{"order-id": ' + b"9" * 10_000 + b"}", 400, "number longer"),
        (b'{"filled-amount": NaN}', 400, "NaN"),
        (b'{"filled-amount": Infinity}', 400, "Infinity"),
        (b'{"a": "\xff"}', 400, "UTF-8"),
    ],
    ids=[
        "syntax",
        "empty",
        "array",
        "deep-100k",
        "deep-30k",
        "deep-objects",
        "10k-digits",
        "nan",
        "infinity",
        "non-utf8",
    ],
)
def test_unparseable_bodies(client, runtime, body, expected, needle):
    response = _post(client, body)
    assert response.status_code == expected, response.text
    assert needle in response.json()["message"]
    if expected == 413:  # refused before authentication: nothing is stored
        assert count(runtime.engine, InboundEvent) == 0
    else:
        _kept_as_rejected_only(runtime)


def test_schema_errors_are_422_in_pydantic_style(client, runtime):
    payload = htx_update(1, "filled", "abc", "1", "0")
    payload["symbol"] = 12
    del payload["order-id"]
    response = _post(client, body_of(payload))
    assert response.status_code == 422
    detail = response.json()["detail"]
    locs = {tuple(d["loc"]) for d in detail}
    assert ("body", "order-id") in locs
    assert ("body", "filled-amount") in locs
    assert ("body", "symbol") in locs
    for item in detail:
        assert set(item) == {"type", "loc", "msg", "input"}
    _kept_as_rejected_only(runtime)


@pytest.mark.parametrize(
    "amount",
    [
        "-1",
        '"1e5"',
        '"0x10"',
        '"12,5"',
        "true",
        '"NaN"',
        "123456789012345678901.5",
        "0.0000000000000000001",
    ],
)
def test_amounts_must_be_exact_bounded_decimals(client, runtime, amount):
    body = body_of(htx_update(1, "filled", "0", "0", "0")).replace(
        b'"filled-amount":"0"', b'"filled-amount":' + amount.encode()
    )
    response = _post(client, body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "filled-amount"]


def test_body_over_the_limit_is_413_by_declared_length(client, runtime):
    body = b'{"pad": "' + b"x" * 70_000 + b'"}'
    response = _post(client, body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_body_over_the_limit_is_413_when_streamed_without_length(client, runtime):
    def chunks():
        for _ in range(100):
            yield b"x" * 1000

    response = client.post(
        "/hooks/htx-main",
        content=chunks(),
        headers={"content-type": "application/json", "x-signature": "0" * 64},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content_type", "source"),
    [
        ("text/plain", "htx-main"),
        ("", "htx-main"),
        ("application/xml", "pp"),
        ("application/x-www-form-urlencoded", "pp"),
    ],
)
def test_unsupported_content_types_are_415(client, runtime, content_type, source):
    response = client.post(
        f"/hooks/{source}", content=b"{}", headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_unknown_source_is_404(client, runtime):
    response = _post(client, b"{}", source="no-such-source")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_source"


def test_other_methods_and_paths_answer_json(client, runtime):
    assert client.get("/hooks/htx-main").status_code == 405
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [
        b'{"order-id": "A\\ud800", "symbol": "btcusdt", "type": "buy-limit", "state": "filled"}',
        b'{"order-id": "A\\u0000", "symbol": "btcusdt", "type": "buy-limit", "state": "filled"}',
        b'{"order-id": 1, "client-order-id": "x\\u0000", "symbol": "btcusdt", "type": "buy-limit", "state": "filled"}',
    ],
    ids=["lone-surrogate", "nul-in-key-field", "nul-in-other-field"],
)
def test_text_no_database_can_store_is_400(client, runtime, body):
    response = _post(client, body)
    assert response.status_code == 400, response.text
    _kept_as_rejected_only(runtime)


@pytest.mark.parametrize(
    "fragment",
    [
        b'"created-at": 123456789012345678901234567890',
        b'"created-at": 1e60',
        b'"symbol": "' + b"x" * 5000 + b'"',
        b'"trade": [' + b",".join([b'{"trade-id": 1}'] * 100) + b"]",
    ],
    ids=["int-over-64-bits", "huge-decimal", "long-text", "many-items"],
)
def test_422_echoes_stay_bounded_and_serialisable(client, runtime, fragment):
    payload = htx_update(1, "filled", "1", "1", "0")
    payload.pop(fragment.split(b'"')[1].decode(), None)  # the fragment gives it anew
    body = body_of(payload)
    body = body[:-1] + b"," + fragment + b"}"
    response = _post(client, body)
    assert response.status_code == 422, response.text
    assert len(response.content) < 20_000


def test_a_second_forwarded_for_line_cannot_smuggle_an_allowed_address(settings, runtime):
    from starlette.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as proxy:
        response = proxy.post(
            "/hooks/restricted",
            content=BODY_OK,
            headers=[
                ("content-type", "application/json"),
                ("x-signature", htx_headers(BODY_OK)["x-signature"]),
                ("x-forwarded-for", "203.0.113.7"),  # written by the client
                ("x-forwarded-for", "198.51.100.9"),  # appended by our proxy: the real client
            ],
        )
    assert response.status_code == 403


BODY_OK = body_of(htx_update(2, "filled", "1", "1", "0"))


def _kept_as_rejected_only(runtime) -> None:
    """The refused body is kept for ops as ``rejected`` (it passed authentication) and nothing
    else is stored or queued."""
    assert count(runtime.engine, InboundEvent) == 1
    assert count(runtime.engine, InboundEvent, col(InboundEvent.status) != "rejected") == 0
