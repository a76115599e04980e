"""app.domain.signing: every verifier accepts good signatures and raises exactly Unauthorized."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.domain.errors import Unauthorized
from app.domain.signing import (
    WEBHOOK_TOLERANCE_S,
    decode_webhook_secret,
    hmac_sha256_hex,
    sign_standard_webhook,
    verify_hmac_sha256,
    verify_standard_webhook,
    verify_token,
)
from app.routes.errors import status_of
from tests.canary import canary, canary_whsec

NOW = 1_704_440_609
BODY = b'{"order-id": 59378, "state": "filled", "filled-amount": "0.03"}'
SECRET = canary("unit-hmac-current").encode()
OLD_SECRET = canary("unit-hmac-previous").encode()

GARBAGE_HEADER_VALUES = [
    "",
    " ",
    "sha256=",
    "zz" * 32,
    "g" * 64,
    "0" * 63,
    "0" * 65,
    "sha256=" + "0" * 63,
    "\udcff" * 64,
    "\udcff",
    "\x00" * 64,
    "é" * 64,
    "\u0130" * 64,  # 'İ'.lower() is two characters
    "\u0660" * 64,  # ARABIC-INDIC DIGIT ZERO
    "a" * 100_000,
    "v1,AAAA",
    "-1",
    "1e9",
    "\n",
]


def assert_only_unauthorized(call: Callable[[], object]) -> Unauthorized:
    """Run ``call`` and return the Unauthorized it raised; any other outcome fails the test."""
    with pytest.raises(Exception) as info:
        call()
    exc = info.value
    assert type(exc) is Unauthorized, f"{type(exc).__name__} escaped: {exc!r}"
    assert status_of(exc) == 401
    assert exc.code == "unauthorized"
    return exc


# ---------------------------------------------------------------- hmac-sha256


def check_hmac(
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    secrets: tuple[bytes, ...] = (SECRET,),
    timestamp_header: str | None = None,
    now: float = NOW,
) -> None:
    verify_hmac_sha256(
        body,
        headers,
        secrets,
        signature_header="X-Signature",
        timestamp_header=timestamp_header,
        tolerance_s=300,
        now=now,
    )


def hex_sig(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def test_hmac_hex_helper_matches_the_stdlib() -> None:
    assert hmac_sha256_hex(SECRET, BODY) == hex_sig(SECRET, BODY)


def test_hmac_valid_signature_is_accepted() -> None:
    check_hmac({"x-signature": hex_sig(SECRET, BODY)})


@pytest.mark.parametrize(
    "transform",
    [
        lambda s: "sha256=" + s,
        lambda s: "SHA256=" + s,
        str.upper,
        lambda s: "sha256=" + s.upper(),
        lambda s: f"  {s}  ",
    ],
    ids=["prefix", "upper-prefix", "upper-hex", "prefix-upper-hex", "padded"],
)
def test_hmac_prefix_and_uppercase_hex_are_accepted(transform: Callable[[str], str]) -> None:
    check_hmac({"x-signature": transform(hex_sig(SECRET, BODY))})


def test_hmac_one_tampered_body_byte_is_rejected() -> None:
    signature = hex_sig(SECRET, BODY)
    for index in (0, len(BODY) // 2, len(BODY) - 1):
        tampered = bytearray(BODY)
        tampered[index] ^= 0x01
        assert_only_unauthorized(
            lambda t=bytes(tampered): check_hmac({"x-signature": signature}, body=t)
        )


def test_hmac_wrong_secret_is_rejected() -> None:
    exc = assert_only_unauthorized(
        lambda: check_hmac({"x-signature": hex_sig(b"wrong-secret", BODY)})
    )
    assert "does not match" in exc.message


def test_hmac_any_rotated_secret_is_accepted() -> None:
    both = (SECRET, OLD_SECRET)
    check_hmac({"x-signature": hex_sig(SECRET, BODY)}, secrets=both)
    check_hmac({"x-signature": hex_sig(OLD_SECRET, BODY)}, secrets=both)
    assert_only_unauthorized(
        lambda: check_hmac({"x-signature": hex_sig(OLD_SECRET, BODY)}, secrets=(SECRET,))
    )


def test_hmac_with_timestamp_signs_timestamp_dot_body() -> None:
    stamp = str(NOW)
    headers = {"x-signature": hex_sig(SECRET, f"{stamp}.".encode() + BODY), "x-timestamp": stamp}
    check_hmac(headers, timestamp_header="X-Timestamp")
    # The body-only signature is not enough once a timestamp is required.
    body_only = {"x-signature": hex_sig(SECRET, BODY), "x-timestamp": stamp}
    assert_only_unauthorized(lambda: check_hmac(body_only, timestamp_header="X-Timestamp"))


def test_hmac_timestamp_is_covered_by_the_signature() -> None:
    signed = hex_sig(SECRET, f"{NOW}.".encode() + BODY)
    headers = {"x-signature": signed, "x-timestamp": str(NOW + 1)}
    assert_only_unauthorized(lambda: check_hmac(headers, timestamp_header="X-Timestamp"))


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-301, False), (-300, True), (0, True), (300, True), (301, False), (-86_400, False)],
)
def test_hmac_timestamp_tolerance_both_directions(offset: int, accepted: bool) -> None:
    stamp = str(NOW + offset)
    headers = {"x-signature": hex_sig(SECRET, f"{stamp}.".encode() + BODY), "x-timestamp": stamp}
    if accepted:
        check_hmac(headers, timestamp_header="X-Timestamp")
    else:
        exc = assert_only_unauthorized(lambda: check_hmac(headers, timestamp_header="X-Timestamp"))
        assert "outside" in exc.message


@pytest.mark.parametrize(
    "stamp", [None, "", "abc", "-5", "1.5", "1e9", "\udcff", "\u0660\u0661\u0662", "9" * 40]
)
def test_hmac_missing_or_non_numeric_timestamp_is_rejected(stamp: str | None) -> None:
    headers = {"x-signature": hex_sig(SECRET, f"{stamp}.".encode("utf-8", "replace") + BODY)}
    if stamp is not None:
        headers["x-timestamp"] = stamp
    assert_only_unauthorized(lambda: check_hmac(headers, timestamp_header="X-Timestamp"))


def test_hmac_missing_signature_header_is_rejected() -> None:
    exc = assert_only_unauthorized(lambda: check_hmac({}))
    assert "X-Signature" in exc.message


@pytest.mark.parametrize("value", GARBAGE_HEADER_VALUES)
@pytest.mark.parametrize("timestamp_header", [None, "X-Timestamp"])
def test_hmac_garbage_signature_headers_raise_only_unauthorized(
    value: str, timestamp_header: str | None
) -> None:
    headers = {"x-signature": value, "x-timestamp": value}
    assert_only_unauthorized(lambda: check_hmac(headers, timestamp_header=timestamp_header))


@pytest.mark.parametrize("value", GARBAGE_HEADER_VALUES)
def test_hmac_garbage_timestamp_raises_only_unauthorized(value: str) -> None:
    headers = {"x-signature": hex_sig(SECRET, BODY), "x-timestamp": value}
    assert_only_unauthorized(lambda: check_hmac(headers, timestamp_header="X-Timestamp"))


# ---------------------------------------------------------------- Standard Webhooks

WH_SECRET = canary_whsec("unit-webhooks")
MSG_ID = "msg_2Lc8bVHhZq9xLkvT"
PAYLOAD = '{"event_type": "positionSettle", "msg_id": "P24010816531715000059"}'


def library_signature(msg_id: str = MSG_ID, stamp: int = NOW, payload: str = PAYLOAD) -> str:
    return Webhook(WH_SECRET).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), payload)


def wh_headers(signature: str, *, msg_id: str = MSG_ID, stamp: str = str(NOW)) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}


def check_webhook(headers: dict[str, str], *, now: float = NOW, body: bytes | None = None) -> str:
    return verify_standard_webhook(
        PAYLOAD.encode() if body is None else body,
        headers,
        [decode_webhook_secret(WH_SECRET)],
        now=now,
    )


def test_decode_webhook_secret_with_and_without_prefix() -> None:
    key = base64.b64decode(WH_SECRET.removeprefix("whsec_"))
    assert key.startswith(b"CANARY-")
    assert decode_webhook_secret(WH_SECRET) == key
    assert decode_webhook_secret(WH_SECRET.removeprefix("whsec_")) == key
    assert decode_webhook_secret(WH_SECRET.rstrip("=")) == key


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_%%%", "whsec_a"])
def test_decode_webhook_secret_refuses_empty_or_undecodable(secret: str) -> None:
    with pytest.raises(ValueError, match="standard-webhooks secret"):
        decode_webhook_secret(secret)


def test_standard_webhook_signed_by_the_official_library_is_accepted() -> None:
    assert check_webhook(wh_headers(library_signature())) == MSG_ID


def test_standard_webhook_second_of_several_signatures_matches() -> None:
    other = Webhook("whsec_" + base64.b64encode(b"some-other-key").decode())
    wrong = other.sign(MSG_ID, datetime.fromtimestamp(NOW, tz=UTC), PAYLOAD)
    signature = f"{wrong} {library_signature()} v1,{base64.b64encode(b'x' * 32).decode()}"
    assert check_webhook(wh_headers(signature)) == MSG_ID
    assert_only_unauthorized(lambda: check_webhook(wh_headers(f"{wrong} {wrong}")))


def test_standard_webhook_malformed_entries_are_skipped_not_fatal() -> None:
    good = library_signature()
    signature = f"v1,!!!notbase64 garbage v2,xxx v1 , {good}"
    assert check_webhook(wh_headers(signature)) == MSG_ID


@pytest.mark.parametrize(
    "signature",
    ["v1,!!!notbase64", "garbage", "v2,xxx", "v1,", ",", "v1,\udcff", "v1,é", "v1,AAAA", " "],
)
def test_standard_webhook_malformed_signatures_raise_only_unauthorized(signature: str) -> None:
    assert_only_unauthorized(lambda: check_webhook(wh_headers(signature)))


def test_standard_webhook_v2_entry_with_a_valid_digest_does_not_count() -> None:
    v2 = "v2," + library_signature().removeprefix("v1,")
    assert_only_unauthorized(lambda: check_webhook(wh_headers(v2)))


def test_standard_webhook_tampered_body_or_id_is_rejected() -> None:
    signature = library_signature()
    assert_only_unauthorized(
        lambda: check_webhook(wh_headers(signature), body=PAYLOAD.encode() + b" ")
    )
    assert_only_unauthorized(lambda: check_webhook(wh_headers(signature, msg_id="msg_other")))


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (-WEBHOOK_TOLERANCE_S - 1, False),
        (-WEBHOOK_TOLERANCE_S, True),
        (WEBHOOK_TOLERANCE_S, True),
        (WEBHOOK_TOLERANCE_S + 1, False),
    ],
)
def test_standard_webhook_timestamp_tolerance(offset: int, accepted: bool) -> None:
    stamp = NOW + offset
    headers = wh_headers(library_signature(stamp=stamp), stamp=str(stamp))
    if accepted:
        assert check_webhook(headers) == MSG_ID
    else:
        assert_only_unauthorized(lambda: check_webhook(headers))


def test_standard_webhook_stale_timestamp_is_rejected_even_with_a_valid_signature() -> None:
    stamp = NOW - 3600
    headers = wh_headers(library_signature(stamp=stamp), stamp=str(stamp))
    exc = assert_only_unauthorized(lambda: check_webhook(headers))
    assert "webhook-timestamp" in exc.message


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_webhook_missing_header_is_rejected(missing: str) -> None:
    headers = wh_headers(library_signature())
    del headers[missing]
    assert_only_unauthorized(lambda: check_webhook(headers))


@pytest.mark.parametrize("value", [v for v in GARBAGE_HEADER_VALUES if "\udcff" not in v])
@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_webhook_garbage_headers_raise_only_unauthorized(header: str, value: str) -> None:
    headers = wh_headers(library_signature())
    headers[header] = value
    assert_only_unauthorized(lambda: check_webhook(headers))


@pytest.mark.parametrize("header", ["webhook-timestamp", "webhook-signature"])
def test_standard_webhook_surrogate_timestamp_or_signature_raise_only_unauthorized(
    header: str,
) -> None:
    headers = wh_headers(library_signature())
    headers[header] = "\udcff"
    assert_only_unauthorized(lambda: check_webhook(headers))


def test_standard_webhook_surrogate_message_id_raises_only_unauthorized() -> None:
    headers = wh_headers(library_signature(), msg_id="\udcff")
    assert_only_unauthorized(lambda: check_webhook(headers))


def test_sign_standard_webhook_is_verified_by_the_official_library() -> None:
    stamp = int(time.time())  # the library checks against the real clock
    key = decode_webhook_secret(WH_SECRET)
    signature = sign_standard_webhook(key, MSG_ID, stamp, PAYLOAD.encode())
    headers = wh_headers(signature, stamp=str(stamp))
    assert Webhook(WH_SECRET).verify(PAYLOAD, headers) == {
        "event_type": "positionSettle",
        "msg_id": "P24010816531715000059",
    }
    assert signature == library_signature(stamp=stamp)
    with pytest.raises(WebhookVerificationError):
        Webhook(WH_SECRET).verify(PAYLOAD + " ", headers)


# ---------------------------------------------------------------- token


def test_token_right_value_is_accepted() -> None:
    verify_token("demo-trx-token", [b"demo-trx-token"])


def test_token_rotated_value_is_accepted() -> None:
    verify_token("old-token", [b"new-token", b"old-token"])


@pytest.mark.parametrize(
    "presented", [None, "", "demo-trx-toke", "demo-trx-token ", "DEMO-TRX-TOKEN", "\udcff", "é"]
)
def test_token_wrong_or_missing_is_rejected(presented: str | None) -> None:
    assert_only_unauthorized(lambda: verify_token(presented, [b"demo-trx-token"]))
