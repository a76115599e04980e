"""Copy-paste sample requests, signed for a configured source (printed by ``hookledger up``)."""

from __future__ import annotations

import shlex
import time

import orjson

from app import kinds
from app.domain.signing import hmac_sha256_hex, sign_standard_webhook
from app.settings import SourceConfig


def sample_curl(name: str, source: SourceConfig, base_url: str, now: float | None = None) -> str:
    """Return a ``curl`` command that posts a correctly signed sample event to ``name``."""
    now = time.time() if now is None else now
    body = orjson.dumps(kinds.get(source.kind).sample_body)
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
