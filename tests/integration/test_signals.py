"""Follow-up signals end to end: rules, the outbox, a fake 4pass server and a Standard
Webhooks receiver on loopback, every status-code path, the kill switch, the SSRF guard."""

from __future__ import annotations

import json
import os
import signal as sig
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlmodel import Session, col

from app.settings import ConfigError, load_settings, parse_config
from app.store.models import Signal, SignalAttempt
from tests.counterparts import FourPass, Receiver, Served
from tests.processes import spawn, stop, wait_until
from tests.support import (
    FOURPASS_SECRET,
    FOURPASS_TOKEN,
    WEBHOOK_TARGET_SECRET,
    fixture_json,
    hookledger,
    htx_update,
    post_htx,
    post_pp,
    post_trx,
    run_jobs,
)
from workers.sweeper import sweep_once

WH_SECRET = WEBHOOK_TARGET_SECRET
FILLED = htx_update(42, "filled", "0.03", "1260.7", "0.00006")


@pytest.fixture
def fourpass() -> Iterator[FourPass]:
    fake = FourPass()
    with Served(fake.app()) as served:
        fake.url = served.url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    fake = Receiver(WH_SECRET)
    with Served(fake.app()) as served:
        fake.url = served.url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def settings(env, config_path, fourpass, receiver):
    config_path.write_text(
        config_path.read_text()
        + f"""
[targets.tw-futures]
kind = "fourpass"
url = "{fourpass.url}/webhook/{FOURPASS_TOKEN}/order"
secret = "{FOURPASS_SECRET}"
simulation = false
allow_private = true
connect_timeout_s = 1
read_timeout_s = 1
retry_delays_s = [0, 0]

[targets.treasury]
kind = "webhook"
url = "{receiver.url}/hooks"
secret = "{WH_SECRET}"
allow_private = true
retry_delays_s = [0, 0]

[targets.internal]
kind = "fourpass"
url = "http://127.0.0.1:9/webhook/x/order"
retry_delays_s = [0]

[[rules]]
name = "hedge-btc-fills"
target = "tw-futures"
when = {{ source_kind = "htx", event = "order.filled", symbol = "btcusdt" }}
signal = {{ action = "short_entry", symbol = "MXFR1", quantity = 1 }}

[[rules]]
name = "big-settlements"
target = "treasury"
when = {{ event = "contract.settled", min_amount = "1000" }}

[[rules]]
name = "deposits-inward"
target = "internal"
when = {{ event = "deposit.received" }}
signal = {{ action = "long_entry", symbol = "TXFR1", quantity = 1 }}
"""
    )
    return load_settings(env)


def signals(runtime) -> list[Signal]:
    with Session(runtime.engine) as session:
        rows = list(session.execute(select(Signal).order_by(col(Signal.id))).scalars())
        for row in rows:
            session.expunge(row)
        return rows


def attempts(runtime, signal_id: int) -> list[tuple[int | None, str]]:
    with Session(runtime.engine) as session:
        rows = session.execute(
            select(SignalAttempt)
            .where(col(SignalAttempt.signal_id) == signal_id)
            .order_by(col(SignalAttempt.id))
        ).scalars()
        return [(a.http_status, a.outcome) for a in rows]


def drain(runtime, rounds: int = 4) -> None:
    for _ in range(rounds):
        run_jobs(runtime)
        sweep_once(runtime, stale_after_s=0)
    run_jobs(runtime)


def test_a_filled_hedge_order_sends_one_4pass_signal(client, runtime, fourpass):
    post_htx(client, FILLED)
    post_htx(client, htx_update(43, "filled", "1", "1", "0", symbol="ethusdt"))  # no rule matches
    run_jobs(runtime)  # applies both events, then delivers the one signal

    [order] = fourpass.orders
    assert (order["action"], order["symbol"], order["quantity"]) == ("short_entry", "MXFR1", 1)
    assert order["secret"] == FOURPASS_SECRET
    assert order["timestamp"].endswith("Z")
    [s] = signals(runtime)
    assert (s.rule, s.status) == ("hedge-btc-fills", "delivered")
    assert attempts(runtime, s.id) == [(200, "delivered")]


def test_redelivery_and_replay_never_fire_a_rule_twice(client, runtime, env, fourpass):
    first = post_htx(client, FILLED).json()["event_id"]
    run_jobs(runtime)
    post_htx(client, FILLED)
    out = hookledger(env, "dlq", "replay", first)
    assert "already_applied" in out.stdout
    drain(runtime)
    assert len(fourpass.orders) == 1
    assert len(signals(runtime)) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 422, 429, 451])
