"""Retention: the sweeper removes old raw bodies, attempts and delivery logs by itself, in
small batches, and nothing else: events, hashes, actions and the ledger stay."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlmodel import Session, col

from app.services import retention
from app.settings import RetentionConfig
from app.store.db import utcnow
from app.store.models import EventAttempt, InboundEvent, Signal, SignalAttempt, table_of
from tests.processes import spawn, stop, wait_until
from tests.support import count, hookledger, htx_update, post_htx, run_jobs

OLD = timedelta(days=3)


def _age(engine, event_ids: list[str]) -> None:
    """Make ``event_ids`` (and their attempts) three days older."""
    with engine.begin() as conn:
        for table, column in (("inbound_events", "received_at"), ("event_attempts", "finished_at")):
            key = "id" if table == "inbound_events" else "event_id"
            for event_id in event_ids:
                conn.execute(
                    text(f"UPDATE {table} SET {column} = :at WHERE {key} = :id"),  # noqa: S608
                    {"at": utcnow() - OLD, "id": event_id},
                )


def _received(client, runtime, orders: range) -> list[str]:
    ids = [
        post_htx(client, htx_update(n, "filled", "1", "10", "0")).json()["event_id"] for n in orders
    ]
    run_jobs(runtime)
    return ids


def _bodies(engine) -> dict[str, bytes]:
    with Session(engine) as session:
        rows = session.execute(select(InboundEvent.id, InboundEvent.body)).all()
    return {event_id: body for event_id, body in rows}


def test_a_pass_removes_only_what_is_old_enough_in_batches(client, runtime, env):
    old = _received(client, runtime, range(1, 6))
    young = _received(client, runtime, range(6, 8))
    # An old event not applied yet (received, retrying or dead) keeps its body: it is needed.
    pending = post_htx(client, htx_update(9, "filled", "1", "10", "0")).json()["event_id"]
    _age(runtime.engine, [*old, pending])
    with runtime.engine.begin() as conn:
        signal_id = conn.execute(
            table_of(Signal).insert().returning(table_of(Signal).c.id),
            {
                "event_id": young[0],
                "rule": "r",
                "target": "t",
                "status": "delivered",
                "payload": "{}",
                "outcome_unknown": False,
                "attempts": 2,
                "retry_base": 0,
                "created_at": utcnow(),
            },
        ).scalar_one()
        conn.execute(
            table_of(SignalAttempt).insert(),
            [
                {"signal_id": signal_id, "attempt": 1, "at": utcnow() - OLD, "outcome": "retrying"},
                {"signal_id": signal_id, "attempt": 2, "at": utcnow(), "outcome": "delivered"},
            ],
        )
    attempts_before = count(runtime.engine, EventAttempt)
    cfg = RetentionConfig(body_days=1, attempts_days=1, batch_size=2, pause_ms=0)

    removed = retention.run_pass(runtime.engine, cfg)

    assert removed.bodies == len(old)
    bodies = _bodies(runtime.engine)
    assert [event_id for event_id in old if bodies[event_id] == b""] == old
    assert all(bodies[event_id] for event_id in [pending, *young])
    assert removed.attempts == len(old)  # one attempt each
    assert removed.deliveries == 1
    assert count(runtime.engine, SignalAttempt) == 1  # the young one
    assert count(runtime.engine, EventAttempt) == attempts_before - len(old)
    assert count(runtime.engine, InboundEvent) == len(old) + len(young) + 1
    assert retention.run_pass(runtime.engine, cfg).bodies == 0  # nothing left
    verify = hookledger(env, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_the_sweeper_applies_retention_unattended(client, runtime, env, config_path):
    old = _received(client, runtime, range(1, 4))
    _age(runtime.engine, old)
    with config_path.open("a") as config:
        config.write("\n[retention]\nbody_days = 1\nattempts_days = 1\nbatch_size = 2\n")
    sweeper = spawn(["sweeper"], env)
    try:

        def pruned() -> bool:
            with Session(runtime.engine) as session:
                left = session.execute(
                    select(func.count())
                    .select_from(InboundEvent)
                    .where(col(InboundEvent.body_pruned_at).is_(None))
                ).scalar_one()
            return left == 0 and count(runtime.engine, EventAttempt) == 0

        wait_until(pruned, 60, "the sweeper's retention pass")
    finally:
        stop(sweeper, signal.SIGTERM)
    assert sweeper.returncode == 0
