"""Batch processing (``process_events``): the same ledger as one event at a time, a failing event
isolated from its batch, and a batch that fails as a whole redone one by one."""

from __future__ import annotations

import itertools
import random
import time
from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.testclient import TestClient

from app.kinds.htx.tables import Order, OrderEvent, Trade
from app.main import create_app
from app.settings import load_settings
from app.store.models import InboundEvent, LedgerPosting
from tests.integration.test_ledger_worked_examples import assert_ledger_verifies
from tests.integration.test_processing import HISTORY, failing_orders  # noqa: F401 - fixture
from tests.support import count, event, htx_update, post_htx, post_trx, run_jobs
from workers.jobs import process_event, process_events

_orders = itertools.count(5000)


def _store(client, runtime, payloads: list[dict[str, object]]) -> list[str]:
    """Receive ``payloads`` (HTTP, real ingest) and take their jobs off the queue."""
    ids = [post_htx(client, p).json()["event_id"] for p in payloads]
    runtime.events.queue.empty()
    return ids


def _postings(engine, event_ids: list[str]) -> list[tuple[str, str, object]]:
    """(tran_type, currency, amount) of the customer postings of ``event_ids``, in id order."""
    with Session(engine) as session:
        rows = session.execute(
            select(LedgerPosting)
            .where(col(LedgerPosting.event_id).in_(event_ids), col(LedgerPosting.customer))
            .order_by(col(LedgerPosting.id))
        ).scalars()
        return [(r.tran_type, r.currency, r.amount) for r in rows]


def _order(engine, order_id: int) -> tuple[object, ...]:
    with Session(engine) as session:
        row = session.execute(select(Order).where(Order.order_id == str(order_id))).scalar_one()
        return (row.state, row.filled_amount, row.filled_cash_amount, row.filled_fees)