def test_refusals_are_dead_at_once_with_the_reason(client, runtime, fourpass, status):
    if status == 429:
        fourpass.daily_limit = 0  # the fake's own daily limit, not a forced answer
    else:
        fourpass.forced.append(status)
    post_htx(client, FILLED)
    drain(runtime)
    [s] = signals(runtime)
    assert s.status == "dead"
    assert f"HTTP {status}" in (s.last_error or "")
    assert attempts(runtime, s.id) == [(status, "dead")]


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_then_delivered(client, runtime, fourpass, status):
    fourpass.forced.append(status)
    post_htx(client, FILLED)
    drain(runtime)
    [s] = signals(runtime)
    assert s.status == "delivered"
    assert attempts(runtime, s.id) == [(status, "retry"), (200, "delivered")]
    assert len(fourpass.orders) == 1


def test_errors_past_the_last_retry_make_a_dead_signal_ops_can_replay(
    client, runtime, env, fourpass
):
    fourpass.forced.extend([503, 503, 503])
    post_htx(client, FILLED)
    drain(runtime)
    [s] = signals(runtime)
    assert (s.status, s.attempts) == ("dead", 3)
    listed = json.loads(hookledger(env, "dlq", "list", "--json").stdout)
    assert [r["signal_id"] for r in listed if r["kind"] == "signal"] == [f"sig_{s.id}"]
    out = hookledger(env, "dlq", "replay", f"sig_{s.id}", "--reason", "4pass is back")
    assert "requeued" in out.stdout
    drain(runtime)
    assert signals(runtime)[0].status == "delivered"
    assert len(fourpass.orders) == 1


def test_a_401_is_retried_at_once_with_a_fresh_timestamp(client, runtime, fourpass):
    fourpass.forced.append(401)
    post_htx(client, FILLED)
    run_jobs(runtime)
    time.sleep(1.2)  # the retry waits for the next whole second
    drain(runtime)
    [s] = signals(runtime)
    assert attempts(runtime, s.id) == [(401, "retry_fresh"), (200, "delivered")]
    first, second = (json.loads(b) for b in fourpass.requests)
    assert first["timestamp"] != second["timestamp"]


def test_a_repeated_payload_gets_409_which_counts_as_delivered(client, runtime, fourpass):
    fourpass.delay_s = 2.5  # longer than the target's 1 s read timeout: no answer in time
    post_htx(client, FILLED)
    run_jobs(runtime)
    [s] = signals(runtime)
    assert (s.status, s.outcome_unknown) == ("retrying", True)
    fourpass.delay_s = 0
    drain(runtime)
    [s] = signals(runtime)
    assert s.status == "delivered"
    assert attempts(runtime, s.id) == [(None, "unknown"), (409, "delivered")]
    assert fourpass.requests[0] == fourpass.requests[1]  # the very same body, resent
    assert len(fourpass.orders) == 1  # one order placed


def test_killing_the_worker_mid_delivery_still_places_one_order(client, runtime, env, fourpass):
    fourpass.delay_s = 3  # 4pass takes the order, then answers late
    post_htx(client, FILLED)
    worker = spawn(["worker"], env)
    # Killed while waiting for 4pass's answer: the moment the order is in, not some polling
    # interval later (the target's 1 s read timeout would have the worker give up first).
    fourpass.on_order = lambda: os.kill(worker.pid, sig.SIGKILL)
    try:
        wait_until(lambda: len(fourpass.orders) == 1, 30, "the order to reach 4pass")
        wait_until(lambda: worker.poll() is not None, 10, "the worker to die")
        assert signals(runtime)[0].status == "sending"
    finally:
        fourpass.on_order = None
        stop(worker, sig.SIGKILL)
    fourpass.delay_s = 0
    time.sleep(7.2)  # past the send's timeouts (1 s + 1 s) plus margin: the send was abandoned
    drain(runtime)
    [s] = signals(runtime)
    assert s.status == "delivered"
    assert attempts(runtime, s.id) == [(409, "delivered")]  # the dead worker recorded nothing
    assert fourpass.requests[0] == fourpass.requests[1]  # the same payload, resent
    assert len(fourpass.orders) == 1  # so 4pass answered 409: one order placed, not two


def test_webhook_target_is_signed_and_keeps_its_id_on_retry(client, runtime, receiver):
    receiver.forced.append(500)
    post_pp(client, fixture_json("pingpong_position_settle.json"))  # sell_amount 8667.49 >= 1000
    small = fixture_json("pingpong_position_settle.json")
    small["msg_id"], small["payload"]["position_id"], small["payload"]["sell_amount"] = (
        "P-small",
        "P2",
        10,
    )
    post_pp(client, small)  # below min_amount: no signal
    drain(runtime)
    assert receiver.rejected == 0
    ids = [v["id"] for v in receiver.verified]
    assert len(ids) == 2 and ids[0] == ids[1]  # the retry carries the same webhook-id
    payload = receiver.verified[-1]["payload"]
    assert payload["type"] == "contract.settled"
    assert payload["data"]["payload"]["payload"]["sell_amount"] == 8667.49
    [s] = signals(runtime)
    assert s.status == "delivered"


