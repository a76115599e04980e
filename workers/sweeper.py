"""The sweep: re-queue stored events that never finished, and keep RQ consistent with SQL.

It finds, in SQL, pending events whose retry is due or whose job is older than
``stale_after_s``, skips those whose job still waits in the queue, and makes a job for the rest.
This repairs every way a job can be lost: Redis flushed or restarted without persistence, a
worker killed mid-job, Redis down when the event was received.

It then walks RQ's failed-job registry, whose entries SQL decides about: a job that gave up
because the database was unreachable through all its retries makes its event ``dead`` (SQL is
the dead-letter store, not RQ); a failed job of an event that is final in SQL is deleted; the
rest (jobs abandoned by a killed worker) are re-made by the staleness rule above.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from app.store import events as event_store
from app.store import signals as signal_store
from app.store.db import read_only
from app.store.models import InboundEvent
from app.store.queue import event_id_of
from workers.delivery import IN_FLIGHT_MARGIN_S
from workers.jobs import mark_dead_after_outage, utcnow
from workers.runtime import Runtime

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
    lost = [event_id for event_id in due if not runtime.events.waiting(event_id)]
    # Mark first, then queue: a job that runs and fails at once then schedules its own next
    # retry after this mark instead of having it wiped. Events whose job still waits are
    # marked too, so a long backlog rotates instead of hiding lost jobs behind it.
    with Session(runtime.engine) as session, session.begin():
        event_store.mark_enqueued(session, due, now=now)
    for event_id in lost:
        runtime.events.enqueue(event_id, again=True)
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
    registry = runtime.events.failed
    ids = {e: j for j in registry.get_job_ids() if (e := event_id_of(j))}
    if not ids:
        return [], 0
    with Session(read_only(runtime.engine)) as session:
        rows = session.execute(
            select(col(InboundEvent.id), col(InboundEvent.status)).where(
                col(InboundEvent.id).in_(list(ids))
            )
        )
        statuses = {event_id: status for event_id, status in rows}
    dead: list[str] = []
    cleared = 0
    for event_id, job_name in ids.items():
        status = statuses.get(event_id)
        job = runtime.events.fetch(event_id)
        if status is None or status in event_store.FINAL or job is None:
            registry.remove(job_name, delete_job=job is not None)
            cleared += 1
            continue
        if job.meta.get("db_unavailable") and not job.retries_left:
            error = str(job.meta.get("error", "database unavailable"))
            attempts = int(job.meta.get("attempts", 1))
            marked = mark_dead_after_outage(
                runtime, event_id, error=error, attempts=attempts, job_enqueued_at=job.enqueued_at
            )
            if marked:
                dead.append(event_id)
            # Only the job we judged is deleted; a newer job under this id is left alone.
            registry.remove(job_name, delete_job=marked)
    return dead, cleared


def run_forever(runtime: Runtime, *, interval_s: float | None = None) -> None:
    """Sweep every ``interval_s`` seconds until interrupted; outages are logged, not fatal."""
    interval = interval_s or runtime.settings.processing.sweep_interval_s
    log.info("sweep.started", interval_s=interval)
    while True:
        try:
            sweep_once(runtime)
        except (SQLAlchemyError, RedisError, OSError) as exc:
            log.warning("sweep.failed", error=type(exc).__name__)
        time.sleep(interval)
