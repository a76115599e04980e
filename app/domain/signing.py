"""Callback authentication over the raw body bytes. Pure: ``now`` is passed in.

Every verifier raises ``Unauthorized`` and nothing else, whatever is wrong with the input
(missing header, bad hex or base64, non-ASCII header, stale timestamp). Every comparison of a
secret-derived value uses ``hmac.compare_digest``, against every active secret (rotation), and
every active secret is always tried so timing does not reveal which one matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from app.domain.errors import Unauthorized

WEBHOOK_TOLERANCE_S = 300
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def hmac_sha256_hex(secret: bytes, message: bytes) -> str:
    """Return the lowercase hex HMAC-SHA256 of ``message``."""
    return hmac.digest(secret, message, "sha256").hex()  # one-shot, in C (OpenSSL)


def _any_match(candidates: Sequence[bytes], presented: bytes) -> bool:
    matched = False
    for candidate in candidates:
        # No short-circuit: each secret costs the same whether or not an earlier one matched.
        matched |= hmac.compare_digest(candidate, presented)
    return matched


def _parse_timestamp(raw: str | None, *, now: float, tolerance_s: int, header: str) -> str:
    """Return the timestamp text as sent (it is what was signed) once it is in the window."""
    if raw is None or raw == "":
        raise Unauthorized(f"missing {header} header")
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        if raw.isascii() and raw.isdigit() and len(raw) == 13:  # the size of milliseconds
            raise Unauthorized(f"{header} looks like milliseconds; it must be Unix seconds")
        raise Unauthorized(f"{header} must be Unix seconds")
    if abs(now - int(raw)) > tolerance_s:
        raise Unauthorized(f"{header} is outside the allowed {tolerance_s} s window")
    return raw


def verify_hmac_sha256(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[bytes],
    *,
    signature_header: str,
    timestamp_header: str | None,
    tolerance_s: int,
    now: float,
) -> None:
    """Check a hex HMAC-SHA256 (optional ``sha256=`` prefix) of the body, or of
    ``"{timestamp}.{body}"`` when ``timestamp_header`` is set. Raises ``Unauthorized``."""
    presented = headers.get(signature_header.lower())
    if not presented:
        raise Unauthorized(f"missing {signature_header} header")
    presented = presented.strip()
    if presented[:7].lower() == "sha256=":
        presented = presented[7:]
    presented = presented.lower()
    if len(presented) != 64 or not presented.isascii():
        raise Unauthorized(f"{signature_header} must be 64 hex characters")
    message = body
    if timestamp_header:
        stamp = _parse_timestamp(
            headers.get(timestamp_header.lower()),
            now=now,
            tolerance_s=tolerance_s,
            header=timestamp_header,
        )
        message = stamp.encode() + b"." + body
    expected = [hmac_sha256_hex(secret, message).encode() for secret in secrets]
    if not _any_match(expected, presented.encode()):
        raise Unauthorized("signature does not match")


def decode_webhook_secret(secret: str) -> bytes:
    """Return the key bytes of a Standard Webhooks secret (``whsec_`` + base64).

    Raises ``ValueError`` when it is not base64 or empty (a configuration error)."""
    text = secret.removeprefix("whsec_")
    if not _BASE64.fullmatch(text):
        raise ValueError("a standard-webhooks secret must be base64, optionally after 'whsec_'")
    try:
        # Padding added as the reference library does, so unpadded secrets work the same.
        key = base64.b64decode(text + "==")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            "a standard-webhooks secret must be base64, optionally after 'whsec_'"
        ) from exc
    if not key:
        raise ValueError("a standard-webhooks secret must not be empty")
    return key


def sign_standard_webhook(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,<base64>`` signature of a Standard Webhooks message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard_webhook(
    body: bytes,
    headers: Mapping[str, str],
    keys: Sequence[bytes],
    *,
    now: float,
    tolerance_s: int = WEBHOOK_TOLERANCE_S,
) -> str:
    """Verify ``webhook-id``/``webhook-timestamp``/``webhook-signature``; return the message id.

    Raises ``Unauthorized`` on any problem, including malformed signature entries."""
    msg_id = headers.get("webhook-id")
    raw_sig = headers.get("webhook-signature")
    if not msg_id or not raw_sig:
        raise Unauthorized("missing webhook-id or webhook-signature header")
    stamp = _parse_timestamp(
        headers.get("webhook-timestamp"),
        now=now,
        tolerance_s=tolerance_s,
        header="webhook-timestamp",
    )
    presented: list[bytes] = []
    for entry in raw_sig.split(" "):
        version, sep, value = entry.partition(",")
        if not sep or version != "v1":
            continue
        try:
            presented.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not presented:
        raise Unauthorized("webhook-signature has no v1 signature")
    try:
        # As the reference library does: the timestamp as an integer, not its text.
        signed = f"{msg_id}.{int(stamp)}.".encode() + body
    except UnicodeEncodeError as exc:
        raise Unauthorized("webhook-id is not valid text") from exc
    expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in keys]
    matched = False
    for sig in presented:
        matched |= _any_match(expected, sig)
    if not matched:
        raise Unauthorized("signature does not match")
    return msg_id


def verify_token(presented: str | None, secrets: Sequence[bytes]) -> None:
    """Check a token taken from the URL path against every active secret."""
    if not presented:
        raise Unauthorized("missing token: POST /hooks/{source}/{token}")
    if not _any_match(secrets, presented.encode("utf-8", "surrogatepass")):
        raise Unauthorized("token does not match")
