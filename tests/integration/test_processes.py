"""With real processes: concurrent deliveries to uvicorn, workers killed mid-job, two workers
on one order."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from decimal import Decimal

import httpx
import pytest
from redis import Redis
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, select, text
from sqlmodel import Session

from app.kinds.htx.tables import Order, OrderEvent
from app.store.models import InboundEvent
from app.store.queue import job_id
from tests.processes import spawn, stop, wait_until, web_server
from tests.support import body_of, count, event, htx_headers, htx_update, post_htx, run_jobs
from workers.sweeper import sweep_once

pytestmark = pytest.mark.slow


def test_100_concurrent_deliveries_give_one_event_and_one_effect(env, runtime):
    body = body_of(htx_update(5150, "filled", "0.03", "1260", "0.00006"))
    headers = htx_headers(body)

    async def deliver(base: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/hooks/htx-main", content=body, headers=headers) for _ in range(100))
            )

    with web_server(env, workers=2) as base:
        responses = asyncio.run(deliver(base))

    assert {r.status_code for r in responses} == {200}
    answers = [r.json() for r in responses]
    assert sum(a["status"] == "accepted" for a in answers) == 1
    assert len({a["event_id"] for a in answers}) == 1
    assert count(runtime.engine, InboundEvent) == 1
    run_jobs(runtime)
    assert count(runtime.engine, OrderEvent) == 1


class _RowLock:
    """Hold the write lock a worker needs, from outside: a row lock on PostgreSQL, the
    database write lock on SQLite. A worker that takes the job blocks inside it."""

    def __init__(self, database_url: str, event_id: str) -> None:
        self.url, self.event_id = database_url, event_id

    def __enter__(self) -> _RowLock:
        if self.url.startswith("sqlite"):
            self.sqlite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.sqlite.execute("BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(self.url)
            self.conn = self.engine.connect()
            self.tx = self.conn.begin()
            self.conn.execute(
                text("SELECT id FROM inbound_events WHERE id = :id FOR UPDATE"),
                {"id": self.event_id},
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.url.startswith("sqlite"):
            self.sqlite.execute("ROLLBACK")
            self.sqlite.close()
        else:
            self.tx.rollback()
            self.conn.close()
            self.engine.dispose()


def _job_status(redis: Redis, event_id: str) -> str | None:
    try:
        status = Job.fetch(
            job_id(event_id), connection=redis, serializer=JSONSerializer
        ).get_status()
        return None if status is None else str(status.value)
    except Exception:  # noqa: BLE001 - no such job yet
        return None


def test_sigkill_of_a_worker_mid_job_still_ends_processed_once(client, runtime, env):
    event_id = post_htx(client, htx_update(77, "filled", "1", "100", "0.1")).json()["event_id"]
    queue = runtime.events.queue
    queue.empty()  # hold the job back until the worker is up and the lock is held
    worker = spawn(["worker"], env)
    try:
        wait_until(lambda: len(Worker.all(queue=queue)) == 1, 30, "the worker to start")
        with _RowLock(env["HOOKLEDGER_DATABASE_URL"], event_id):
            runtime.events.enqueue(event_id)
            wait_until(
                lambda: _job_status(runtime.redis, event_id) == "started", 30, "the job to start"
            )
            stop(worker, signal.SIGKILL)  # killed while blocked inside the job
    finally:
        stop(worker, signal.SIGKILL)
    assert event(runtime.engine, event_id).status == "received"

    # The job died with its worker; the sweep finds the unfinished event and queues it again.
    assert sweep_once(runtime, stale_after_s=0).requeued == [event_id]
    replacement = spawn(["worker", "--burst"], env)
    assert replacement.wait(timeout=60) == 0
    stop(replacement)

    done = event(runtime.engine, event_id)
    assert (done.status, done.attempts) == ("processed", 1)
    assert count(runtime.engine, OrderEvent) == 1


def test_two_workers_on_one_order_lose_no_update(client, runtime, env):
    steps = [(f"{i / 100:.2f}", f"{i * 420}", f"{i * 2}e-6") for i in range(1, 41)]
    for filled, cash, fees in steps:
        state = "filled" if filled == "0.40" else "partial-filled"
        fee = str(Decimal(fees))
        assert post_htx(client, htx_update(88, state, filled, cash, fee)).status_code == 200
    workers = [spawn(["worker", "--burst"], env) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
        stop(worker)

    with Session(runtime.engine) as session:
        order = session.execute(select(Order)).scalar_one()
        deltas = session.execute(select(OrderEvent)).scalars().all()
    assert (order.state, order.filled_amount, order.filled_cash_amount) == (
        "filled",
        Decimal("0.4"),
        Decimal("16800"),
    )
    assert order.filled_fees == Decimal("0.00008")
    assert len(deltas) == 40
    assert sum((d.delta_filled_cash_amount for d in deltas), Decimal(0)) == Decimal("16800")
    assert sum((d.delta_filled_fees for d in deltas), Decimal(0)) == Decimal("0.00008")


def test_two_workers_posting_to_one_account_keep_running_balances_exact(client, runtime, env):
    from app.kinds import verify_ledger

    for n in range(1, 41):
        side = "buy-limit" if n % 3 else "sell-limit"
        post_htx(
            client,
            htx_update(1000 + n, "filled", f"0.0{n % 9 + 1}", f"{n * 37}.5", "0.001", type=side),
        )
    workers = [spawn(["worker", "--burst"], env) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
        stop(worker)

    assert count(runtime.engine, InboundEvent, InboundEvent.status == "processed") == 40
    with Session(runtime.engine) as session:
        report = verify_ledger(session, runtime.settings.file.ledger.quote_currencies)
    assert report.ok, report.breaches
    assert report.checked_entries == 40
