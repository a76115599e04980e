"""The RQ adapter: one queue, JSON serializer, jobs with ids SQL can name.

Receipts and the sweep queue *batch* jobs (``process_events``, id ``hl-b-<first event id>``):
one job for every event stored together, so RQ's per-job cost is paid once per batch. Each
event row records the job it was queued under (``queued_job``), so the sweep can ask RQ whether
that job still waits before making another one. Replays queue a single-event job, id
``hl-<event id>``. Jobs keep no result (``result_ttl=0``): SQL holds the
outcome, so RQ's registries never grow with processed events.

RQ's own retries (``Retry`` with ``processing.retry_delays_s``) only matter when a job cannot
reach the database at all, so that it cannot record its failure in SQL; every other failure is
recorded and retried from SQL. Such a job's final failure is turned into a ``dead`` event by
the sweep once the database is back.
"""

from __future__ import annotations

import os
from typing import Protocol

import structlog
from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.utils import current_timestamp

log = structlog.get_logger(__name__)

PROCESS_EVENT = "workers.jobs.process_event"
PROCESS_EVENTS = "workers.jobs.process_events"
DELIVER_SIGNAL = "workers.delivery.deliver_signal"
FAILURE_TTL_S = 7 * 86_400
WAITING = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)

# Take waiting jobs off the queue list, atomically: an id that LREM removes belongs to the
# caller, and its job hash is deleted at once. If the caller dies before it commits their events,
# the sweep finds those events pending under a job that no longer exists and queues them again
# (after ``stale_after_s``), as for any lost job.
_TAKE = """
local taken = {}
for _, id in ipairs(ARGV) do
  if redis.call('LREM', KEYS[1], 1, id) == 1 then
    redis.call('DEL', KEYS[2] .. id)
    taken[#taken + 1] = id
  end
end
return taken
"""


def job_id(event_id: str) -> str:
    return f"hl-{event_id}"


def signal_job_id(signal_id: int) -> str:
    return f"hl-sig-{signal_id}"


def batch_job_id(first_event_id: str) -> str:
    """A new, unique id for a batch job starting at ``first_event_id``."""
    return f"hl-b-{first_event_id}-{os.urandom(3).hex()}"


def event_id_of(job: str) -> str | None:
    return job[3:] if job.startswith("hl-evt_") else None


def is_batch(job: str) -> bool:
    return job.startswith("hl-b-")


