"""What ops see never shows a credential: not the request signatures callers sent, not a URL
token, not the ``secret`` field sent to 4pass, not a Standard Webhooks signature sent to a
webhook target. Checked on ``events show`` (text and JSON), ``events list``, ``dlq list``,
``signals list``/``show``, the admin API's listing and detail of every event and signal, and
the accountants' API, after real signed callbacks and real deliveries to local counterparts.

The session-wide canary scan (tests/canary.py) watches the logs of all this; here the same
detector reads the operator-facing output, and the stored headers must show ``[redacted]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.testclient import TestClient

from app.domain.signing import hmac_sha256_hex
from app.settings import Settings, load_settings
from app.store.models import InboundEvent, Signal
from tests.canary import find_leaks, remember_signature
from tests.counterparts import FourPass, Receiver, Served
from tests.processes import start_web, stop
from tests.support import (
    ADMIN_TOKEN,
    FOURPASS_SECRET,
    FOURPASS_TOKEN,
    HTX_SECRET,
    TRX_TOKEN,
    WEBHOOK_TARGET_SECRET,
    api_get,
    body_of,
    fixture_bytes,
    hookledger,
    htx_headers,
    htx_update,
    post_trx,
    pp_headers,
    run_jobs,
)
from workers.sweeper import sweep_once

# redaction does not depend on the database
pytestmark = pytest.mark.sqlite_only

REDACTED = "[redacted]"


@pytest.fixture
def fourpass() -> Iterator[FourPass]:
    fake = FourPass()
    with Served(fake.app()) as served:
        fake.url = served.url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    fake = Receiver(WEBHOOK_TARGET_SECRET)
    with Served(fake.app()) as served:
        fake.url = served.url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def settings(env, config_path, fourpass, receiver) -> Settings:
    config_path.write_text(
        config_path.read_text()
        + f"""
[targets.tw-futures]
kind = "fourpass"
url = "{fourpass.url}/webhook/{FOURPASS_TOKEN}/order"
secret = "{FOURPASS_SECRET}"
simulation = false
allow_private = true
retry_delays_s = [0]

[targets.treasury]
kind = "webhook"
url = "{receiver.url}/hooks"
secret = "{WEBHOOK_TARGET_SECRET}"
allow_private = true
retry_delays_s = [0]

[[rules]]
name = "hedge-fills"
target = "tw-futures"
when = {{ source_kind = "htx", event = "order.filled" }}
signal = {{ action = "short_entry", symbol = "MXFR1", quantity = 1 }}