@hsettings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arrivals=st.lists(st.sampled_from(range(len(HISTORY))), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_a_batch_posts_what_one_event_at_a_time_posts(client, runtime, arrivals, seed):
    one, batched = next(_orders), next(_orders)
    singles = _store(client, runtime, [htx_update(one, *HISTORY[i]) for i in arrivals])
    grouped = _store(client, runtime, [htx_update(batched, *HISTORY[i]) for i in arrivals])

    for event_id in singles:
        process_event(event_id)
    # The same arrivals in random batches (a batch applies its events in id = arrival order).
    rng, rest = random.Random(seed), list(grouped)
    while rest:
        size = rng.randint(1, 5)
        process_events(rest[:size])
        rest = rest[size:]

    assert _order(runtime.engine, batched) == _order(runtime.engine, one)
    assert _postings(runtime.engine, grouped) == _postings(runtime.engine, singles)
    assert [event(runtime.engine, e).status for e in grouped] == [
        event(runtime.engine, e).status for e in singles
    ]
    assert_ledger_verifies(runtime)


def test_a_failing_event_leaves_the_rest_of_its_batch_applied(client, runtime):
    order = next(_orders)
    good = htx_update(order, "filled", "1", "100", "0.1")
    clash = {**htx_update(order, "filled", "2", "200", "0.2"), "symbol": "ethusdt"}
    other = htx_update(next(_orders), "filled", "3", "300", "0.3")
    ids = _store(client, runtime, [good, clash, other])

    assert process_events(ids) == {"processed": 2, "dead": 1}

    statuses = [event(runtime.engine, e).status for e in ids]
    assert statuses == ["processed", "dead", "processed"]
    assert "ethusdt" in (event(runtime.engine, ids[1]).last_error or "")
    assert len(_postings(runtime.engine, ids)) == 6  # 3 per applied fill, none for the clash
    assert_ledger_verifies(runtime)
    # Applying the batch again changes nothing.
    assert process_events(ids) == {"processed": 2, "dead": 1}
    assert len(_postings(runtime.engine, ids)) == 6


def test_an_event_failing_after_its_effect_rows_leaves_none_of_them(client, runtime):
    """An unknown quote currency fails the fill after its order event was buffered (it goes in
    with the ledger's writes): its savepoint's rollback drops it too. (The fill fails before
    its trades are buffered; the trade check below is a plain one.)"""
    trade = {"trade-id": 770001, "trade-price": "100", "trade-amount": "1"}
    odd_order = next(_orders)
    # Its order exists already (a submission moves no money), so nothing else about the fill
    # fails: rows it left behind would be written with the batch.
    [submitted] = _store(
        client, runtime, [htx_update(odd_order, "submitted", "0", "0", "0", symbol="btcxyz")]
    )
    assert process_events([submitted]) == {"processed": 1}
    good = htx_update(next(_orders), "filled", "1", "100", "0.1", trade=[trade])
    odd = htx_update(
        odd_order,
        "filled",
        "1",
        "100",
        "0.1",
        symbol="btcxyz",
        trade=[{**trade, "trade-id": 770002}],
    )
    ids = _store(client, runtime, [good, odd])

    assert process_events(ids) == {"processed": 1, "dead": 1}
    assert "btcxyz" in (event(runtime.engine, ids[1]).last_error or "")
    with Session(runtime.engine) as session:
        effects = session.execute(select(col(OrderEvent.event_id))).scalars().all()
        trades = session.execute(select(col(Trade.trade_id), col(Trade.event_id))).all()
    assert ids[1] not in effects and {ids[0], submitted} <= set(effects)
    assert [tuple(t) for t in trades if t[0] in ("770001", "770002")] == [("770001", ids[0])]
    assert _order(runtime.engine, odd_order)[0] == "submitted"  # the fill left nothing behind


def test_a_trade_named_by_two_events_of_a_batch_keeps_its_first_row(client, runtime):
    order = next(_orders)
    trade = {"trade-id": 770100, "trade-price": "100", "trade-amount": "1"}
    part = htx_update(order, "partial-filled", "1", "100", "0.1", trade=[trade])
    full = htx_update(
        order,
        "filled",
        "2",
        "200",
        "0.2",
        trade=[trade, {**trade, "trade-id": 770101}],
    )
    ids = _store(client, runtime, [part, full])

    assert process_events(ids) == {"processed": 2}
    with Session(runtime.engine) as session:
        trades = session.execute(
            select(col(Trade.trade_id), col(Trade.event_id))
            .where(col(Trade.trade_id).in_(["770100", "770101"]))
            .order_by(col(Trade.trade_id))
        ).all()
    # A batch applies its events in id order; two ids of the same millisecond are in random
    # order, so the shared trade belongs to whichever came first.
    assert [tuple(t) for t in trades] == [("770100", min(ids)), ("770101", ids[1])]
    assert_ledger_verifies(runtime)


def test_a_batch_that_fails_as_a_whole_is_redone_one_by_one(
    client,
    runtime,
    failing_orders,  # noqa: F811 - fixture: every insert into orders fails
):
    fill = htx_update(next(_orders), "filled", "1", "100", "0.1")
    deposit = {
        "type": "deposit",
        "id": 9,
        "address": "T9z6yrJXuiJpfWhis3Ae9nHK7k65yM5AHP",
        "fromAddress": "TE9eC5EiHx9zD5bWfzyPhtQ94s7QMqv2CQ",
        "amount": 5_000_000,
        "txHash": "cd" * 32,
        "createdAt": "2025-10-08 16:49:17",
    }
    fill_id = post_htx(client, fill).json()["event_id"]
    deposit_id = post_trx(client, deposit).json()["event_id"]
    runtime.events.queue.empty()

    # Locking the batch's orders fails, so the whole batch fails, twice; one by one, the
    # deposit is applied and the fill is counted as a failed attempt, to be retried.
    assert process_events([fill_id, deposit_id]) == {"retrying": 1, "processed": 1}
    assert (event(runtime.engine, fill_id).status, event(runtime.engine, fill_id).attempts) == (
        "retrying",
        1,
    )
    assert event(runtime.engine, deposit_id).status == "processed"
    assert count(runtime.engine, Order) == 0


def test_receipts_queue_one_job_per_flush_and_the_worker_applies_it(client, runtime):
    ids = [
        post_htx(client, htx_update(next(_orders), "filled", "1", "10", "0")).json()["event_id"]
        for _ in range(3)
    ]
    jobs = runtime.events.queue.get_jobs()
    assert [job.func_name for job in jobs] == ["workers.jobs.process_events"] * 3
    assert [job.args[0] for job in jobs] == [[e] for e in ids]  # one request at a time here
    assert {event(runtime.engine, e).queued_job for e in ids} == {job.id for job in jobs}
    run_jobs(runtime)
    assert [event(runtime.engine, e).status for e in ids] == ["processed"] * 3


def test_concurrent_receipts_are_stored_in_shared_batches_with_exact_answers(client, runtime):
    orders = [next(_orders) for _ in range(30)]
    payloads = [htx_update(o, "filled", "1", "10", "0") for o in orders]
    payloads += [payloads[i] for i in range(0, 30, 3)]  # 10 duplicates, sent concurrently
    random.Random(7).shuffle(payloads)
    with ThreadPoolExecutor(max_workers=16) as pool:  # requests in flight together, one loop
        answers = list(pool.map(lambda p: (p["order-id"], post_htx(client, p)), payloads))

    by_order: dict[object, list[dict[str, str]]] = {}
    for order, response in answers:
        assert response.status_code == 200, response.text
        by_order.setdefault(order, []).append(response.json())
    for replies in by_order.values():
        assert sorted(r["status"] for r in replies)[0] == "accepted"
        assert [r["status"] for r in replies].count("accepted") == 1
        assert len({r["event_id"] for r in replies}) == 1
    assert count(runtime.engine, InboundEvent) == 30
    jobs = runtime.events.queue.get_jobs()
    queued = [e for job in jobs for e in job.args[0]]
    assert sorted(queued) == sorted(r[0]["event_id"] for r in by_order.values())
    assert len(jobs) < 30  # receipts in flight together shared a flush
    run_jobs(runtime)
    assert count(runtime.engine, InboundEvent, col(InboundEvent.status) == "processed") == 30


def test_receipts_within_the_linger_share_one_job_queued_when_it_ends(config_path, env, runtime):
    config_path.write_text(
        config_path.read_text().replace("enqueue_linger_ms = 0", "enqueue_linger_ms = 1000")
    )
    lingering = load_settings(env)
    assert lingering.processing.enqueue_linger_ms == 1000
    with TestClient(create_app(lingering), client=("127.0.0.1", 50000)) as slow:
        ids = [
            post_htx(slow, htx_update(next(_orders), "filled", "1", "10", "0")).json()["event_id"]
            for _ in range(3)
        ]
        assert runtime.events.queue.count == 0  # answered (stored), the job still gathering
        deadline = time.monotonic() + 5
        while runtime.events.queue.count == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        jobs = runtime.events.queue.get_jobs()
        assert [job.args[0] for job in jobs] == [ids]
        assert {event(runtime.engine, e).queued_job for e in ids} == {jobs[0].id}
        later = post_htx(slow, htx_update(next(_orders), "filled", "1", "10", "0")).json()
    # Shutting the web process down queues the job it was still gathering.
    assert [job.args[0] for job in runtime.events.queue.get_jobs()][-1] == [later["event_id"]]
    run_jobs(runtime)
    assert {event(runtime.engine, e).status for e in [*ids, later["event_id"]]} == {"processed"}


def test_a_failed_first_event_leaves_no_aggregate_for_the_next_one(client, runtime):
    order = next(_orders)
    unknown = {**htx_update(order, "partial-filled", "1", "10", "0"), "symbol": "zzzqqq"}
    valid = htx_update(order, "filled", "2", "20", "0")
    ids = _store(client, runtime, [unknown, valid])

    assert process_events(ids) == {"dead": 1, "processed": 1}
    # As one at a time: the failed event's order row was rolled back with it, so the order
    # is the valid event's (its symbol), not a leftover of the failed one.
    assert _order(runtime.engine, order) == ("filled", 2, 20, 0)
    with Session(runtime.engine) as session:
        row = session.execute(select(Order).where(Order.order_id == str(order))).scalar_one()
    assert row.symbol == "btcusdt"
