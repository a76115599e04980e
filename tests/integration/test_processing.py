"""Workers: exactly-once application, retries with backoff, dead events, the sweep."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text
from sqlmodel import Session

from app.cli import main as cli
from app.kinds.htx.tables import Order, OrderEvent
from app.store.models import EventAttempt
from tests.support import count, event, htx_update, post_htx, run_jobs
from workers.jobs import process_event
from workers.sweeper import sweep_once


@pytest.fixture
def failing_orders(runtime) -> Iterator[None]:
    """A real database failure: a trigger that aborts every insert into ``orders``."""
    engine: Engine = runtime.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER hl_fail BEFORE INSERT ON orders "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION hl_fail() RETURNS trigger AS $$ "
                    "BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER hl_fail BEFORE INSERT ON orders "
                    "FOR EACH ROW EXECUTE FUNCTION hl_fail()"
                )
            )
    yield
    heal(engine)


def heal(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS hl_fail"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS hl_fail ON orders"))


def test_failure_is_retried_and_then_applied_once(client, runtime, failing_orders):
    event_id = post_htx(client, htx_update(1, "filled", "1", "100", "0.1")).json()["event_id"]
    run_jobs(runtime)
    failed = event(runtime.engine, event_id)
    assert (failed.status, failed.attempts) == ("retrying", 1)
    assert "injected failure" in (failed.last_error or "")
    assert failed.next_attempt_at is not None

    heal(runtime.engine)
    assert sweep_once(runtime).requeued == [event_id]  # retry delay 0 s: due at once
    run_jobs(runtime)

    done = event(runtime.engine, event_id)
    assert (done.status, done.attempts, done.last_error) == ("processed", 2, None)
    assert count(runtime.engine, OrderEvent) == 1
    outcomes = _attempts(runtime.engine, event_id)
    assert outcomes == ["retrying", "processed"]


def test_failure_after_the_last_retry_is_dead_once(client, runtime, failing_orders):
    event_id = post_htx(client, htx_update(1, "filled", "1", "100", "0.1")).json()["event_id"]
    for _ in range(5):  # more rounds than retries: a dead event stays dead
        run_jobs(runtime)
        sweep_once(runtime)
    dead = event(runtime.engine, event_id)
    # retry_delays_s = [0, 0]: the first attempt and two retries, then dead.
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert _attempts(runtime.engine, event_id) == ["retrying", "retrying", "dead"]
    assert count(runtime.engine, Order) == 0


def test_an_error_retrying_cannot_fix_is_dead_at_once(client, runtime):
    post_htx(client, htx_update(9, "submitted", "0", "0", "0"))
    conflicting = htx_update(9, "filled", "1", "1", "0")
    conflicting["type"] = "sell-limit"  # the same order cannot change side
    event_id = post_htx(client, conflicting).json()["event_id"]
    run_jobs(runtime)
    dead = event(runtime.engine, event_id)
    assert (dead.status, dead.attempts) == ("dead", 1)
    assert "was buy btcusdt" in (dead.last_error or "")


def test_a_replayed_job_of_a_processed_event_changes_nothing(client, runtime):
    event_id = post_htx(client, htx_update(3, "filled", "2", "200", "0.2")).json()["event_id"]
    run_jobs(runtime)
    runtime.events.enqueue(event_id)
    run_jobs(runtime)
    assert process_event(event_id) == "processed"
    assert count(runtime.engine, OrderEvent) == 1
    assert event(runtime.engine, event_id).attempts == 1


def test_reconcile_requeues_jobs_lost_with_a_flushed_redis(
    client, runtime, redis_client, env, monkeypatch, capsys
):
    ids = [
        post_htx(client, htx_update(i, "filled", "1", "10", "0")).json()["event_id"]
        for i in range(5)
    ]
    redis_client.flushdb()  # every queued job is gone
    run_jobs(runtime)
    assert {event(runtime.engine, i).status for i in ids} == {"received"}

    for key, value in env.items():
        if key.startswith(("HOOKLEDGER_", "TEST_")):
            monkeypatch.setenv(key, value)
    assert cli(["reconcile"]) == 0
    assert "5 re-queued" in capsys.readouterr().out
    run_jobs(runtime)

    assert {event(runtime.engine, i).status for i in ids} == {"processed"}
    assert count(runtime.engine, OrderEvent) == 5


def test_the_sweep_leaves_jobs_that_still_wait_in_the_queue(client, runtime):
    post_htx(client, htx_update(1, "filled", "1", "10", "0"))
    result = sweep_once(runtime, stale_after_s=0)
    assert (result.due, result.requeued, result.still_queued) == (1, [], 1)


def test_a_job_popped_by_a_worker_that_died_at_once_is_made_again(client, runtime, redis_client):
    """RQ moves a job to an intermediate list before the worker marks it started; a worker
    killed in between leaves it saying "queued" in no queue. Found by the fault suite."""
    event_id = post_htx(client, htx_update(1, "filled", "1", "10", "0")).json()["event_id"]
    queue = runtime.events.queue
    popped = redis_client.lmove(queue.key, queue.intermediate_queue_key)  # what BLMOVE does
    assert popped is not None
    result = sweep_once(runtime, stale_after_s=0)
    assert (result.due, result.requeued, result.still_queued) == (1, [event_id], 0)
    run_jobs(runtime)
    assert event(runtime.engine, event_id).status == "processed"
    assert count(runtime.engine, OrderEvent) == 1


def _attempts(engine: Engine, event_id: str) -> list[str]:
    with Session(engine) as session:
        rows = session.execute(
            select(EventAttempt.outcome)
            .where(EventAttempt.event_id == event_id)
            .order_by(EventAttempt.attempt)
        )
        return list(rows.scalars())


# --- Any permutation, with duplicates, of one order's callbacks gives the same final order ---

HISTORY = [
    ("submitted", "0", "0", "0"),
    ("partial-filled", "0.01", "420", "0.00002"),
    ("partial-filled", "0.025", "1050.5", "0.00005"),
    ("filled", "0.03", "1260.7", "0.00006"),
]
_order_ids = itertools.count(1000)


@st.composite
def deliveries(draw: st.DrawFn) -> list[int]:
    indices = draw(st.lists(st.sampled_from(range(len(HISTORY))), min_size=1, max_size=10))
    must_have = draw(st.permutations(range(len(HISTORY))))
    return draw(st.permutations(indices + list(must_have)))


@hsettings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=deliveries(), drain_every=st.integers(min_value=1, max_value=5))
def test_any_delivery_order_gives_the_same_final_order(client, runtime, order, drain_every):
    order_id = next(_order_ids)
    for n, index in enumerate(order, 1):
        state, filled, cash, fees = HISTORY[index]
        assert post_htx(client, htx_update(order_id, state, filled, cash, fees)).status_code == 200
        if n % drain_every == 0:
            run_jobs(runtime)
    run_jobs(runtime)

    with Session(runtime.engine) as session:
        row = session.execute(select(Order).where(Order.order_id == str(order_id))).scalar_one()
        sums = session.execute(
            select(
                func.count(),
            ).where(OrderEvent.order_pk == row.id)
        ).scalar_one()
        deltas = (
            session.execute(select(OrderEvent).where(OrderEvent.order_pk == row.id)).scalars().all()
        )
    assert (row.state, row.filled_amount, row.filled_cash_amount, row.filled_fees) == (
        "filled",
        Decimal("0.03"),
        Decimal("1260.7"),
        Decimal("0.00006"),
    )
    assert sums == len(set(order))  # one effect row per distinct event, none per duplicate
    assert sum((d.delta_filled_amount for d in deltas), Decimal(0)) == Decimal("0.03")
    assert sum((d.delta_filled_cash_amount for d in deltas), Decimal(0)) == Decimal("1260.7")
    assert sum((d.delta_filled_fees for d in deltas), Decimal(0)) == Decimal("0.00006")
