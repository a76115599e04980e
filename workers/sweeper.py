"""The sweep: re-queue stored events that never finished, and keep RQ consistent with SQL.

It finds, in SQL, pending events whose retry is due or whose job is older than
``stale_after_s``, skips those whose job still waits in the queue, and makes a job for the rest.
This repairs every way a job can be lost: Redis flushed or restarted without persistence, a
worker killed mid-job, Redis down when the event was received.

It then walks RQ's failed-job registry, whose entries SQL decides about: a job that gave up
because the database was unreachable through all its retries makes its event ``dead`` (SQL is
the dead-letter store, not RQ); a failed job of an event that is final in SQL is deleted; the
rest (jobs abandoned by a killed worker) are re-made by the staleness rule above.

Beside the sweep, in a thread of its own, retention removes what ``[retention]`` says is old
enough (``app.services.retention``); in another, sources with ``[sources.NAME.pull]`` ask their
counterparts about their gaps every ``pull.interval_s`` (``app.services.pull``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from redis.exceptions import RedisError
from rq.job import Job
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from app.runtime import Runtime
from app.services import pull, retention
from app.store import events as event_store
from app.store import signals as signal_store
from app.store.db import read_only, utcnow
from app.store.models import InboundEvent
from app.store.queue import batch_job_id, event_id_of, is_batch, job_id
from workers.delivery import IN_FLIGHT_MARGIN_S
from workers.jobs import mark_dead_after_outage

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SweepResult:
    due: int
    requeued: list[str]
    still_queued: int
    dead: list[str] = field(default_factory=list)
    cleared: int = 0


def sweep_once(runtime: Runtime, *, stale_after_s: float | None = None) -> SweepResult:
    """Re-queue due events once and settle RQ's failed jobs; ``stale_after_s`` overrides the
    configured staleness."""
    cfg = runtime.settings.processing
    runtime.events.move_scheduled()
    dead, cleared = _settle_failed_jobs(runtime)
    stale = cfg.stale_after_s if stale_after_s is None else stale_after_s
    now = utcnow()
    with Session(read_only(runtime.engine)) as session:
        due = event_store.due_for_sweep(
            session, now=now, stale_after_s=stale, limit=cfg.sweep_batch
        )
    # An event with no recorded job was queued alone (a replay): its job is hl-<id>.
    named = [(event_id, job or job_id(event_id)) for event_id, job in due]
    waiting_jobs = {job for job in {job for _, job in named} if runtime.events.job_waiting(job)}
    lost = [e for e, job in named if job not in waiting_jobs]
    still = [e for e, job in named if job in waiting_jobs]
    # Mark first, then queue: a job that runs and fails at once then schedules its own next
    # retry after this mark instead of having it wiped. Events whose job still waits are
    # marked too, so a long backlog rotates instead of hiding lost jobs behind it.
    batches = [lost[i : i + cfg.batch_size] for i in range(0, len(lost), cfg.batch_size)]
    names = [batch_job_id(batch[0]) for batch in batches]
    with Session(runtime.engine) as session, session.begin():
        event_store.lock_ids(session, sorted(e for e, _ in due))
        event_store.mark_enqueued(session, still, now=now, keep_job=True)
        for batch, name in zip(batches, names, strict=True):
            event_store.mark_enqueued(session, batch, now=now, job=name)
    for batch, name in zip(batches, names, strict=True):
        runtime.events.enqueue_batch(batch, name)
    waiting = len(due) - len(lost)
    _sweep_signals(runtime, now=now, stale_after_s=stale)
    if lost or dead:
        log.info("sweep.done", requeued=len(lost), dead=len(dead), still_queued=waiting)
    return SweepResult(len(due), lost, waiting, dead, cleared)


def _sweep_signals(runtime: Runtime, *, now: datetime, stale_after_s: float) -> list[int]:
    """Queue signals whose retry is due, whose job was lost, or whose send was abandoned."""
    targets = runtime.settings.file.targets.values()
    # The quickest target's window; the job itself waits out a slower target's (in_flight).
    shortest = min((t.connect_timeout_s + t.read_timeout_s for t in targets), default=0.0)
    with Session(read_only(runtime.engine)) as session:
        due = signal_store.due(
            session,
            now=now,
            stale_after_s=stale_after_s,
            sending_stale_s=shortest + IN_FLIGHT_MARGIN_S,
            limit=runtime.settings.processing.sweep_batch,
        )
    lost = [s for s in due if not runtime.events.signal_waiting(s)]
    with Session(runtime.engine) as session, session.begin():
        signal_store.mark_enqueued(session, due, now=now)
    for signal_id in lost:
        runtime.events.enqueue_signal(signal_id)
    return lost


def _settle_failed_jobs(runtime: Runtime) -> tuple[list[str], int]:
    """Judge RQ's failed event jobs by what SQL says of their events."""
    registry = runtime.events.failed
    jobs: dict[str, tuple[Job | None, list[str]]] = {}
    for name in registry.get_job_ids():
        if (single := event_id_of(name)) is not None:
            jobs[name] = (runtime.events.fetch(single), [single])
        elif is_batch(name):
            job = runtime.events.fetch_job(name)
            jobs[name] = (job, list(job.args[0]) if job is not None and job.args else [])
    if not jobs:
        return [], 0
    every = sorted({event_id for _, ids in jobs.values() for event_id in ids})
    with Session(read_only(runtime.engine)) as session:
        rows = session.execute(
            select(col(InboundEvent.id), col(InboundEvent.status)).where(
                col(InboundEvent.id).in_(every)
            )
        )
        statuses = {event_id: status for event_id, status in rows}
    dead: list[str] = []
    cleared = 0
    for name, (job, ids) in jobs.items():
        pending = [e for e in ids if statuses.get(e) not in (None, *event_store.FINAL)]
        if job is None or not pending:
            registry.remove(name, delete_job=job is not None)
            cleared += 1
            continue
        if job.meta.get("db_unavailable") and not job.retries_left:
            error = str(job.meta.get("error", "database unavailable"))
            attempts = int(job.meta.get("attempts", 1))
            marked = [
                event_id
                for event_id in pending
                if mark_dead_after_outage(
                    runtime,
                    event_id,
                    error=error,
                    attempts=attempts,
                    job_name=name,
                    job_enqueued_at=job.enqueued_at,
                    took=job.meta.get("took", ()),
                )
            ]
            dead.extend(marked)
            # Only the job we judged is deleted; a newer job under this id is left alone.
            registry.remove(name, delete_job=bool(marked) or is_batch(name))
    return dead, cleared


