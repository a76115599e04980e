"""RQ job functions. Plain, importable, JSON-able arguments (event ids), no objects.

``process_event`` applies one stored event exactly once: it locks the event row, returns at
once if the event is already final, applies the effect and marks the event in the *same*
transaction. A failure rolls all of it back and is recorded in a second transaction: the event
goes ``retrying`` with the next delay of ``processing.retry_delays_s``, or ``dead`` when the
delays are used up or the error is permanent. The job itself then ends normally, so RQ's failed
registry only ever holds jobs whose failure could not even be recorded (database down); the
sweep re-queues those events from SQL, the source of truth.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Inexact, InvalidOperation, Overflow, Underflow

import structlog
from redis.exceptions import RedisError
from rq import get_current_job
from rq.timeouts import BaseTimeoutException
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel import Session

from app import metrics
from app.domain.errors import HookError, PermanentError, ProcessingError
from app.domain.money import exact
from app.domain.payloads import ParsedEvent
from app.errors import DependencyDown
from app.kinds import parse_event
from app.runtime import Runtime, get_runtime
from app.services.apply import ApplyContext, aggregate_of, apply_event, lock_aggregates
from app.services.outbox import write_signals
from app.store import events as event_store
from app.store.db import as_utc, utcnow
from app.store.journal import flush_ledger, ledger_writer
from app.store.models import InboundEvent
from app.store.queue import is_batch

log = structlog.get_logger(__name__)


def process_event(event_id: str) -> str:
    """Apply stored event ``event_id``; return its status afterwards."""
    runtime = get_runtime()
    _forget_outage_note()
    return _process_one(runtime, event_id)


def process_events(event_ids: list[str]) -> dict[str, int]:
    """Apply a batch of stored events; return how many ended in each status.

    One transaction for the whole batch; each event's effect and status commit together. If an
    event fails, the batch is rolled back and applied again with a savepoint per event: the
    failing event is rolled back to its savepoint and its failure counted (retrying or dead)
    in the same transaction, so the others still commit. If the batch as a whole fails (a
    deadlock, a lost connection, a check at commit), every event is redone on its own as
    ``process_event`` would, so one bad batch costs time, never correctness."""
    if not isinstance(event_ids, list) or not all(isinstance(e, str) for e in event_ids):
        raise TypeError("process_events takes a list of event ids")
    runtime = get_runtime()
    _forget_outage_note()
    ids = sorted(set(with_waiting(runtime, event_ids)))
    statuses: dict[str, str] | None = None
    try:
        statuses, created = _apply_batch(runtime, ids, utcnow(), isolate=False)
    except BaseTimeoutException:
        raise  # out of time: RQ fails the job; the sweep queues the events again
    except (OperationalError, InterfaceError) as exc:
        log.warning("batch.failed", events=len(ids), error=describe_error(exc))
    except Exception:  # noqa: BLE001 - an event failed: again, with a savepoint per event
        try:
            statuses, created = _apply_batch(runtime, ids, utcnow(), isolate=True)
        except BaseTimeoutException:
            raise
        except Exception as exc:  # noqa: BLE001 - redone one by one, which records every failure
            log.warning("batch.failed", events=len(ids), error=describe_error(exc))
    if statuses is None:
        statuses = {event_id: _process_one(runtime, event_id) for event_id in ids}
    else:
        _queue_signals(runtime, created)
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def with_waiting(runtime: Runtime, event_ids: list[str]) -> list[str]:
    """In a batch job's first attempt: ``event_ids`` and those of the batch jobs waiting behind
    it, taken off the queue (whole jobs on their first attempt, up to
    ``processing.batch_size`` events in all).

    Adaptive batching: receipts queue a job per short window (``enqueue_linger_ms``), which
    keeps latency low while workers keep up; when they fall behind, the jobs that piled up are
    applied together, one transaction and one ledger write for all, instead of paying each
    job's fixed cost (RQ's bookkeeping, the ledger lock, COMMIT) one after another. This job
    then carries the taken events: its arguments are saved with them, and the taken jobs'
    names in its meta (``took``), so if the database stays unreachable through its retries
    they are retried with it (with the same number of attempts they would have had) and the
    sweep judges them with it. A taken job is deleted: if this worker dies first, the sweep
    re-queues those events like any lost job's. Redis trouble only means nothing is taken."""
    job = get_current_job()
    if job is None or not is_batch(job.id) or not runtime.events.first_attempt(job):
        return event_ids
    room = runtime.settings.processing.batch_size - len(event_ids)
    taken: dict[str, list[str]] = {}
    combined = event_ids
    try:
        taken = runtime.events.take_waiting_batches(room)
        if taken:
            combined = [*event_ids, *(e for ids in taken.values() for e in ids)]
            job.args = (combined,)
            job.meta["took"] = [*job.meta.get("took", []), *taken]
            job.save(include_result=False)
    except (RedisError, OSError) as exc:
        # Taken but not saved: the events are still applied here; if this job must be retried
        # instead, the sweep re-queues them (their jobs are gone) after ``stale_after_s``.
        log.warning("batch.take_failed", error=type(exc).__name__)
    if taken:
        log.info("batch.took_waiting", jobs=len(taken))
    return combined


