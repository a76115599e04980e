"""What a target is sent and what its answer means. Pure: ``now`` is passed in.

fourpass (seed 000): ``POST {url}?simulation=true|false`` with ``{"action", "symbol",
"quantity", "timestamp", "secret"}``; the timestamp is ISO 8601 UTC at send time and the
counterpart refuses a repeated payload within 5 minutes with 409.
webhook: Standard Webhooks, ``{"type", "timestamp", "data"}`` signed with the target's secret,
``webhook-id`` = ``sig_<signal id>`` on every retry.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from app.domain.signing import decode_webhook_secret, sign_standard_webhook
from app.settings import TargetConfig


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # not acted on; the next attempt may take a fresh timestamp
    RETRY_FRESH = "retry_fresh"  # 401: the timestamp was refused; retry at once with a new one
    UNKNOWN = "unknown"  # no answer: it may have been acted on; resend only the same body
    DEAD = "dead"


_FOURPASS_DEAD = frozenset({400, 403, 404, 422, 429, 451})


def iso(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def build(
    target: TargetConfig, payload: dict[str, Any], *, signal_id: int, now: datetime
) -> tuple[str, bytes, dict[str, str]]:
    """Return (url, body, headers) of one request to ``target``."""
    headers = {"content-type": "application/json"}
    if target.kind == "fourpass":
        parts = urlsplit(target.url)
        flag = f"simulation={'true' if target.simulation else 'false'}"
        query = f"{parts.query}&{flag}" if parts.query else flag
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        message: dict[str, Any] = {
            "action": payload["action"],
            "symbol": payload["symbol"],
            "quantity": payload["quantity"],
            "timestamp": iso(now),
        }
        if target.secret:
            message["secret"] = target.secret
        return url, orjson.dumps(message), headers
    body = orjson.dumps({"type": payload["type"], "timestamp": iso(now), "data": payload["data"]})
    msg_id = f"sig_{signal_id}"
    stamp = int(now.timestamp())
    assert target.secret is not None  # settings require it for webhook targets
    key = decode_webhook_secret(target.secret)
    headers |= {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard_webhook(key, msg_id, stamp, body),
    }
    return target.url, body, headers


def judge(target: TargetConfig, status: int) -> Verdict:
    """What an HTTP answer means for a signal."""
    if target.kind == "fourpass":
        if status in {200, 409}:  # 409: this very payload was already taken
            return Verdict.DELIVERED
        if status == 401:
            return Verdict.RETRY_FRESH
        if status in _FOURPASS_DEAD:
            return Verdict.DEAD
        if 200 <= status < 300:
            return Verdict.DELIVERED
        return Verdict.RETRY if status >= 500 else Verdict.DEAD
    if 200 <= status < 300 or status == 409:
        return Verdict.DELIVERED
    if status in (408, 425, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.DEAD
