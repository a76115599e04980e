"""The accountants' API signature: ``X-API-Key``, ``X-API-Timestamp`` (ms), ``X-API-Signature``.

The signature is the lowercase hex HMAC-SHA256, with the key's secret, of
``timestamp + METHOD + path`` followed by ``"?" + query`` when the URL has a query, exactly as
sent. Pure: ``now_ms`` is passed in. Failures raise ``ApiError`` with the envelope's code.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.domain.signing import hmac_sha256_hex

TOLERANCE_MS = 300_000

# Error codes of the {"code", "message", "details"} envelope.
BAD_PARAMETER = 40001
MISSING_CREDENTIALS = 40101
BAD_SIGNATURE = 40102
STALE_TIMESTAMP = 40103
ACCOUNT_FORBIDDEN = 40301
NOT_FOUND = 40401
UNAVAILABLE = 50301


class ApiError(Exception):
    """An accountants' API failure: HTTP ``status`` and the envelope's ``code``."""

    def __init__(self, status: int, code: int, message: str, details: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "details": self.details}


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    key: str
    secret: str = field(repr=False)  # a key printed or logged must not show its secret
    accounts: tuple[str, ...]

    def may_read(self, account_id: str) -> bool:
        return "*" in self.accounts or account_id in self.accounts


def string_to_sign(timestamp: str, method: str, path: str, query: str) -> str:
    """``timestamp + METHOD + path`` and ``"?" + query`` when there is a query."""
    return f"{timestamp}{method.upper()}{path}" + (f"?{query}" if query else "")


def sign(secret: str, timestamp: str, method: str, path: str, query: str) -> str:
    return hmac_sha256_hex(secret.encode(), string_to_sign(timestamp, method, path, query).encode())


def authenticate(
    keys: Sequence[ApiKey],
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    query: str,
    now_ms: int,
) -> ApiKey:
    """Return the key that signed this request; raise ``ApiError`` (401) otherwise."""
    presented_key = headers.get("x-api-key")
    stamp = headers.get("x-api-timestamp")
    signature = headers.get("x-api-signature")
    if not presented_key or not stamp or not signature:
        raise ApiError(
            401,
            MISSING_CREDENTIALS,
            "missing credentials",
            "send X-API-Key, X-API-Timestamp and X-API-Signature",
        )
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 16:
        raise ApiError(
            401, STALE_TIMESTAMP, "bad timestamp", "X-API-Timestamp is milliseconds since the epoch"
        )
    if abs(now_ms - int(stamp)) > TOLERANCE_MS:
        raise ApiError(
            401, STALE_TIMESTAMP, "stale timestamp", "X-API-Timestamp must be within 300 s"
        )
    found: ApiKey | None = None
    for candidate in keys:  # every key compared, in constant time each
        if hmac.compare_digest(candidate.key.encode(), presented_key.encode("utf-8", "replace")):
            found = candidate
    expected = sign(found.secret if found else "\0", stamp, method, path, query)
    valid = hmac.compare_digest(
        expected.encode(), signature.strip().lower().encode("utf-8", "replace")
    )
    if found is None or not valid:
        raise ApiError(401, BAD_SIGNATURE, "invalid signature", "unknown key or signature mismatch")
    return found