def _apply_batch(
    runtime: Runtime, event_ids: list[str], started: datetime, *, isolate: bool
) -> tuple[dict[str, str], list[int]]:
    """Apply ``event_ids`` in one transaction. Without ``isolate`` the first failure raises
    (and rolls everything back); with it, each event has a savepoint and failures are counted."""
    statuses: dict[str, str] = {}
    created: list[int] = []
    applied: list[tuple[InboundEvent, str]] = []
    with Session(runtime.engine) as session, session.begin():
        ledger = ledger_writer(session)
        pending = []
        for row in event_store.lock_events(session, event_ids):
            if row.status in event_store.FINAL:
                statuses[row.id] = row.status
            else:
                pending.append(row)
        ledger.expect(len(pending))  # an event posts at most one entry
        # With savepoints, each event creates its aggregates inside its own savepoint (a failed
        # event must leave no row behind); without, they are created and locked ahead.
        prepared = _prepare_all(runtime, session, pending, lock_ahead=not isolate)
        for row in pending:
            with structlog.contextvars.bound_contextvars(event_id=row.id):
                mark = ledger.mark()
                try:
                    # Without savepoints nothing reads what an earlier event wrote, so the ORM
                    # writes the batch's changes at the end, grouped, not event by event.
                    scope = session.begin_nested() if isolate else session.no_autoflush
                    with scope:
                        status, signals = _apply_effects(runtime, session, row, prepared[row.id])
                    created.extend(signals)
                    applied.append((row, status))
                except (OperationalError, InterfaceError, BaseTimeoutException):
                    raise  # the connection failed, or time is up: not this event's fault
                except Exception as exc:
                    if not isolate:
                        raise
                    ledger.restore(mark)
                    status = _count_failure(
                        runtime,
                        session,
                        row,
                        exc,
                        started=started,
                        permanent=isinstance(exc, PermanentError),
                    )
                else:
                    log.info("event.processed", status=status)
            statuses[row.id] = status
        _finish(session, applied, started)
        done = [(row.source, row.received_at, statuses[row.id]) for row in pending]
    metrics.observe_events(done)  # committed
    for event_id in event_ids:
        statuses.setdefault(event_id, "missing")
    return statuses, created


def _finish(session: Session, applied: list[tuple[InboundEvent, str]], started: datetime) -> None:
    """Write the ledger, then mark the events applied, stamped just before COMMIT."""
    flush_ledger(session, utcnow())
    event_store.mark_applied(session, applied, started=started, finished=utcnow())


def _process_one(runtime: Runtime, event_id: str) -> str:
    started = utcnow()
    with structlog.contextvars.bound_contextvars(event_id=event_id):
        try:
            status = _apply_once(runtime, event_id, started)
        except BaseTimeoutException:
            raise
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
    with Session(runtime.engine) as session, session.begin():
        row = event_store.lock_event(session, event_id)
        if row is None:
            return "missing"
        if row.status in event_store.FINAL:
            return row.status
        status, created = _apply_effects(runtime, session, row, _prepare_or_error(runtime, row))
        _finish(session, [(row, status)], started)
        done = [(row.source, row.received_at, status)]
    metrics.observe_events(done)
    # After the commit: the signals exist whatever happens now; the sweep queues any we miss.
    _queue_signals(runtime, created)
    return status


@dataclass(frozen=True, slots=True)
class _Prepared:
    parsed: ParsedEvent
    ctx: ApplyContext
    signal_account: str


def _prepare(runtime: Runtime, row: InboundEvent) -> _Prepared:
    """Parse a stored event for applying. Raises ``PermanentError``."""
    source = runtime.settings.sources.get(row.source)
    if source is None:
        raise PermanentError(f"source {row.source!r} is no longer configured")
    try:
        parsed = parse_event(row.source_kind, row.body, row.content_type)
    except HookError as exc:
        raise PermanentError(f"stored body no longer parses: {exc.message}") from exc
    ctx = ApplyContext(
        account_id=parsed.account_id or source.account_id,
        quote_currencies=runtime.settings.file.ledger.quote_currencies,
        now=utcnow(),
    )
    return _Prepared(parsed, ctx, ctx.account_id)


