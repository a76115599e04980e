"""The counterpart simulators, proved against hookledger as it is and against an HTX signer
written here independently.

- Every callback sent (duplicated and out of order, none dropped or mangled) is accepted by
  hookledger's ``htx`` and ``trx-energy`` sources, and the ledger then equals the simulators'
  truth through ``tests.simulators.ledger``: on SQLite and on PostgreSQL.
- Dropped callbacks are never posted; mangled ones are refused (422) and retried as the
  counterpart retries (HTX four times, the TRON platform three).
- The query APIs answer from the truth, check HTX's signature version 2 and the TRON
  ``x-api-key``, and give the counterpart's errors, rate limits and injected failures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app import kinds
from app.domain.money import canonical
from app.store.db import make_engine
from tests.counterparts import Served
from tests.processes import wait_until
from tests.simulators import htx as htx_sim
from tests.simulators import trx_energy as trx_sim
from tests.simulators.checks import (
    api_balances,
    event_counts,
    hookledger_stack,
    ledger_balances,
    settled,
)
from tests.simulators.ledger import combined, htx_balances, only, trx_balances
from tests.simulators.process import (
    ACCESS_KEY,
    API_KEY,
    HTX_ACCOUNT,
    HTX_SOURCE,
    SECRET_KEY,
    TRX_ACCOUNT,
    TRX_SOURCE,
    hookledger_config,
    simulator,
    simulator_env,
)
from tests.support import hookledger

pytestmark = pytest.mark.slow

HTX_ORDERS = 300
TRX_RENTALS = 150
TRX_DEPOSITS = 250


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "hookledger.toml"
    path.write_text(hookledger_config())
    return path


def _htx_args(base: str, **extra: Any) -> list[str]:
    return [
        "--hook-url", base, "--source", HTX_SOURCE, "--seed", "11",
        "--count", str(HTX_ORDERS), "--rate", "400", "--retry-scale", "0.2",
        *(f"--{k.replace('_', '-')}={v}" for k, v in extra.items()),
    ]  # fmt: skip


def _trx_args(base: str, **extra: Any) -> list[str]:
    return [
        "--hook-url", base, "--source", TRX_SOURCE, "--seed", "12",
        "--count", str(TRX_RENTALS), "--deposits", str(TRX_DEPOSITS),
        "--rate", "400", "--retry-scale", "0.2",
        *(f"--{k.replace('_', '-')}={v}" for k, v in extra.items()),
    ]  # fmt: skip


def test_every_callback_accepted_and_the_ledger_equals_the_truth(env, database_url):
    engine = make_engine(database_url)
    sim_env = simulator_env()
    with (
        hookledger_stack(env) as base,
        simulator("htx", _htx_args(base, duplicate=0.05, reorder=0.1), sim_env) as htx,
        simulator("trx_energy", _trx_args(base, duplicate=0.05, reorder=0.1), sim_env) as trx,
    ):
        htx.start()
        trx.start()
        htx_status, trx_status = htx.wait_done(120), trx.wait_done(120)
        htx_truth, trx_truth = htx.truth(), trx.truth()
        expected_events = sum(len(o["steps"]) for o in htx_truth["orders"])
        expected_events += 2 * len(trx_truth["rentals"]) + len(trx_truth["deposits"])
        wait_until(lambda: settled(engine, expected_events), 90, "every event processed")
        api = api_balances(base)
        htx_plan, trx_plan = htx.plan(), trx.plan()

    for status in (htx_status, trx_status):
        counts = status["counts"]
        assert status["dropped"] == status["mangled"] == 0
        assert status["duplicated"] > 0
        assert counts.get("failed", 0) == 0, status
        assert counts["accepted"] == status["planned"]
        assert counts["duplicate"] == status["duplicated"]
    assert {cb["outcome"] for cb in htx_plan + trx_plan} <= {"accepted", "duplicate"}
    assert event_counts(engine) == {"processed": expected_events}

    expected = combined(
        htx_balances(htx_truth, HTX_SOURCE),
        trx_balances(trx_truth, TRX_SOURCE, TRX_ACCOUNT),
    )
    assert ledger_balances(engine) == expected
    assert api == only(expected, {HTX_ACCOUNT, TRX_ACCOUNT})
    verify = hookledger(env, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    engine.dispose()


@pytest.mark.sqlite_only
def test_dropped_are_never_posted_and_mangled_are_refused_and_retried(env, database_url):
    with (
        hookledger_stack(env) as base,
        simulator("htx", _htx_args(base, drop=0.1, mangle=0.05), simulator_env()) as htx,
        simulator("trx_energy", _trx_args(base, drop=0.1, mangle=0.05), simulator_env()) as trx,
    ):
        htx.start()
        trx.start()
        htx_status, trx_status = htx.wait_done(120), trx.wait_done(120)
        htx_plan, trx_plan = htx.plan(), trx.plan()
        trx_truth = trx.truth()

    for status, plan, tries in ((htx_status, htx_plan, 5), (trx_status, trx_plan, 4)):
        fates = Counter(cb["fate"] for cb in plan)
        assert fates["dropped"] == status["dropped"] > 0
        assert fates["mangled"] == status["mangled"] > 0
        for cb in plan:
            if cb["fate"] == "dropped":
                assert (cb["attempts"], cb["outcome"]) == (0, None)
            elif cb["fate"] == "mangled":
                assert cb["answers"] == [422] * tries, cb
                assert cb["outcome"] == "failed"
            else:
                assert cb["outcome"] == "accepted", cb
        assert status["counts"]["retries"] == (tries - 1) * fates["mangled"]
        # Nothing loses every callback: something hookledger never heard of has no gap.
        by_thing: dict[str, set[str]] = {}
        for cb in plan:
            by_thing.setdefault(cb["ident"], set()).add(cb["fate"])
        assert all("sent" in fates_of for fates_of in by_thing.values())
    # Deposits cannot be asked about later (no query API), so none is dropped or mangled.
    deposits = [cb for cb in trx_plan if cb["ident"].startswith("deposit:")]
    assert len(deposits) == len(trx_truth["deposits"])
    assert {cb["fate"] for cb in deposits} == {"sent"}


def test_the_plan_is_decided_by_the_seed_and_keys_match_hookledgers():
    truth = htx_sim.make_truth(5, 50, 1_700_000_000_000, ("1001", "1002"))
    assert truth == htx_sim.make_truth(5, 50, 1_700_000_000_000, ("1001", "1002"))
    assert (
        truth["orders"][:10]
        == htx_sim.make_truth(5, 10, 1_700_000_000_000, ("1001", "1002"))["orders"]
    )
    states = Counter(o["state"] for o in truth["orders"])
    assert set(states) == {"filled", "partial-canceled", "canceled"}
    for order in truth["orders"]:
        last = order["steps"][-1]
        assert last["filled-amount"] == order["filled-amount"]
        filled = sum((Decimal(t["amount"]) for t in order["trades"]), Decimal(0))
        assert filled == Decimal(order["filled-amount"])
        if order["state"] == "filled":
            assert filled == Decimal(order["amount"])
        else:
            assert filled < Decimal(order["amount"])
        for step in order["steps"]:
            key = htx_sim.idempotency_key(order, step)
            expected = f"{order['id']}:{step['state']}:{canonical(Decimal(step['filled-amount']))}"
            assert key == expected


def test_every_callback_of_the_truth_passes_hookledgers_schema():
    """Every state the simulators send intact is one hookledger's kinds accept (amounts and
    prices positive, fields as the seeds show them), under the key the simulator expects."""
    htx_kind, trx_kind = kinds.get("htx"), kinds.get("trx-energy")
    truth = htx_sim.make_truth(11, 2000, 1_700_000_000_000, ("1001",))
    for order in truth["orders"]:
        for step in order["steps"]:
            parsed = htx_kind.parse(htx_sim.callback_body(order, step))
            assert parsed.idempotency_key == htx_sim.idempotency_key(order, step)
    trx = trx_sim.make_truth(12, 1000, 1000, 1_700_000_000_000, 3600)
    for rental in trx["rentals"]:
        for status in rental["statuses"]:
            parsed = trx_kind.parse({"type": "order", **trx_sim.order_view(rental, status)})
            assert parsed.idempotency_key == f"order:{rental['id']}:{status}"
    for deposit in trx["deposits"]:
        parsed = trx_kind.parse(trx_sim.deposit_body(deposit))
        assert parsed.idempotency_key == f"deposit:{deposit['txHash']}"


# --- the query APIs ---------------------------------------------------------------------


def _sign_htx(path: str, host: str, stamp: datetime, *, access_key: str, secret_key: str) -> str:
    """HTX signature version 2, written from HTX's REST docs independently of the simulator:
    the query of a signed GET of ``path`` on ``host``."""
    params = {
        "AccessKeyId": access_key,
        "SignatureMethod": "HmacSHA256",
        "SignatureVersion": "2",
        "Timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    query = urlencode(sorted(params.items()))
    text = "\n".join(["GET", host.lower(), path, query])
    mac = hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).digest()
    return query + "&" + urlencode({"Signature": base64.b64encode(mac).decode()})


def _acceptor() -> Starlette:
    """hookledger's answer to every callback, without hookledger: the query API tests only
    need the simulation played."""

    async def accept(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "accepted", "event_id": "x"})

    return Starlette(routes=[Route("/hooks/{rest:path}", accept, methods=["POST"])])


def test_htx_order_query_answers_from_the_truth_and_checks_the_signature():
    with (
        Served(_acceptor()) as sink,
        simulator("htx", ["--hook-url", sink.url, "--source", "s", "--count", "20",
                          "--rate", "1000"], simulator_env()) as htx,
    ):  # fmt: skip
        htx.start()
        htx.wait_done(30)
        truth = htx.truth()
        host = urlsplit(htx.url).netloc

        def get(path: str, **sign: Any) -> httpx.Response:
            keys = {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, **sign}
            stamp = keys.pop("stamp", datetime.now(UTC))
            signed_host = keys.pop("host", host)
            return htx.http.get(f"{path}?{_sign_htx(path, signed_host, stamp, **keys)}")

        for order in truth["orders"][:5]:
            path = f"/v1/order/orders/{order['id']}"
            data = get(path).json()
            assert data["status"] == "ok"
            detail = data["data"]
            assert detail["state"] == order["state"]
            for name in ("amount", "price", "symbol", "type"):
                assert detail[name] == order[name]
            assert detail["field-amount"] == detail["filled-amount"] == order["filled-amount"]
            assert detail["field-cash-amount"] == order["filled-cash-amount"]
            assert detail["field-fees"] == order["filled-fees"]
            assert detail["finished-at"] > 0
            trades = get(path + "/matchresults").json()
            assert trades["status"] == "ok"
            assert [t["trade-id"] for t in trades["data"]] == [
                t["trade-id"] for t in order["trades"]
            ]
            assert sum((Decimal(t["filled-amount"]) for t in trades["data"]), Decimal(0)) == (
                Decimal(order["filled-amount"])
            )
        # The host without its port names the server too (HTX's docs sign a host without one).
        path = f"/v1/order/orders/{truth['orders'][0]['id']}"
        assert get(path, host="127.0.0.1").json()["status"] == "ok"

        def error(answer: httpx.Response) -> tuple[int, str, str]:
            body = answer.json()
            assert body["status"] == "error" and body["data"] is None
            return answer.status_code, body["err-code"], body["err-msg"]

        assert error(get(path, secret_key="not-the-secret"))[:2] == (
            200, "api-signature-not-valid"
        )  # fmt: skip
        assert "Access key" in error(get(path, access_key="unknown-key"))[2]
        stale = datetime.fromtimestamp(time.time() - 400, UTC)
        assert "time" in error(get(path, stamp=stale))[2]
        assert "time" in error(get(path, stamp=datetime.fromtimestamp(time.time() + 400, UTC)))[2]
        assert error(htx.http.get(path))[1] == "api-signature-not-valid"  # not signed at all
        assert error(get("/v1/order/orders/42"))[1:] == ("base-record-invalid", "record invalid")

        htx.faults(rate_limit_first=2, reset_calls=1)
        assert [get(path).status_code for _ in range(3)] == [429, 429, 200]
        htx.faults(rate_limit_first=0, error_every=3, error_status=503, reset_calls=1)
        answers = [get(path) for _ in range(6)]
        assert [a.status_code for a in answers] == [200, 200, 503, 200, 200, 503]
        assert answers[2].json()["err-code"] == "gateway-internal-error"
        htx.faults(error_every=0, rate_limit_every=2, reset_calls=1)
        assert [get(path).status_code for _ in range(4)] == [200, 429, 200, 429]
        api = htx.status()["api"]
        assert api["bad_signature"] >= 1 and api["unknown_key"] == 2 and api["stale"] == 2


def test_htx_order_query_shows_only_what_has_happened_so_far():
    with simulator(
        "htx", ["--hook-url", "http://127.0.0.1:9", "--source", "s", "--count", "3"],
        simulator_env(),
    ) as htx:  # fmt: skip
        order_id = htx.truth()["orders"][0]["id"]
        path = f"/v1/order/orders/{order_id}"
        stamp = datetime.now(UTC)
        query = _sign_htx(
            path, urlsplit(htx.url).netloc, stamp, access_key=ACCESS_KEY, secret_key=SECRET_KEY
        )
        # Not started: the order has not been placed yet, so HTX does not know it.
        assert htx.http.get(f"{path}?{query}").json()["err-code"] == "base-record-invalid"


def test_trx_order_query_answers_from_the_truth_with_seed_004s_errors():
    with (
        Served(_acceptor()) as sink,
        simulator("trx_energy", ["--hook-url", sink.url, "--source", "s", "--count", "10",
                                 "--deposits", "5", "--rate", "1000"], simulator_env()) as trx,
    ):  # fmt: skip
        assert trx.http.get("/orders/1000", headers={"x-api-key": API_KEY}).text == (
            "ERROR: order not found"
        )  # nothing has happened yet
        trx.start()
        trx.wait_done(30)
        truth = trx.truth()
        for rental in truth["rentals"]:
            answer = trx.http.get(f"/orders/{rental['id']}", headers={"x-api-key": API_KEY})
            assert answer.status_code == 200
            view = answer.json()
            assert view["status"] == rental["statuses"][-1]
            assert set(view) == {
                "id", "orderTime", "orderType", "receiverAddress", "resourceType", "source",
                "status", "timeStamp", "times",
            }  # fmt: skip
        wrong = trx.http.get("/orders/1000", headers={"x-api-key": "wrong"})
        assert (wrong.status_code, wrong.text) == (200, "ERROR: unauthorized")
        assert trx.http.get("/orders/1000").text == "ERROR: unauthorized"
        assert trx.http.get("/orders/99999", headers={"x-api-key": API_KEY}).text == (
            "ERROR: order not found"
        )
        assert trx.http.get("/orders/abc", headers={"x-api-key": API_KEY}).text == (
            "ERROR: validation failed"
        )
        trx.faults(rate_limit_first=1, error_every=2, error_status=500, reset_calls=1)
        answers = [trx.http.get("/orders/1000", headers={"x-api-key": API_KEY}) for _ in range(4)]
        assert [(a.status_code, a.text[:6]) for a in answers] == [
            (429, "ERROR:"), (500, "ERROR:"), (200, '{"id":'), (500, "ERROR:"),
        ]  # fmt: skip
