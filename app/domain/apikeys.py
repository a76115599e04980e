"""The accountants' API signature: ``X-API-Key``, ``X-API-Timestamp`` (ms), ``X-API-Signature``.

The signature is the lowercase hex HMAC-SHA256, with the key's secret, of
``timestamp + METHOD + path`` followed by ``"?" + query`` when the URL has a query, exactly as
sent. Pure: ``now_ms`` is passed in. Failures raise ``ApiError`` with the envelope's code.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.domain.signing import hmac_sha256_hex
from app.errors import HookledgerError

TOLERANCE_MS = 300_000
# Read as milliseconds, these are 1970 or after 5138; read as seconds (from 2001), microseconds
# or nanoseconds (from 1973), they are plausible: a client sending another unit is told so,
# not only that its timestamp is stale. Each row: unit, low, high, and value * a // b in ms.
_WRONG_UNITS = (
    ("seconds", 10**9, 10**11, 1000, 1),
    ("microseconds", 10**14, 10**17, 1, 1000),
    ("nanoseconds", 10**17, 10**20, 1, 1_000_000),
)

# Error codes of the {"code", "message", "details"} envelope.
BAD_PARAMETER = 40001
MISSING_CREDENTIALS = 40101
BAD_SIGNATURE = 40102
STALE_TIMESTAMP = 40103
ACCOUNT_FORBIDDEN = 40301
NOT_FOUND = 40401
UNAVAILABLE = 50301


class ApiError(HookledgerError):
    """An accountants' API failure: the envelope's ``code`` (``40102``: its first three digits
    are the HTTP status the edge answers with), a message and details."""

    def __init__(self, code: int, message: str, details: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    @property
    def http_status(self) -> int:
        """The status the envelope's code stands for (``40102`` is 401)."""
        return self.code // 100

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


def _utc(ms: int) -> str:
    """``2026-11-20T10:00:00Z`` for milliseconds since the epoch (or a phrase past year 9999)."""
    try:
        when = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return "beyond year 9999"
    return when.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _check_timestamp(stamp: str, now_ms: int) -> None:
    """Raise ``ApiError`` (401) unless ``stamp`` is milliseconds within the tolerance of
    ``now_ms``; the details name what is wrong (a value in seconds is named as such)."""
    shown = stamp[:24] + ("..." if len(stamp) > 24 else "")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 19:
        raise ApiError(
            STALE_TIMESTAMP,
            "bad timestamp",
            f"X-API-Timestamp {shown!r} is not a number of milliseconds since the epoch "
            f"(e.g. {now_ms})",
        )
    value = int(stamp)
    for unit, low, high, times, divided_by in _WRONG_UNITS:
        if low <= value < high:
            ms = value * times // divided_by
            raise ApiError(
                STALE_TIMESTAMP,
                f"timestamp in {unit}",
                f"X-API-Timestamp {stamp} looks like {unit} ({_utc(ms)}); send milliseconds "
                f"since the epoch ({ms})",
            )
    if abs(now_ms - value) > TOLERANCE_MS:
        raise ApiError(
            STALE_TIMESTAMP,
            "stale timestamp",
            f"X-API-Timestamp {stamp} is {_utc(value)}, {abs(now_ms - value) // 1000} s from "
            f"the server's clock ({_utc(now_ms)}); it must be within {TOLERANCE_MS // 1000} s",
        )


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
            MISSING_CREDENTIALS,
            "missing credentials",
            "send X-API-Key, X-API-Timestamp and X-API-Signature",
        )
    _check_timestamp(stamp, now_ms)
    found: ApiKey | None = None
    for candidate in keys:  # every key compared, in constant time each
        if hmac.compare_digest(candidate.key.encode(), presented_key.encode("utf-8", "replace")):
            found = candidate
    expected = sign(found.secret if found else "\0", stamp, method, path, query)
    valid = hmac.compare_digest(
        expected.encode(), signature.strip().lower().encode("utf-8", "replace")
    )
    if found is None or not valid:
        raise ApiError(BAD_SIGNATURE, "invalid signature", "unknown key or signature mismatch")
    return found
