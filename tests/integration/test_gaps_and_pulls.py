"""Gaps and pulls (CONTRACT section 10), through the public surface, on SQLite and PostgreSQL.

A callback that never came shows as a gap (``hookledger gaps``, ``GET /admin/gaps``, the
``hookledger_gaps`` gauge); asking the counterpart (``hookledger pull``, or the sweeper's pull
thread) stores its answer as an ``origin = pull`` event that a worker applies; the callback
arriving late afterwards is a duplicate. The counterparts are small real servers in this module:
the TRON energy platform's ``GET /orders/{id}`` (seed 004: ``x-api-key``, ``ERROR: ...`` bodies
with HTTP 200) and HTX's REST order query and match results, which checks each request's
signature (version 2) with its own implementation.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import textwrap
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from app.kinds.htx.tables import Order
from app.kinds.trx_energy.tables import RentalOrder
from app.runtime import Runtime
from app.services import pull as pull_service
from app.store.db import utcnow
from app.store.models import InboundEvent, PullState
from tests.canary import canary
from tests.console.helpers import login
from tests.counterparts import Served
from tests.support import (
    ADMIN_TOKEN,
    HTX_SECRET,
    PP_SECRET,
    TRX_TOKEN,
    hookledger,
    htx_update,
    post_htx,
    post_pp,
    post_trx,
    run_jobs,
)

TRX_API_KEY = canary("trx-pull-api-key")
HTX_ACCESS_KEY = canary("htx-pull-access-key")
HTX_SECRET_KEY = canary("htx-pull-secret-key")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ADDRESS = "TJqiMSSmRtm4LvXrYBWysz9DnNrFQDaBv9"


@dataclass
class Platform:
    """Seed 004's order query, plus HTX's order and match results, on one loopback server."""

    rentals: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    matches: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    forced: deque[str] = field(default_factory=deque)  # "429", "500", "error200", "slow"
    asked: list[str] = field(default_factory=list)
    bad_signatures: int = 0

    async def rental(self, request: Request) -> Response:
        self.asked.append(request.url.path)
        if request.headers.get("x-api-key") != TRX_API_KEY:
            return PlainTextResponse("ERROR: unauthorized")
        if self.forced:
            forced = self.forced.popleft()
            if forced == "slow":
                await asyncio.sleep(2)
            elif forced == "error200":
                return PlainTextResponse("ERROR: system busy")
            else:
                return PlainTextResponse("busy", status_code=int(forced))
        found = self.rentals.get(request.path_params["ident"])
        if found is None:
            return PlainTextResponse("ERROR: order not found")
        return JSONResponse(found)

    def _signed(self, request: Request) -> bool:
        """HTX signature version 2, checked independently of the code under test."""
        params = dict(request.query_params)
        signature = params.pop("Signature", "")
        if params.get("AccessKeyId") != HTX_ACCESS_KEY or params.get("SignatureVersion") != "2":
            return False
        payload = "\n".join(
            [
                "GET",
                request.headers["host"].lower(),
                request.url.path,
                urlencode(sorted(params.items())),
            ]
        )
        expected = base64.b64encode(
            hmac.new(HTX_SECRET_KEY.encode(), payload.encode(), hashlib.sha256).digest()
        ).decode()
        return hmac.compare_digest(expected, signature)

    async def order(self, request: Request) -> Response:
        self.asked.append(request.url.path)
        if not self._signed(request):
            self.bad_signatures += 1
            return JSONResponse(
                {"status": "error", "err-code": "api-signature-not-valid", "err-msg": "bad"}
            )
        found = self.orders.get(request.path_params["ident"])
        if found is None:
            return JSONResponse(
                {"status": "error", "err-code": "base-record-invalid", "err-msg": "no record"}
            )
        return JSONResponse({"status": "ok", "data": found})

    async def matchresults(self, request: Request) -> Response:
        self.asked.append(request.url.path)
        if not self._signed(request):
            self.bad_signatures += 1
            return JSONResponse({"status": "error", "err-code": "api-signature-not-valid"})
        return JSONResponse(
            {"status": "ok", "data": self.matches.get(request.path_params["ident"], [])}
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/orders/{ident}", self.rental),
                Route("/v1/order/orders/{ident}", self.order),
                Route("/v1/order/orders/{ident}/matchresults", self.matchresults),
            ]
        )


@pytest.fixture
def platform() -> Iterator[tuple[Platform, str]]:
    fake = Platform()
    with Served(fake.app()) as served:
        yield fake, served.url


@pytest.fixture
def config_path(tmp_path: Path, platform: tuple[Platform, str]) -> Path:
    _fake, url = platform
    path = tmp_path / "hookledger.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [processing]
            queue = "hl-test"
            enqueue_linger_ms = 0
            retry_delays_s = [0, 0]

            [sources.htx-main]
            kind = "htx"
            account_id = "1001"
            auth = "hmac-sha256"
            secrets = ["{HTX_SECRET}"]
            gap_after_s = 1

            [sources.htx-main.pull]
            base_url = "{url}"
            access_key = "{HTX_ACCESS_KEY}"
            secret_key = "{HTX_SECRET_KEY}"
            allow_private = true
            interval_s = 0.2
            timeout_s = 0.5
            retry_delays_s = [30, 60]

            [sources.trx]
            kind = "trx-energy"
            account_id = "3003"
            auth = "token"
            secrets = ["{TRX_TOKEN}"]

            [sources.trx.pull]
            base_url = "{url}/api"
            api_key = "{TRX_API_KEY}"
            allow_private = true
            timeout_s = 0.5
            concurrency = 2
            retry_delays_s = [30, 60]

            [sources.trx-guarded]
            kind = "trx-energy"
            account_id = "3003"
            auth = "token"
            secrets = ["{TRX_TOKEN}"]

            [sources.trx-guarded.pull]
            base_url = "{url}/api"
            api_key = "{TRX_API_KEY}"

            [sources.pp]
            kind = "pingpong"
            account_id = "2002"
            auth = "standard-webhooks"
            secrets = ["{PP_SECRET}"]
            """
        )
    )
    return path


