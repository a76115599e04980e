"""The sweep: re-queue stored events that never finished.

It finds, in SQL, pending events whose retry is due or whose job is older than
``stale_after_s``, skips those whose job still waits in the queue, and makes a job for the rest.
This repairs every way a job can be lost: Redis flushed or restarted without persistence, a
worker killed mid-job, Redis down when the event was received.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from app.store import events as event_store
from app.store.queue import enqueue_event, job_waiting, make_queue
from workers.jobs import utcnow
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SweepResult:
    due: int
    requeued: list[str]
    still_queued: int


def sweep_once(runtime: Runtime, *, stale_after_s: float | None = None) -> SweepResult:
    """Re-queue due events once; ``stale_after_s`` overrides the configured staleness."""
    cfg = runtime.settings.processing
    stale = cfg.stale_after_s if stale_after_s is None else stale_after_s
    now = utcnow()
    with Session(runtime.engine) as session:
        due = event_store.due_for_sweep(
            session, now=now, stale_after_s=stale, limit=cfg.sweep_batch
        )
    queue = make_queue(runtime.redis, cfg.queue)
    requeued: list[str] = []
    waiting = 0
    for event_id in due:
        if job_waiting(runtime.redis, event_id):
            waiting += 1
            continue
        enqueue_event(queue, event_id, timeout_s=cfg.job_timeout_s)
        requeued.append(event_id)
    with Session(runtime.engine) as session, session.begin():
        event_store.mark_enqueued(session, requeued, now=now)
    if requeued:
        log.info("sweep.requeued", count=len(requeued), still_queued=waiting)
    return SweepResult(due=len(due), requeued=requeued, still_queued=waiting)


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
