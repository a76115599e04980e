"""Adaptive batching: a batch job takes the batch jobs waiting behind it off the queue and
applies their events in its own transaction; a taken job that is never committed is repaired
by the sweep."""

from __future__ import annotations

import itertools

from rq.job import Job
from rq.serializers import JSONSerializer
from sqlmodel import Session

from app.store.db import utcnow
from app.store.events import mark_enqueued
from app.store.models import InboundEvent
from tests.integration.test_ledger_worked_examples import assert_ledger_verifies
from tests.support import count, event, htx_update, post_htx
from workers.jobs import mark_dead_after_outage
from workers.runtime import InProcessWorker
from workers.sweeper import sweep_once

_orders = itertools.count(7000)


def _receive(client, n: int) -> list[str]:
    """``n`` fills of new orders; the test config queues one job per receipt."""
    return [
        post_htx(client, htx_update(next(_orders), "filled", "0.01", "420", "0.00002")).json()[
            "event_id"
        ]
        for _ in range(n)
    ]


def _waiting(runtime) -> list[str]:
    return [j.decode() for j in runtime.redis.lrange(runtime.events.queue.key, 0, -1)]


def _one_job(runtime) -> None:
    InProcessWorker(
        [runtime.events.queue], connection=runtime.redis, serializer=JSONSerializer
    ).work(burst=True, max_jobs=1, logging_level="WARNING")


def test_one_job_applies_the_jobs_waiting_behind_it(client, runtime):
    ids = _receive(client, 5)
    jobs = _waiting(runtime)
    assert len(jobs) == 5

    _one_job(runtime)

    assert _waiting(runtime) == []
    assert not any(Job.exists(name, connection=runtime.redis) for name in jobs)
    assert {event(runtime.engine, e).status for e in ids} == {"processed"}
    assert count(runtime.engine, InboundEvent, InboundEvent.status == "processed") == 5
    assert_ledger_verifies(runtime)


def test_only_whole_jobs_are_taken_up_to_the_room_left(client, runtime):
    _receive(client, 4)
    jobs = _waiting(runtime)

    taken = runtime.events.take_waiting_batches(2)

    assert list(taken) == jobs[:2]  # two one-event jobs: the first two waiting
    assert _waiting(runtime) == jobs[2:]
    assert runtime.events.take_waiting_batches(0) == {}
    assert _waiting(runtime) == jobs[2:]


def test_events_of_a_taken_job_that_never_commits_are_queued_again_by_the_sweep(client, runtime):
    """The worker that took them died before its COMMIT: their job is gone, the events are
    still pending in SQL, and the sweep makes a job for them."""
    ids = _receive(client, 3)
    taken = runtime.events.take_waiting_batches(10)
    assert sorted(e for events in taken.values() for e in events) == sorted(ids)
    assert _waiting(runtime) == []

    result = sweep_once(runtime, stale_after_s=0)

    assert sorted(result.requeued) == sorted(ids)
    InProcessWorker(
        [runtime.events.queue], connection=runtime.redis, serializer=JSONSerializer
    ).work(burst=True, logging_level="WARNING")
    assert {event(runtime.engine, e).status for e in ids} == {"processed"}
    assert_ledger_verifies(runtime)


def test_other_jobs_are_left_in_the_queue(client, runtime):
    """Only batch jobs are taken: a replay's single-event job stays for its own worker."""
    (first,) = _receive(client, 1)
    runtime.events.queue.empty()
    runtime.events.enqueue(first)  # a replay's job, hl-<event id>
    single = _waiting(runtime)

    assert runtime.events.take_waiting_batches(10) == {}
    assert _waiting(runtime) == single


def test_a_retried_job_is_not_taken_and_a_retry_takes_nothing(client, runtime):
    """RQ's retry of a job (the database was down) keeps its own count of attempts: it is not
    folded into another job, and it does not fold others into itself."""
    _receive(client, 3)
    first, second, third = _waiting(runtime)
    job = Job.fetch(second, connection=runtime.redis, serializer=JSONSerializer)
    job.retries_left = (job.retries_left or 1) - 1
    job.save()

    assert list(runtime.events.take_waiting_batches(10)) == [first, third]
    assert _waiting(runtime) == [second]

    later = _receive(client, 2)
    _one_job(runtime)  # the retry itself, with two fresh jobs waiting behind it

    assert len(_waiting(runtime)) == 2  # it took neither
    assert {event(runtime.engine, e).status for e in later} == {"received"}


def test_an_outage_makes_dead_only_the_events_of_the_failed_job_and_those_it_took(client, runtime):
    """The sweep judges a job RQ gave up on (database unreachable through every retry): its own
    events and those of the jobs it took are made dead; an event since queued under another
    job, even one that no longer exists (it ran and scheduled a retry in SQL), is not."""
    own, taken, other = _receive(client, 3)
    names = {e: event(runtime.engine, e).queued_job for e in (own, taken, other)}
    with Session(runtime.engine) as session, session.begin():
        mark_enqueued(session, [other], now=utcnow(), job="hl-b-gone-000000")

    def judge(event_id: str) -> bool:
        return mark_dead_after_outage(
            runtime,
            event_id,
            error="OperationalError: connection refused",
            attempts=6,
            job_name=names[own],
            job_enqueued_at=None,
            took=[names[taken]],
        )

    assert [judge(e) for e in (own, taken, other)] == [True, True, False]
    assert [event(runtime.engine, e).status for e in (own, taken, other)] == [
        "dead",
        "dead",
        "received",
    ]