def make_queue(connection: Redis, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


class QueueSettings(Protocol):
    """What the queue needs of the processing settings (``ProcessingConfig`` has it)."""

    @property
    def queue(self) -> str: ...
    @property
    def job_timeout_s(self) -> int: ...
    @property
    def retry_delays_s(self) -> tuple[float, ...]: ...


class EventQueue:
    """Makes and inspects the processing jobs of events."""

    def __init__(self, connection: Redis, cfg: QueueSettings) -> None:
        self.connection = connection
        self.queue = make_queue(connection, cfg.queue)
        self.failed = FailedJobRegistry(queue=self.queue)
        self._timeout_s = cfg.job_timeout_s
        delays = [int(d) for d in cfg.retry_delays_s]
        self._retry = Retry(max=len(delays), interval=delays) if delays else None
        self._take = connection.register_script(_TAKE)

    def enqueue(self, event_id: str, *, again: bool = False) -> None:
        """Queue the job of ``event_id``; ``again`` also clears an earlier failed job of it.
        Raises redis errors to the caller."""
        self._enqueue(PROCESS_EVENT, event_id, job_id(event_id), retry=self._retry, again=again)

    def enqueue_batch(
        self, event_ids: list[str], name: str, *, pipeline: Pipeline | None = None
    ) -> None:
        """Queue job ``name`` (from ``batch_job_id``) applying ``event_ids``. With ``pipeline``,
        the job is written when the caller executes it. Raises redis errors to the caller."""
        self._enqueue(
            PROCESS_EVENTS,
            event_ids,
            name,
            retry=self._retry,
            again=False,
            pipeline=pipeline,
            description=f"process_events {len(event_ids)} from {event_ids[0]}",
        )

    def first_attempt(self, job: Job) -> bool:
        """True while ``job`` has not been retried by RQ (its retries are all left)."""
        return job.retries_left == (self._retry.max if self._retry else None)

    def take_waiting_batches(self, room: int, *, scan: int = 64) -> dict[str, list[str]]:
        """Take whole waiting batch jobs off the queue, oldest first, up to ``room`` events in
        all; return each taken job's name and event ids. The jobs no longer exist afterwards.
        A worker calls this when it starts a batch, so under load the small jobs that piled up
        behind it are applied in its one transaction instead of one after another (see
        ``workers.jobs.with_waiting``). Only jobs on their first attempt are taken: a retry of
        RQ's keeps its own count of attempts. Raises redis errors to the caller."""
        if room <= 0:
            return {}
        waiting = [_text(n) for n in self.connection.lrange(self.queue.key, 0, scan - 1)]
        names = [n for n in waiting if is_batch(n)]
        if not names:
            return {}
        chosen: dict[str, list[str]] = {}
        for job in Job.fetch_many(names, connection=self.connection, serializer=JSONSerializer):
            if job is None:
                continue
            try:
                if job.func_name != PROCESS_EVENTS or not self.first_attempt(job) or job.meta:
                    continue
                ids = job.args[0]
            except Exception as exc:  # noqa: BLE001 - an unreadable job is left for its worker
                log.warning("queue.unreadable_job", job=job.id, error=type(exc).__name__)
                continue
            if isinstance(ids, list) and len(ids) <= room:
                chosen[job.id] = [str(e) for e in ids]
                room -= len(ids)
        if not chosen:
            return {}
        taken = self._take(keys=[self.queue.key, Job.redis_job_namespace_prefix], args=list(chosen))
        return {_text(name): chosen[_text(name)] for name in taken}

    def enqueue_signal(self, signal_id: int) -> None:
        """Queue the delivery job of a signal (same queue, so the same workers deliver)."""
        self._enqueue(DELIVER_SIGNAL, signal_id, signal_job_id(signal_id), retry=None, again=True)

    def _enqueue(
        self,
        func: str,
        arg: str | int | list[str],
        name: str,
        *,
        retry: Retry | None,
        again: bool,
        pipeline: Pipeline | None = None,
        description: str | None = None,
    ) -> None:
        if again:
            self.failed.remove(name)
        self.queue.enqueue_call(
            func,
            args=(arg,),
            job_id=name,
            timeout=self._timeout_s,
            result_ttl=0,
            failure_ttl=FAILURE_TTL_S,
            description=description or f"{func.rsplit('.', 1)[-1]} {arg}",
            retry=retry,
            pipeline=pipeline,
        )

    def signal_waiting(self, signal_id: int) -> bool:
        return self.job_waiting(signal_job_id(signal_id))

    def move_scheduled(self) -> int:
        """Put RQ retries whose time has come back into the queue (what RQ's scheduler does,
        in this process and without forking). Returns how many moved; 0 if another process
        holds the scheduler lock."""
        scheduler = RQScheduler([self.queue], connection=self.connection, serializer=JSONSerializer)
        try:
            if not scheduler.acquire_locks():
                return 0
            try:
                due = len(
                    self.queue.scheduled_job_registry.get_jobs_to_schedule(current_timestamp())
                )
                if due:
                    scheduler.enqueue_scheduled_jobs()
                return due
            finally:
                scheduler.release_locks()
        finally:
            # RQScheduler opens a connection pool of its own: close it, or every sweep leaves
            # a Redis socket for the garbage collector.
            scheduler.connection.connection_pool.disconnect()

    def fetch(self, event_id: str) -> Job | None:
        return self.fetch_job(job_id(event_id))

    def fetch_job(self, name: str) -> Job | None:
        try:
            return Job.fetch(name, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError:
            return None

    def job_waiting(self, name: str) -> bool:
        """True when job ``name`` exists and still waits (queued, deferred or scheduled).

        A job that says ``queued`` but is not in the queue's list was popped by a worker
        (RQ moves it to an intermediate list) that died before it marked the job started: it
        waits for nobody. RQ's own maintenance finds it only much later, so it counts as lost.
        """
        job = self.fetch_job(name)
        if job is None:
            return False
        status = job.get_status(refresh=False)
        if status == JobStatus.QUEUED:
            return self.connection.lpos(self.queue.key, name) is not None
        return status in WAITING


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
