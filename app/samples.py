"""Copy-paste sample requests, signed for a configured source (printed by ``hookledger up``)."""

from __future__ import annotations

import shlex
import time

import orjson

from app.domain.signing import hmac_sha256_hex, sign_standard_webhook
from app.settings import SourceConfig

# Shapes from the seed documents (001 HTX, 003 PingPong, 004 TRON energy).
SAMPLE_BODIES: dict[str, dict[str, object]] = {
    "htx": {
        "order-id": 59378,
        "client-order-id": "sample-1",
        "account-id": 1001,
        "symbol": "btcusdt",
        "type": "buy-limit",
        "amount": "0.0100000000",
        "price": "43000.00",
        "created-at": 1704440609000,
        "filled-amount": "0.0100000000",
        "filled-cash-amount": "430.0000000000",
        "filled-fees": "0.0000200000",
        "source": "api",
        "state": "filled",
    },
    "pingpong": {
        "event_type": "positionSettle",
        "msg_id": "P24010816531715000001",
        "payload": {
            "position_id": "240105SP051608727",
            "buy_currency": "CNH",
            "buy_amount": 3645.95,
            "sell_currency": "MXN",
            "sell_amount": 8667.49,
            "price": 2.37729,
            "base_currency": "CNH",
            "status": "settle",
            "value_date": "2024-01-05",
            "trade_channel": "api",
            "source_type": "spot",
        },
    },
    "trx-energy": {
        "type": "deposit",
        "id": 5,
        "address": "T9z6yrJXuiJpfWhis3Ae9nHK7k65yM5AHP",
        "fromAddress": "TE9eC5EiHx9zD5bWfzyPhtQ94s7QMqv2CQ",
        "amount": 1000000000,
        "txHash": "9e1babdab1fc7c92ee3a254474763a43c75cf37350d1cd22c18a451183ede4be",
        "createdAt": "2025-10-08 16:49:17",
    },
}


def sample_curl(name: str, source: SourceConfig, base_url: str, now: float | None = None) -> str:
    """Return a ``curl`` command that posts a correctly signed sample event to ``name``."""
    now = time.time() if now is None else now
    body = orjson.dumps(SAMPLE_BODIES[source.kind])
    url = f"{base_url}/hooks/{name}"
    headers = ["Content-Type: application/json"]
    secret = source.secret_bytes()[0] if source.secrets else b""
    if source.auth == "hmac-sha256":
        message = body
        if source.timestamp_header:
            stamp = str(int(now))
            message = stamp.encode() + b"." + body
            headers.append(f"{source.timestamp_header}: {stamp}")
        headers.append(f"{source.signature_header}: {hmac_sha256_hex(secret, message)}")
    elif source.auth == "standard-webhooks":
        msg_id = "msg_sample_1"
        stamp_i = int(now)
        headers += [
            f"webhook-id: {msg_id}",
            f"webhook-timestamp: {stamp_i}",
            f"webhook-signature: {sign_standard_webhook(secret, msg_id, stamp_i, body)}",
        ]
    elif source.auth == "token":
        url = f"{url}/{source.secrets[0]}"
    parts = ["curl", "-sS", "-X", "POST", url]
    for header in headers:
        parts += ["-H", header]
    parts += ["--data-raw", body.decode()]
    return " ".join(shlex.quote(p) for p in parts)