def test_a_private_address_is_refused_without_sending(client, runtime):
    post_trx(client, fixture_json("trx_deposit.json"))
    drain(runtime)
    [s] = signals(runtime)
    assert s.status == "dead"
    assert "non-public address (127.0.0.1)" in (s.last_error or "")
    assert attempts(runtime, s.id) == [(None, "dead")]


def test_pause_holds_signals_and_resume_sends_them(client, runtime, env, fourpass):
    def cli(*args: str) -> str:
        return hookledger(env, *args).stdout

    assert "paused" in cli("signals", "pause", "tw-futures", "--reason", "market halt")
    post_htx(client, FILLED)
    drain(runtime)
    assert fourpass.orders == []
    assert signals(runtime)[0].status == "pending"
    assert "PAUSED" in cli("signals", "list")
    assert "1 signal(s) queued" in cli("signals", "resume", "tw-futures")
    run_jobs(runtime)
    assert len(fourpass.orders) == 1


def test_rule_and_target_mistakes_stop_start_up():
    base = (
        '[sources.s]\nkind = "htx"\naccount_id = "1"\nauth = "none"\nallow_ips = ["10.0.0.0/8"]\n'
    )
    live = (
        base
        + '[targets.t]\nkind = "fourpass"\nurl = "https://x.example/webhook/t/order"\nsimulation = false\n'
    )
    with pytest.raises(ConfigError, match=r"live mode .* needs a secret"):
        parse_config(live, {})
    capped = base + (
        '[targets.t]\nkind = "fourpass"\nurl = "https://x.example/o"\n'
        '[[rules]]\nname = "r1"\ntarget = "t"\nwhen = { event = "order.filled" }\n'
        'signal = { action = "long_entry", symbol = "TXFR1", quantity = 50 }\n'
    )
    with pytest.raises(ConfigError, match=r"rules\.0.*quantity 50 is over max_quantity 10"):
        parse_config(capped, {})
    unknown = capped.replace("quantity = 50", "quantity = 1").replace(
        '"order.filled"', '"order.exploded"'
    )
    with pytest.raises(ConfigError, match=r"unknown event 'order\.exploded'"):
        parse_config(unknown, {})


def test_a_signal_being_sent_cannot_be_replayed_or_discarded(client, runtime, env, fourpass):
    fourpass.forced.append(503)
    post_htx(client, FILLED)
    run_jobs(runtime)
    [s] = signals(runtime)
    with Session(runtime.engine) as session, session.begin():
        row = session.get(Signal, s.id)
        row.status = "sending"  # as a worker holds it while 4pass has not answered yet
    for verb in (
        ["dlq", "replay", f"sig_{s.id}"],
        ["dlq", "discard", f"sig_{s.id}", "--reason", "x"],
    ):
        result = hookledger(env, *verb)
        assert result.returncode == 1
        assert "being sent right now" in result.stdout + result.stderr
    assert len(fourpass.orders) == 0


def test_a_401_to_a_resend_never_leads_to_a_fresh_body(client, runtime, env, fourpass):
    # 4pass checks timestamps before duplicates: a resend of a body it already took can get 401.
    fourpass.delay_s = 2.5  # the first send lands, but its answer comes after the 1 s timeout
    post_htx(client, FILLED)
    run_jobs(runtime)
    fourpass.delay_s = 0
    fourpass.forced.append(401)  # the resend is refused
    drain(runtime)
    [s] = signals(runtime)
    assert s.status == "dead"
    assert (s.last_error or "").startswith("outcome unknown")
    assert attempts(runtime, s.id) == [(None, "unknown"), (401, "retry_fresh")]
    assert len(fourpass.orders) == 1

    bulk = hookledger(env, "dlq", "replay", "--all")
    assert "replayed 0 of 0" in bulk.stdout  # never in a bulk replay: a person must check first
    drain(runtime)
    assert len(fourpass.orders) == 1
    named = hookledger(
        env, "dlq", "replay", f"sig_{s.id}", "--reason", "checked: 4pass has no order"
    )
    assert "requeued" in named.stdout
    drain(runtime)
    assert signals(runtime)[0].status == "delivered"
    assert len(fourpass.orders) == 2  # what the person asked for after checking