def _rental(ident: int, status: int, *, placed_ms: int) -> dict[str, Any]:
    return {
        "id": ident,
        "orderTime": 3600,
        "orderType": 0,
        "receiverAddress": ADDRESS,
        "resourceType": 1,
        "source": "WEB",
        "status": status,
        "timeStamp": placed_ms,
        "times": 1,
    }


def _hours_ago_ms(hours: float) -> int:
    return int((time.time() - hours * 3600) * 1000)


def _events(runtime: Runtime, source: str) -> list[InboundEvent]:
    with Session(runtime.engine) as session:
        rows = session.execute(
            select(InboundEvent).where(InboundEvent.source == source).order_by(InboundEvent.id)
        ).scalars()
        return list(rows)


def _pull_state(runtime: Runtime, source: str, ident: str) -> PullState:
    with Session(runtime.engine) as session:
        row = session.execute(
            select(PullState).where(PullState.source == source, PullState.ident == ident)
        ).scalar_one()
        session.expunge(row)
        return row


def test_missed_callbacks_are_found_pulled_applied_and_a_late_push_is_a_duplicate(
    admin_client: TestClient,
    runtime: Runtime,
    env: dict[str, str],
    platform: tuple[Platform, str],
) -> None:
    fake, _url = platform
    client = admin_client
    placed = _hours_ago_ms(2)
    # A rental order placed two hours ago for an hour, still created: its delegation never came.
    assert (
        post_trx(client, {"type": "order", **_rental(11, 0, placed_ms=placed)}).status_code == 200
    )
    # An HTX order submitted, then nothing.
    assert post_htx(client, htx_update(7001, "submitted", "0", "0", "0")).status_code == 200
    # A PingPong contract whose value date is past, never settled.
    created = {
        "event_type": "positionCreate",
        "msg_id": "P-gap-1",
        "payload": {
            "position_id": "POS-GAP-1",
            "value_date": "2024-01-05",
            "trade_channel": "api",
            "source_type": "spot",
        },
    }
    assert post_pp(client, created).status_code == 200
    run_jobs(runtime)
    time.sleep(1.1)  # htx-main's gap_after_s

    listed = hookledger(env, "gaps", "--json")
    assert listed.returncode == 0, listed.stderr
    gaps = {(g["source"], g["ident"]): g for g in json.loads(listed.stdout)}
    assert set(gaps) == {("htx-main", "7001"), ("trx", "11"), ("pp", "POS-GAP-1")}
    assert gaps["trx", "11"]["what"] == "rental order still created"
    assert gaps["htx-main", "7001"]["what"] == "order not final"
    assert gaps["htx-main", "7001"]["state"] == "submitted"
    assert gaps["pp", "POS-GAP-1"]["what"] == "contract past value date"
    assert gaps["pp", "POS-GAP-1"]["since"].startswith("2024-01-06T00:00:00")
    assert gaps["pp", "POS-GAP-1"]["pullable"] is False
    assert all(g["pull"] is None for g in gaps.values())

    assert client.get("/admin/gaps").status_code == 401
    answer = client.get("/admin/gaps?source=trx", headers=ADMIN)
    assert answer.status_code == 200
    assert [g["ident"] for g in answer.json()["gaps"]] == ["11"]
    assert client.get("/admin/gaps?source=nope", headers=ADMIN).status_code == 404
    assert client.get("/admin/gaps?colour=red", headers=ADMIN).status_code == 400
    assert login(client).status_code == 303
    page = client.get("/console/gaps?source=pp")
    assert page.status_code == 200
    assert "POS-GAP-1" in page.text and "contract past value date" in page.text
    assert "no pull" in page.text
    scraped = client.get("/metrics").text
    assert 'hookledger_gaps{source="trx"} 1.0' in scraped
    assert 'hookledger_gaps{source="pp"} 1.0' in scraped

    # The counterparts know more: the rental was delegated, the order filled in two trades.
    fake.rentals["11"] = _rental(11, 1, placed_ms=placed)
    fake.orders["7001"] = {
        "id": 7001,
        "symbol": "btcusdt",
        "account-id": 1001,
        "client-order-id": "",
        "amount": "0.03",
        "price": "42000",
        "created-at": 1704440609000,
        "type": "buy-limit",
        "field-amount": "0.03",
        "field-cash-amount": "1260",
        "field-fees": "0.00006",
        "finished-at": 1704440700000,
        "source": "api",
        "state": "filled",
    }
    fake.matches["7001"] = [
        {"trade-id": 901, "price": "42000", "filled-amount": "0.01", "created-at": 1704440650000},
        {"trade-id": 902, "price": "42000", "filled-amount": "0.02", "created-at": 1704440690000},
    ]

    pulled = hookledger(env, "pull", "--source", "trx")
    assert pulled.returncode == 0, pulled.stderr
    assert "trx 11: pulled" in pulled.stdout
    assert fake.asked == ["/api/orders/11"]
    run_jobs(runtime)

    # The sweeper's pull thread asks HTX on its own.
    stop = threading.Event()
    thread = threading.Thread(target=pull_service.run_forever, args=(runtime, stop))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not [e for e in _events(runtime, "htx-main") if e.origin == "pull"]:
            assert time.monotonic() < deadline, "the sweeper's pull stored nothing"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert fake.bad_signatures == 0
    assert "/v1/order/orders/7001/matchresults" in fake.asked

    run_jobs(runtime)
    trx_pulled = [e for e in _events(runtime, "trx") if e.origin == "pull"]
    htx_pulled = [e for e in _events(runtime, "htx-main") if e.origin == "pull"]
    assert [e.status for e in trx_pulled + htx_pulled] == ["processed", "processed"]
    assert _pull_state(runtime, "trx", "11").last_outcome == "pulled"
    with Session(runtime.engine) as session:
        rental = session.execute(select(RentalOrder)).scalar_one()
        order = session.execute(select(Order)).scalar_one()
    assert rental.status == 1
    assert (order.state, str(order.filled_amount.normalize())) == ("filled", "0.03")

    # The callbacks arrive late: one event each, already applied.
    late = post_trx(client, {"type": "order", **_rental(11, 1, placed_ms=placed)})
    assert late.json()["status"] == "duplicate"
    assert late.json()["event_id"] == trx_pulled[0].id
    late = post_htx(client, htx_update(7001, "filled", "0.03", "1260", "0.00006"))
    assert late.json()["status"] == "duplicate"
    assert late.json()["event_id"] == htx_pulled[0].id

    remaining = hookledger(env, "gaps")
    assert remaining.returncode == 0
    assert "POS-GAP-1" in remaining.stdout and "7001" not in remaining.stdout
    assert "(1 gap)" in remaining.stdout
    assert hookledger(env, "pull", "--source", "pp").returncode == 2


