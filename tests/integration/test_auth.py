"""The signature matrix over HTTP: only valid and rotated credentials are accepted, no 5xx,
and nothing is stored for a rejected request."""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from app.domain.signing import hmac_sha256_hex
from app.store.models import InboundEvent
from tests.support import (
    HTX_SECRET,
    HTX_SECRET_OLD,
    PP_SECRET,
    PP_SECRET_OLD,
    TRX_TOKEN,
    TRX_TOKEN_OLD,
    body_of,
    count,
    fixture_bytes,
    htx_update,
)

BODY = body_of(htx_update(1, "submitted", "0", "0", "0"))


def _tampered(body: bytes) -> bytes:
    i = body.index(b"submitted")
    return body[:i] + b"S" + body[i + 1 :]


def _ts_headers(body: bytes, stamp: float, secret: str = HTX_SECRET) -> dict[str, str]:
    stamp = int(stamp)
    signed = f"{stamp}.".encode() + body
    return {
        "content-type": "application/json",
        "x-timestamp": str(stamp),
        "x-signature": hmac_sha256_hex(secret.encode(), signed),
    }


HMAC_CASES = [
    # (id, source, body, headers, expected status)
    ("valid", "htx-main", BODY, {"x-signature": hmac_sha256_hex(HTX_SECRET.encode(), BODY)}, 200),
    (
        "valid-prefixed",
        "htx-main",
        BODY,
        {"x-signature": "sha256=" + hmac_sha256_hex(HTX_SECRET.encode(), BODY).upper()},
        200,
    ),
    (
        "rotated",
        "htx-main",
        BODY,
        {"x-signature": hmac_sha256_hex(HTX_SECRET_OLD.encode(), BODY)},
        200,
    ),
    (
        "tampered-byte",
        "htx-main",
        _tampered(BODY),
        {"x-signature": hmac_sha256_hex(HTX_SECRET.encode(), BODY)},
        401,
    ),
    (
        "wrong-secret",
        "htx-main",
        BODY,
        {"x-signature": hmac_sha256_hex(b"not-the-secret", BODY)},
        401,
    ),
    ("missing-header", "htx-main", BODY, {}, 401),
    ("malformed-header", "htx-main", BODY, {"x-signature": "zz-not-hex"}, 401),
    ("empty-header", "htx-main", BODY, {"x-signature": ""}, 401),
    ("non-utf8-unsigned", "htx-main", b"\xff\xfe{\x00", {"x-signature": "0" * 64}, 401),
    (
        "non-utf8-signed",
        "htx-main",
        b"\xff\xfe{\x00",
        {"x-signature": hmac_sha256_hex(HTX_SECRET.encode(), b"\xff\xfe{\x00")},
        400,
    ),
    ("ts-valid", "htx-ts", BODY, lambda now: _ts_headers(BODY, now), 200),
    ("ts-299s-past", "htx-ts", BODY, lambda now: _ts_headers(BODY, math.ceil(now) - 299), 200),
    ("ts-301s-past", "htx-ts", BODY, lambda now: _ts_headers(BODY, math.floor(now) - 301), 401),
    ("ts-301s-future", "htx-ts", BODY, lambda now: _ts_headers(BODY, math.ceil(now) + 301), 401),
    (
        "ts-missing",
        "htx-ts",
        BODY,
        {"x-signature": hmac_sha256_hex(HTX_SECRET.encode(), BODY)},
        401,
    ),
    (
        "ts-garbage",
        "htx-ts",
        BODY,
        lambda now: {**_ts_headers(BODY, now), "x-timestamp": "yesterday"},
        401,
    ),
    (
        "ts-signed-without-timestamp",
        "htx-ts",
        BODY,
        lambda now: {
            "x-timestamp": str(int(now)),
            "x-signature": hmac_sha256_hex(HTX_SECRET.encode(), BODY),
        },
        401,
    ),
]


@pytest.mark.parametrize(
    ("source", "body", "headers", "expected"),
    [case[1:] for case in HMAC_CASES],
    ids=[case[0] for case in HMAC_CASES],
)
def test_hmac_matrix(client, runtime, source, body, headers, expected):
    if callable(headers):
        # Whole seconds are signed: round away from now so 301 s stays over the 300 s window.
        headers = headers(time.time())
    response = client.post(
        f"/hooks/{source}", content=body, headers={"content-type": "application/json", **headers}
    )
    assert response.status_code == expected, response.text
    stored = count(runtime.engine, InboundEvent)
    if expected == 200:
        assert response.json()["status"] == "accepted"
        assert stored == 1
    elif expected == 400:  # authenticated, then refused by the parser: kept as rejected
        assert stored == 1
        assert response.json()["error"] == "bad_request"
    else:
        assert stored == 0
        assert response.json()["error"] == "unauthorized"
        assert response.json()["message"]


