"""Helpers shared by tests: secrets, signing, posting and reading back the ledger."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, func, select
from sqlmodel import Session

import app.kinds  # noqa: F401 - every source kind's tables, on the metadata
from app.domain.signing import hmac_sha256_hex, sign_standard_webhook
from app.store import schema
from app.store.db import make_engine
from app.store.models import InboundEvent
from tests.canary import canary, canary_whsec, record_output, remember_signature

FIXTURES = Path(__file__).parent / "fixtures"

# Every secret is a canary (tests/canary.py): the session fails if one ever shows in a log.
HTX_SECRET = canary("htx-current")
HTX_SECRET_OLD = canary("htx-previous")
PP_SECRET = canary_whsec("pingpong-current")
PP_SECRET_OLD = canary_whsec("pingpong-previous")
TRX_TOKEN = canary("trx-current")
TRX_TOKEN_OLD = canary("trx-previous")
FINANCE_SECRET = canary("finance-api")
TREASURY_SECRET = canary("treasury-api")
AUDITOR_SECRET = canary("auditor-api")
ADMIN_TOKEN = canary("admin-token")
FOURPASS_TOKEN = canary("fourpass-url-token")  # seed 000's /webhook/{token}/order
FOURPASS_SECRET = canary("fourpass-secret")
WEBHOOK_TARGET_SECRET = canary_whsec("webhook-target")
API_SECRETS = {
    "ak_finance": FINANCE_SECRET,
    "ak_treasury": TREASURY_SECRET,
    "ak_auditor": AUDITOR_SECRET,
}


def api_get(
    client: Any,
    path_and_query: str,
    *,
    key: str = "ak_finance",
    secret: str | None = None,
    stamp_ms: int | None = None,
    sign_as: str | None = None,
) -> Any:
    """GET the accountants' API, signed as a real client would (``sign_as`` signs another URL)."""
    from app.domain.apikeys import sign

    stamp = str(stamp_ms if stamp_ms is not None else int(time.time() * 1000))
    path, _, query = (sign_as or path_and_query).partition("?")
    signature = sign(secret or API_SECRETS[key], stamp, "GET", path, query)
    remember_signature(signature)
    headers = {"X-API-Key": key, "X-API-Timestamp": stamp, "X-API-Signature": signature}
    return client.get(path_and_query, headers=headers)


def upgrade_schema(url: str) -> str:
    """Bring the database at ``url`` to the code's schema (``hookledger db upgrade``);
    returns ``url``."""
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return url


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes(name))
    return data


def body_of(payload: dict[str, Any] | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


def htx_headers(body: bytes, secret: str = HTX_SECRET, **extra: str) -> dict[str, str]:
    signature = hmac_sha256_hex(secret.encode(), body)
    remember_signature(signature)
    return {"content-type": "application/json", "x-signature": signature, **extra}


def pp_headers(body: bytes, secret: str = PP_SECRET, *, msg_id: str = "msg_1") -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    stamp = int(time.time())
    signature = sign_standard_webhook(key, msg_id, stamp, body)
    remember_signature(signature)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }


def post_htx(
    client: Any,
    payload: dict[str, Any] | bytes,
    *,
    source: str = "htx-main",
    secret: str = HTX_SECRET,
) -> Any:
    body = body_of(payload)
    return client.post(f"/hooks/{source}", content=body, headers=htx_headers(body, secret))


def post_pp(client: Any, payload: dict[str, Any] | bytes, secret: str = PP_SECRET) -> Any:
    body = body_of(payload)
    return client.post("/hooks/pp", content=body, headers=pp_headers(body, secret))


def post_trx(client: Any, payload: dict[str, Any] | bytes, token: str = TRX_TOKEN) -> Any:
    body = body_of(payload)
    return client.post(
        f"/hooks/trx/{token}", content=body, headers={"content-type": "application/json"}
    )


def count(engine: Engine, model: Any, *where: Any) -> int:
    with Session(engine) as session:
        return int(
            session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
        )


def event(engine: Engine, event_id: str) -> InboundEvent:
    with Session(engine) as session:
        row = session.get(InboundEvent, event_id)
        assert row is not None, f"no stored event {event_id}"
        session.expunge(row)
        return row


def htx_update(
    order_id: int | str, state: str, filled: str, cash: str, fees: str, **extra: Any
) -> dict[str, Any]:
    """An HTX order callback for a buy of btcusdt."""
    return {
        "order-id": order_id,
        "account-id": 1001,
        "symbol": "btcusdt",
        "type": "buy-limit",
        "amount": "0.03",
        "price": "42000",
        "created-at": 1704440609000,
        "filled-amount": filled,
        "filled-cash-amount": cash,
        "filled-fees": fees,
        "source": "api",
        "state": state,
        **extra,
    }


def hookledger(
    env: dict[str, str], *args: str, actor: str = "ops-test"
) -> subprocess.CompletedProcess[str]:
    """Run the ``hookledger`` command line as a separate process, as an operator would.

    Its output is kept for the session's canary scan: stderr (logs) always, stdout too except
    for the verbs whose whole purpose is to print a signed sample request."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**env, "HOOKLEDGER_ACTOR": actor},
        capture_output=True,
        text=True,
        timeout=120,
    )
    verb = args[0] if args else ""
    stdout = None if verb in _PRINTS_SIGNED_SAMPLES else result.stdout
    record_output(f"cli-{verb}", result.stderr, stdout)
    return result


_PRINTS_SIGNED_SAMPLES = frozenset({"sample", "up"})


TEST_CONFIG = f"""
[server]
max_body_bytes = 65536
trusted_proxies = ["127.0.0.1/32"]

[processing]
queue = "hl-test"
enqueue_linger_ms = 0               # each receipt's job is queued before its answer
retry_delays_s = [0, 0]
stale_after_s = 1
sweep_interval_s = 0.2
job_timeout_s = 30

[sources.htx-main]
kind = "htx"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["${{TEST_HTX_SECRET}}", "{HTX_SECRET_OLD}"]

[sources.htx-ts]
kind = "htx"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["{HTX_SECRET}"]
signature_header = "X-Signature"
timestamp_header = "X-Timestamp"
tolerance_s = 300

[sources.pp]
kind = "pingpong"
account_id = "2002"
auth = "standard-webhooks"
secrets = ["{PP_SECRET}", "{PP_SECRET_OLD}"]

[sources.trx]
kind = "trx-energy"
account_id = "3003"
auth = "token"
secrets = ["{TRX_TOKEN}", "{TRX_TOKEN_OLD}"]

[sources.open]
kind = "htx"
account_id = "1001"
auth = "none"
allow_ips = ["127.0.0.1/32"]

[api_keys.finance]
key = "ak_finance"
secret = "${{TEST_FINANCE_SECRET}}"
accounts = ["1001"]

[api_keys.treasury]
key = "ak_treasury"
secret = "{TREASURY_SECRET}"
accounts = ["2002", "3003"]

[api_keys.auditor]
key = "ak_auditor"
secret = "{AUDITOR_SECRET}"
accounts = ["*"]

[sources.restricted]
kind = "htx"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["{HTX_SECRET}"]
allow_ips = ["203.0.113.0/24"]
"""


def run_jobs(runtime: Any) -> None:
    """Run every queued job with a burst worker in this process (the production worker class:
    RQ's ``SimpleWorker`` with a prompt stop)."""
    from rq.serializers import JSONSerializer

    from workers.runtime import InProcessWorker

    InProcessWorker(
        [runtime.events.queue], connection=runtime.redis, serializer=JSONSerializer
    ).work(burst=True, logging_level="WARNING")