def test_counterpart_errors_are_recorded_and_retried_with_backoff(
    client: TestClient, runtime: Runtime, env: dict[str, str], platform: tuple[Platform, str]
) -> None:
    fake, _url = platform
    placed = _hours_ago_ms(3)
    assert (
        post_trx(client, {"type": "order", **_rental(21, 0, placed_ms=placed)}).status_code == 200
    )
    run_jobs(runtime)
    fake.forced.extend(["429", "error200", "500", "slow"])
    now = utcnow()
    seen = []
    for attempt, delay in enumerate([30, 60, 60, 60], start=1):
        assert pull_service.due_idents(runtime.engine, runtime.settings, "trx", now=now) == ["21"]
        [asked] = pull_service.pull_source(runtime, "trx", now=now)
        state = _pull_state(runtime, "trx", "21")
        seen.append(state.last_outcome)
        assert asked.failed and state.attempts == attempt
        assert state.last_error
        assert TRX_API_KEY not in state.last_error
        assert state.next_attempt_at is not None and state.last_attempt_at is not None
        wait = state.next_attempt_at - state.last_attempt_at
        assert wait == timedelta(seconds=delay)
        # Backed off: not due again until its next attempt.
        assert pull_service.due_idents(runtime.engine, runtime.settings, "trx", now=now) == []
        now += timedelta(seconds=delay + 1)
    assert seen == ["rate_limited", "error", "server_error", "timeout"]

    shown = hookledger(env, "gaps", "--source", "trx")
    assert "timeout" in shown.stdout

    # Asked about an order it does not know, the platform says so with HTTP 200.
    missing = hookledger(env, "pull", "--source", "trx", "--order", "999")
    assert missing.returncode == 0, missing.stderr
    assert "trx 999: not_found" in missing.stdout
    # A failure exits 1.
    fake.forced.append("500")
    failed = hookledger(env, "pull", "--source", "trx", "--order", "21")
    assert failed.returncode == 1
    assert "server_error" in failed.stdout

    # Then it answers: the gap is pulled and closes once applied.
    fake.rentals["21"] = _rental(21, -1, placed_ms=placed)
    [asked] = pull_service.pull_source(runtime, "trx", now=now + timedelta(seconds=60))
    assert asked.outcome == "pulled"
    run_jobs(runtime)
    assert pull_service.due_idents(runtime.engine, runtime.settings, "trx", now=utcnow()) == []


def test_pulls_go_through_the_outbound_guard(
    client: TestClient, runtime: Runtime, env: dict[str, str], platform: tuple[Platform, str]
) -> None:
    fake, _url = platform
    body = {"type": "order", **_rental(31, 0, placed_ms=_hours_ago_ms(2))}
    assert post_trx(client, body, token=TRX_TOKEN).status_code == 200
    run_jobs(runtime)
    result = hookledger(env, "pull", "--source", "trx-guarded", "--order", "31")
    assert result.returncode == 1
    assert "refused" in result.stdout and "non-public address" in result.stdout
    assert fake.asked == []
    assert hookledger(env, "pull", "--order", "31").returncode == 2  # --order needs --source
    assert hookledger(env, "pull", "--source", "nope").returncode == 2
