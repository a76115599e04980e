"""Retention: the sweeper removes what is old enough, a small batch at a time.

``[retention]`` says what and when: the raw bodies of applied and discarded events after
``body_days`` (the event row, its hash, receipt time, actions and ledger effects stay), event
attempts and signal delivery logs after ``attempts_days``, and rejected callbacks still
``rejected`` after ``rejected_days`` (rows and all: they never touched the ledger). Each batch
is one short transaction of ``batch_size`` rows found through an index, oldest first, followed
by a pause of ``pause_ms``: no lock is held for long and receipts and workers go first. A pass
goes on until nothing is old enough, then the next one starts ``interval_s`` later.
``hookledger events prune`` is the one-off form of the first part.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from app import metrics
from app.settings import RetentionConfig
from app.store import ops
from app.store import rejected as rejected_store
from app.store.db import utcnow

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Removed:
    """What one pass removed."""

    bodies: int = 0
    attempts: int = 0
    deliveries: int = 0
    rejected: int = 0

    def __bool__(self) -> bool:
        return bool(self.bodies or self.attempts or self.deliveries or self.rejected)


def run_pass(
    engine: Engine, cfg: RetentionConfig, *, stop: threading.Event | None = None
) -> Removed:
    """Remove everything old enough, batch by batch, until nothing is left or ``stop`` is set."""
    stop = stop or threading.Event()
    now = utcnow()
    removed = Removed()
    pause = cfg.pause_ms / 1000
    if cfg.body_days > 0:
        cutoff = ops.days_ago(now, cfg.body_days)
        while not stop.is_set():
            with Session(engine) as session, session.begin():
                batch = ops.prunable(session, older_than=cutoff, limit=cfg.batch_size)
                pruned = ops.prune(session, batch, now=now)
            removed.bodies += pruned
            metrics.child(metrics.RETENTION_REMOVED, "bodies").inc(pruned)
            if len(batch) < cfg.batch_size or stop.wait(pause):
                break
    if cfg.attempts_days > 0:
        cutoff = ops.days_ago(now, cfg.attempts_days)
        while not stop.is_set():
            with Session(engine) as session, session.begin():
                attempts, deliveries = ops.delete_attempts(
                    session, older_than=cutoff, limit=cfg.batch_size
                )
            removed.attempts += attempts
            removed.deliveries += deliveries
            metrics.child(metrics.RETENTION_REMOVED, "attempts").inc(attempts)
            metrics.child(metrics.RETENTION_REMOVED, "deliveries").inc(deliveries)
            if max(attempts, deliveries) < cfg.batch_size or stop.wait(pause):
                break
    if cfg.rejected_days > 0:
        cutoff = ops.days_ago(now, cfg.rejected_days)
        while not stop.is_set():
            with Session(engine) as session, session.begin():
                batch = rejected_store.expired(session, older_than=cutoff, limit=cfg.batch_size)
                deleted = rejected_store.delete_events(session, batch)
            removed.rejected += deleted
            metrics.child(metrics.RETENTION_REMOVED, "rejected").inc(deleted)
            if len(batch) < cfg.batch_size or stop.wait(pause):
                break
    return removed


def run_forever(engine: Engine, cfg: RetentionConfig, stop: threading.Event) -> None:
    """Run a pass every ``interval_s`` until ``stop`` is set; outages are logged, not fatal."""
    if cfg.body_days == 0 and cfg.attempts_days == 0 and cfg.rejected_days == 0:
        log.info("retention.off")
        return
    log.info(
        "retention.started",
        body_days=cfg.body_days,
        attempts_days=cfg.attempts_days,
        rejected_days=cfg.rejected_days,
        interval_s=cfg.interval_s,
    )
    while not stop.is_set():
        try:
            removed = run_pass(engine, cfg, stop=stop)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("retention.failed", error=type(exc).__name__)
        else:
            if removed:
                log.info(
                    "retention.removed",
                    bodies=removed.bodies,
                    attempts=removed.attempts,
                    deliveries=removed.deliveries,
                    rejected=removed.rejected,
                )
        stop.wait(cfg.interval_s)