def _apply_effects(
    runtime: Runtime, session: Session, row: InboundEvent, prepared: _Prepared | Exception
) -> tuple[str, list[int]]:
    """Apply the locked, pending ``row``'s effects in the session's transaction (the caller
    marks it). Returns its status and the ids of the signals it made. Raises on any failure."""
    if isinstance(prepared, Exception):
        raise prepared
    parsed, ctx = prepared.parsed, prepared.ctx
    created: list[int] = []
    try:
        with exact():  # any rounding of an amount raises instead of posting it
            status = apply_event(session, row, parsed, ctx)
    except (Inexact, InvalidOperation, Overflow, Underflow) as exc:
        raise PermanentError(
            "an amount would lose precision (it would need rounding, or is too large)"
        ) from exc
    if status == "processed":
        with exact():
            created = write_signals(
                session,
                row,
                parsed,
                runtime.settings,
                account_id=prepared.signal_account,
                now=ctx.now,
            )
    return status, created


def _prepare_all(
    runtime: Runtime, session: Session, rows: list[InboundEvent], *, lock_ahead: bool
) -> dict[str, _Prepared | Exception]:
    """Parse every pending row and (``lock_ahead``) lock, in key order, the aggregates they
    change. A row that cannot be parsed keeps its error, raised when it is applied."""
    prepared: dict[str, _Prepared | Exception] = {}
    aggregates = []
    for row in rows:
        prepared[row.id] = ready = _prepare_or_error(runtime, row)
        if isinstance(ready, Exception):
            continue
        agg = aggregate_of(row, ready.parsed, ready.ctx)
        if agg is not None:
            aggregates.append(agg)
    if lock_ahead:
        lock_aggregates(session, aggregates)
    return prepared


def _prepare_or_error(runtime: Runtime, row: InboundEvent) -> _Prepared | Exception:
    try:
        return _prepare(runtime, row)
    except PermanentError as exc:
        return exc


def _queue_signals(runtime: Runtime, created: list[int]) -> None:
    for signal_id in created:
        try:
            runtime.events.enqueue_signal(signal_id)
        except (RedisError, OSError) as exc:
            log.warning("signal.enqueue_failed", signal_id=signal_id, error=type(exc).__name__)


class DatabaseUnreachable(DependencyDown):
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
    runtime: Runtime,
    event_id: str,
    *,
    error: str,
    attempts: int,
    job_name: str,
    job_enqueued_at: datetime | None,
    took: Collection[str] = (),
) -> bool:
    """Make a still-pending event dead after RQ gave up on it during a database outage.

    Returns False when the event is final, or was queued again (a replay, the sweep) after the
    failed job was: that newer job decides, not the old one. The failed job decides for the
    events it was queued with and for those of the jobs it took (``took``, see
    ``with_waiting``); an event recorded under any other job belongs to that job."""
    with Session(runtime.engine) as session, session.begin():
        row = event_store.lock_event(session, event_id)
        if row is None or row.status in event_store.FINAL:
            return False
        if row.queued_job is not None and row.queued_job not in {job_name, *took}:
            return False
        if (
            job_enqueued_at is not None
            and row.enqueued_at is not None
            and row.enqueued_at > as_utc(job_enqueued_at)
        ):
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
    """A one-line error for ops, in words: the driver's message for database errors (never SQL
    parameters), hookledger's own message for its errors. Class names go to the log only."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    if isinstance(exc, DBAPIError):
        return f"database error: {text or 'no message'}"[:1000]
    if isinstance(exc, (ProcessingError, HookError)) and text:
        return text[:1000]
    return f"unexpected error: {text or 'no message'} (its kind is in the worker log)"[:1000]


def record_failure(
    runtime: Runtime, event_id: str, exc: BaseException, *, started: datetime, permanent: bool
) -> str:
    """Count a failed attempt; schedule the next one or mark the event dead. Returns the status."""
    with Session(runtime.engine) as session, session.begin():
        row: InboundEvent | None = event_store.lock_event(session, event_id)
        if row is None or row.status in event_store.FINAL:
            return row.status if row else "missing"
        status = _count_failure(runtime, session, row, exc, started=started, permanent=permanent)
        source = row.source
    metrics.observe_events([(source, None, status)])
    return status


def _count_failure(
    runtime: Runtime,
    session: Session,
    row: InboundEvent,
    exc: BaseException,
    *,
    started: datetime,
    permanent: bool,
) -> str:
    """Count a failed attempt on the locked ``row``, in the caller's transaction."""
    error = describe_error(exc)
    delays = runtime.settings.processing.retry_delays_s
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
    log.warning(
        "event.failed",
        status=row.status,
        error=error,
        error_type=type(exc).__name__,
        permanent=permanent,
    )
    return row.status
