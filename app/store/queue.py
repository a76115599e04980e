"""The RQ adapter: one queue, JSON serializer, one job per event with a stable id.

The job id is ``hl-<event id>``, so the sweep can ask RQ whether an event's job still waits in
the queue before making another one. Jobs keep no result (``result_ttl=0``): SQL holds the
outcome, so RQ's registries never grow with processed events.
"""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

PROCESS_EVENT = "workers.jobs.process_event"
FAILURE_TTL_S = 7 * 86_400


def job_id(event_id: str) -> str:
    return f"hl-{event_id}"


def make_queue(connection: Redis, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


def enqueue_event(queue: Queue, event_id: str, *, timeout_s: int) -> None:
    """Queue the processing job of ``event_id``. Raises redis errors to the caller."""
    queue.enqueue_call(
        PROCESS_EVENT,
        args=(event_id,),
        job_id=job_id(event_id),
        timeout=timeout_s,
        result_ttl=0,
        failure_ttl=FAILURE_TTL_S,
        description=f"process {event_id}",
    )


def job_waiting(connection: Redis, event_id: str) -> bool:
    """True when the event's job exists and is still queued (so no second job is needed)."""
    try:
        job = Job.fetch(job_id(event_id), connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in (
        JobStatus.QUEUED,
        JobStatus.DEFERRED,
        JobStatus.SCHEDULED,
    )