def _library_headers(
    secret: str, body: bytes, *, msg_id: str = "msg_a", when: datetime | None = None
) -> dict[str, str]:
    when = when or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


PP_BODY = fixture_bytes("pingpong_position_settle.json")


def _with_signature(rewrite: Callable[[str], str]) -> dict[str, str]:
    """Valid headers whose ``webhook-signature`` is ``rewrite(the valid one)``."""
    headers = _library_headers(PP_SECRET, PP_BODY)
    return {**headers, "webhook-signature": rewrite(headers["webhook-signature"])}


@pytest.mark.parametrize(
    ("headers", "expected"),
    # Every case is signed when its test runs, not at collection: a long run would otherwise
    # send timestamps older than the 300 s tolerance.
    [
        (lambda: _library_headers(PP_SECRET, PP_BODY), 200),
        (lambda: _library_headers(PP_SECRET_OLD, PP_BODY), 200),
        (lambda: _with_signature(lambda good: "v1,AAAA " + good), 200),
        (
            lambda: _library_headers(
                "whsec_" + base64.b64encode(b"some-other-key").decode(), PP_BODY
            ),
            401,
        ),
        (
            lambda: _library_headers(
                PP_SECRET, PP_BODY, when=datetime.fromtimestamp(math.floor(time.time()) - 301, UTC)
            ),
            401,
        ),
        (
            lambda: _library_headers(
                PP_SECRET, PP_BODY, when=datetime.fromtimestamp(math.ceil(time.time()) + 301, UTC)
            ),
            401,
        ),
        (lambda: _with_signature(lambda _good: "v1,!!!not-base64"), 401),
        (lambda: _with_signature(lambda _good: "garbage"), 401),
        (lambda: {"content-type": "application/json"}, 401),
    ],
    ids=[
        "valid",
        "rotated",
        "second-of-two",
        "wrong-secret",
        "301s-past",
        "301s-future",
        "bad-base64",
        "no-version",
        "missing",
    ],
)
def test_standard_webhooks_matrix(client, runtime, headers, expected):
    headers = headers()
    response = client.post("/hooks/pp", content=PP_BODY, headers=headers)
    assert response.status_code == expected, response.text
    assert count(runtime.engine, InboundEvent) == (1 if expected == 200 else 0)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/hooks/trx/{TRX_TOKEN}", 200),
        (f"/hooks/trx/{TRX_TOKEN_OLD}", 200),
        ("/hooks/trx/wrong-token", 401),
        ("/hooks/trx", 401),
        (f"/hooks/htx-main/{TRX_TOKEN}", 404),
    ],
)
def test_token_in_path(client, runtime, path, expected):
    response = client.post(
        path,
        content=fixture_bytes("trx_deposit.json"),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == expected, response.text
    assert count(runtime.engine, InboundEvent) == (1 if expected == 200 else 0)


def test_open_source_needs_an_allowed_address(settings, runtime):
    from starlette.testclient import TestClient

    from app.main import create_app

    body = BODY
    app = create_app(settings)
    with TestClient(app, client=("127.0.0.1", 1)) as inside:
        assert (
            inside.post(
                "/hooks/open", content=body, headers={"content-type": "application/json"}
            ).status_code
            == 200
        )
    with TestClient(app, client=("198.51.100.7", 1)) as outside:
        response = outside.post(
            "/hooks/open", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_forwarded_for_is_believed_only_from_trusted_proxies(settings, runtime):
    from starlette.testclient import TestClient

    from app.main import create_app

    headers = {
        "content-type": "application/json",
        "x-signature": hmac_sha256_hex(HTX_SECRET.encode(), BODY),
    }
    app = create_app(settings)
    # An untrusted peer claiming an allowed address is refused.
    with TestClient(app, client=("198.51.100.7", 1)) as attacker:
        spoofed = attacker.post(
            "/hooks/restricted", content=BODY, headers={**headers, "x-forwarded-for": "203.0.113.9"}
        )
    assert spoofed.status_code == 403
    # Our own proxy on loopback vouching for an allowed client is believed.
    with TestClient(app, client=("127.0.0.1", 1)) as proxy:
        relayed = proxy.post(
            "/hooks/restricted",
            content=BODY,
            headers={**headers, "x-forwarded-for": "1.2.3.4, 203.0.113.9"},
        )
        forged_left = proxy.post(
            "/hooks/restricted",
            content=BODY,
            headers={**headers, "x-forwarded-for": "203.0.113.9, 198.51.100.7"},
        )
    assert relayed.status_code == 200, relayed.text
    assert forged_left.status_code == 403