def run_forever(
    runtime: Runtime, *, interval_s: float | None = None, stop: threading.Event | None = None
) -> None:
    """Sweep every ``interval_s`` seconds until ``stop`` is set (a sweep under way finishes
    first) or the process is interrupted; outages are logged, not fatal."""
    interval = interval_s or runtime.settings.processing.sweep_interval_s
    stop = stop or threading.Event()
    # Retention runs beside the sweep, in its own thread: a long pass never delays a retry.
    keeper = threading.Thread(
        target=retention.run_forever,
        args=(runtime.engine, runtime.settings.retention, stop),
        name="retention",
        daemon=True,
    )
    keeper.start()
    # Pulls too: a slow counterpart never delays a sweep.
    puller = threading.Thread(
        target=pull.run_forever, args=(runtime, stop), name="pull", daemon=True
    )
    puller.start()
    log.info("sweep.started", interval_s=interval)
    while not stop.is_set():
        try:
            sweep_once(runtime)
        except (SQLAlchemyError, RedisError, OSError) as exc:
            log.warning("sweep.failed", error=type(exc).__name__)
        stop.wait(interval)
    keeper.join(timeout=30)  # a batch under way commits; the pass stops at the next pause
    puller.join(timeout=30)  # asks under way end within their timeouts
    log.info("sweep.stopped")