[[rules]]
name = "settlements"
target = "treasury"
when = {{ event = "contract.settled" }}
"""
    )
    return load_settings(env)


def _receive_everything(client: TestClient) -> list[str]:
    """One accepted callback per auth mode; return the signatures sent."""
    sent: list[str] = []
    body = body_of(htx_update(1, "filled", "0.03", "1260.7", "0.00006"))
    headers = htx_headers(body)
    sent.append(headers["x-signature"])
    assert client.post("/hooks/htx-main", content=body, headers=headers).status_code == 200

    body = body_of(htx_update(2, "filled", "1", "100", "0"))
    stamp = str(int(time.time()))
    signature = "sha256=" + hmac_sha256_hex(HTX_SECRET.encode(), f"{stamp}.".encode() + body)
    remember_signature(signature)
    sent.append(signature)
    timed = {"content-type": "application/json", "x-timestamp": stamp, "x-signature": signature}
    assert client.post("/hooks/htx-ts", content=body, headers=timed).status_code == 200

    body = fixture_bytes("pingpong_position_settle.json")
    headers = pp_headers(body)
    sent.append(headers["webhook-signature"])
    assert client.post("/hooks/pp", content=body, headers=headers).status_code == 200

    body = fixture_bytes("trx_deposit.json")
    response = client.post(
        f"/hooks/trx/{TRX_TOKEN}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    return sent


def test_ops_output_shows_no_secret_and_no_signature(
    admin_client, runtime, env, fourpass, receiver
):
    fourpass.forced.append(400)  # the first 4pass signal is refused: a dead one with an error
    sent = _receive_everything(admin_client)
    for _ in range(3):
        run_jobs(runtime)  # apply the events, then deliver the signals they wrote
        sweep_once(runtime, stale_after_s=0)

    # The secrets really were in play: 4pass got its secret, the receiver a signed webhook.
    assert [o["secret"] for o in fourpass.orders] == [FOURPASS_SECRET]
    assert len(receiver.verified) == 1 and receiver.rejected == 0
    with Session(runtime.engine) as session:
        events = list(session.execute(select(InboundEvent)).scalars())
        signals = list(session.execute(select(Signal).order_by(col(Signal.id))).scalars())
        event_ids = [e.id for e in events]
        signal_ids = [f"sig_{s.id}" for s in signals]
        statuses = sorted(s.status for s in signals)
    assert len(event_ids) == 4
    assert statuses == ["dead", "delivered", "delivered"]

    outputs: dict[str, str] = {}
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    outputs["GET /admin/events"] = admin_client.get("/admin/events", headers=auth).text
    for some_id in event_ids + signal_ids:
        response = admin_client.get(f"/admin/events/{some_id}", headers=auth)
        assert response.status_code == 200, response.text
        outputs[f"GET /admin/events/{some_id}"] = response.text
    outputs["ledger"] = api_get(admin_client, "/account/v1/transactions", key="ak_auditor").text
    for args in (
        ["events", "list", "--json"],
        ["dlq", "list", "--json"],
        ["signals", "list"],
        *(["signals", "show", s] for s in signal_ids),
        *(["events", "show", e] for e in event_ids),
        *(["events", "show", e, "--json"] for e in event_ids),
    ):
        result = hookledger(env, *args)
        assert result.returncode == 0, result.stderr
        outputs[" ".join(args)] = result.stdout + result.stderr

    leaks = [
        leak
        for where, text in outputs.items()
        for leak in find_leaks(text.splitlines(), where=where)
    ]
    assert not leaks, "\n".join(str(leak) for leak in leaks)
    everything = "\n".join(outputs.values())
    for signature in sent:
        assert signature.removeprefix("sha256=").removeprefix("v1,") not in everything
    for secret in (FOURPASS_SECRET, FOURPASS_TOKEN, TRX_TOKEN, ADMIN_TOKEN):
        assert secret not in everything

    # The stored headers: every credential-bearing one redacted, the rest kept.
    shown = {e: json.loads(outputs[f"GET /admin/events/{e}"])["headers"] for e in event_ids}
    by_source = {
        json.loads(outputs[f"GET /admin/events/{e}"])["source"]: h for e, h in shown.items()
    }
    assert by_source["htx-main"]["x-signature"] == REDACTED
    assert by_source["htx-ts"]["x-signature"] == REDACTED
    assert by_source["htx-ts"]["x-timestamp"].isdigit()
    assert by_source["pp"]["webhook-signature"] == REDACTED
    assert by_source["pp"]["webhook-id"] == "msg_1"
    assert "content-type" in by_source["trx"]


def test_an_api_key_printed_or_logged_does_not_show_its_secret():
    from app.domain.apikeys import ApiKey

    key = ApiKey(name="finance", key="ak_finance", secret=HTX_SECRET, accounts=("1001",))
    assert HTX_SECRET not in repr(key)
    assert HTX_SECRET not in str(key)
    assert "ak_finance" in repr(key)


def test_an_outbound_request_does_not_log_its_url(canary_watch, fourpass):
    """httpx logs every request's URL at INFO; a 4pass URL carries the account's token."""
    from app.signals import net

    log = canary_watch / "in-process.log"
    before = log.stat().st_size
    reply = net.post(
        f"{fourpass.url}/webhook/{FOURPASS_TOKEN}/order?simulation=true",
        b'{"action": "long_entry", "symbol": "TXFR1", "quantity": 1}',
        {"content-type": "application/json"},
        connect_timeout_s=2,
        read_timeout_s=2,
        allow_private=True,
    )
    assert reply.status == 200
    with log.open("rb") as captured:
        captured.seek(before)
        assert FOURPASS_TOKEN.encode() not in captured.read()


def test_the_web_edge_does_not_log_a_token_path(env, database_url):
    """A token source's path carries its credential (/hooks/trx/{token}); ``hookledger web``
    logs the receipt (hook.received), never uvicorn's access line naming the path."""
    proc, base = start_web(env, workers=2)  # each worker process configures its own logging
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            answer = post_trx(client, fixture_bytes("trx_order.json"))
            assert answer.status_code == 200, answer.text
            assert post_trx(client, b"{").status_code == 400
    finally:
        stop(proc)
    assert proc.stderr is not None
    logged = proc.stderr.read()
    assert b"hook.received" in logged
    assert TRX_TOKEN.encode() not in logged
    assert b"/hooks/trx" not in logged


def test_settings_never_print_a_secret(settings: Settings) -> None:
    """A settings object in a log line or a traceback's locals shows no secret."""

    shown = repr(settings) + str(settings)
    assert not find_leaks([shown], where="repr(settings)")
