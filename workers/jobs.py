"""RQ job functions. Plain, importable, JSON-able arguments (an event id), no objects.

``process_event`` applies one stored event exactly once: it locks the event row, returns at
once if the event is already final, applies the effect and marks the event in the *same*
transaction. A failure rolls all of it back and is recorded in a second transaction: the event
goes ``retrying`` with the next delay of ``processing.retry_delays_s``, or ``dead`` when the
delays are used up or the error is permanent. The job itself then ends normally, so RQ's failed
registry only ever holds jobs whose failure could not even be recorded (database down); the
sweep re-queues those events from SQL, the source of truth.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Inexact, InvalidOperation, Overflow, Underflow

import structlog
from redis.exceptions import RedisError
from rq import get_current_job
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session

from app.domain.errors import HookError, PermanentError
from app.domain.money import exact
from app.domain.sources import parse_event
from app.store import events as event_store
from app.store.models import InboundEvent
from workers.apply import Context, apply_event
from workers.outbox import write_signals
from workers.runtime import Runtime, get_runtime

log = structlog.get_logger(__name__)


def utcnow() -> datetime:
    """Aware UTC: every timestamp column stores UTC."""
    return datetime.now(UTC)


def process_event(event_id: str) -> str:
    """Apply stored event ``event_id``; return its status afterwards."""
    runtime = get_runtime()
    started = utcnow()
    _forget_outage_note()
    with structlog.contextvars.bound_contextvars(event_id=event_id):
        try:
            status = _apply_once(runtime, event_id, started)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then retried or dead
            try:
                status = record_failure(
                    runtime,
                    event_id,
                    exc,
                    started=started,
                    permanent=isinstance(exc, PermanentError),
                )
            except (OperationalError, InterfaceError) as unreachable:
                # Not even the failure can be written: leave it to RQ's retries, and say why
                # so the sweep can make the event dead in SQL once the database is back.
                _note_on_job(describe_error(exc))
                raise DatabaseUnreachable(describe_error(unreachable)) from exc
        log.info("event.processed", status=status)
        return status


def _apply_once(runtime: Runtime, event_id: str, started: datetime) -> str:
    created: list[int] = []
    with Session(runtime.engine) as session, session.begin():
        row = event_store.lock_event(session, event_id)
        if row is None:
            return "missing"
        if row.status in event_store.FINAL:
            return row.status
        source = runtime.settings.sources.get(row.source)
        if source is None:
            raise PermanentError(f"source {row.source!r} is no longer configured")
        try:
            parsed = parse_event(row.source_kind, row.body, row.content_type)
        except HookError as exc:
            raise PermanentError(f"stored body no longer parses: {exc.message}") from exc
        now = utcnow()
        ctx = Context(
            account_id=source.account_id,
            quote_currencies=runtime.settings.file.ledger.quote_currencies,
            now=now,
        )
        try:
            with exact():  # any rounding of an amount raises instead of posting it
                status = apply_event(session, row, parsed, ctx)
        except (Inexact, InvalidOperation, Overflow, Underflow) as exc:
            raise PermanentError(f"an amount would lose precision: {type(exc).__name__}") from exc
        if status == "processed":
            with exact():
                created = write_signals(
                    session,
                    row,
                    parsed,
                    runtime.settings,
                    account_id=parsed.account_id or source.account_id,
                    now=now,
                )
        row.attempts += 1
        row.status = status
        row.processed_at = now
        row.next_attempt_at = None
        row.last_error = None
        event_store.add_attempt(session, row, started=started, finished=now, outcome=status)
        session.add(row)
    # After the commit: the signals exist whatever happens now; the sweep queues any we miss.
    for signal_id in created:
        try:
            runtime.events.enqueue_signal(signal_id)
        except (RedisError, OSError) as exc:
            log.warning("signal.enqueue_failed", signal_id=signal_id, error=type(exc).__name__)
    return status


class DatabaseUnreachable(Exception):
    """The job could neither apply its event nor record the failure."""


def _forget_outage_note() -> None:
    """Each attempt starts clean: the sweep makes an event dead for an outage only if the
    job's *last* attempt could not reach the database (not if a worker died after it)."""
    job = get_current_job()
    if job is not None and job.meta.pop("db_unavailable", None) is not None:
        job.save_meta()


def _note_on_job(error: str) -> None:
    job = get_current_job()
    if job is None:
        return
    job.meta["db_unavailable"] = True
    job.meta["error"] = error
    job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
    job.save_meta()


def mark_dead_after_outage(
    runtime: Runtime, event_id: str, *, error: str, attempts: int, job_enqueued_at: datetime | None
) -> bool:
    """Make a still-pending event dead after RQ gave up on it during a database outage.

    Returns False when the event is final, or was queued again (a replay, the sweep) after the
    failed job was: that newer job decides, not the old one."""
    with Session(runtime.engine) as session, session.begin():
        row = event_store.lock_event(session, event_id)
        if row is None or row.status in event_store.FINAL:
            return False
        if job_enqueued_at is not None and row.enqueued_at is not None:
            queued = (
                job_enqueued_at if job_enqueued_at.tzinfo else job_enqueued_at.replace(tzinfo=UTC)
            )
            if row.enqueued_at > queued:
                return False
        now = utcnow()
        row.attempts += attempts
        row.status = "dead"
        row.next_attempt_at = None
        row.last_error = f"database unreachable through {attempts} attempt(s): {error}"[:1000]
        event_store.add_attempt(
            session, row, started=now, finished=now, outcome="dead", error=row.last_error
        )
        session.add(row)
    log.warning("event.dead_after_outage", event_id=event_id, attempts=attempts)
    return True


def describe_error(exc: BaseException) -> str:
    """A one-line error for ops: the driver's message for database errors, never SQL params."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}"[:1000]


def record_failure(
    runtime: Runtime, event_id: str, exc: BaseException, *, started: datetime, permanent: bool
) -> str:
    """Count a failed attempt; schedule the next one or mark the event dead. Returns the status."""
    error = describe_error(exc)
    delays = runtime.settings.processing.retry_delays_s
    with Session(runtime.engine) as session, session.begin():
        row: InboundEvent | None = event_store.lock_event(session, event_id)
        if row is None or row.status in event_store.FINAL:
            return row.status if row else "missing"
        now = utcnow()
        row.attempts += 1
        row.last_error = error
        made = row.attempts - row.retry_base  # attempts since the last replay
        if permanent or made > len(delays):
            row.status = "dead"
            row.next_attempt_at = None
        else:
            row.status = "retrying"
            row.next_attempt_at = now + timedelta(seconds=delays[made - 1])
        event_store.add_attempt(
            session, row, started=started, finished=now, outcome=row.status, error=error
        )
        session.add(row)
        status = row.status
    log.warning("event.failed", status=status, error=error, permanent=permanent)
    return status
