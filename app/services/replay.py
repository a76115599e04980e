"""Replay, discard and dry-run previews: the ops service behind the CLI and the admin API.

SQL first, then RQ: a replay commits the event back to ``received`` and only then queues its
job; if queueing fails the sweep queues it later. A dry run applies the event inside a
transaction that is rolled back, so it shows the exact postings a replay would make.

A rejected event (kept because parsing or the schema refused it) is parsed again under the
current code and config: if it passes it takes the idempotency key and event type it parses
to and goes the normal way, keeping its receipt time; if its source holds that key already
(the counterpart sent a valid version since) it is a ``duplicate`` of that event, recorded
and not applied; if it still fails, the replay is refused with the new reason.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlmodel import Session, col

from app.domain.errors import BadRequest, HookError, PermanentError, ValidationFailed
from app.domain.money import exact
from app.domain.payloads import ParsedEvent
from app.kinds import parse_event
from app.runtime import Runtime
from app.services.apply import ApplyContext, apply_event
from app.store import events as event_store
from app.store import ops
from app.store import rejected as rejected_store
from app.store import signals as signal_store
from app.store.db import read_only, utcnow
from app.store.journal import flush_ledger
from app.store.models import InboundEvent, LedgerPosting, Signal

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    event_id: str
    outcome: str  # requeued | already_applied | duplicate | would_replay | discarded | error
    message: str = ""
    effects: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event_id": self.event_id, "outcome": self.outcome}
        if self.message:
            data["message"] = self.message
        if self.outcome == "would_replay":
            data["effects"] = self.effects
        return data


def _refused(
    runtime: Runtime, name: str, action: str, exc: ops.OpsError, *, actor: str, reason: str | None
) -> None:
    """Record a refusal in a transaction of its own (the refused one was rolled back)."""
    note = f"{reason + ' ' if reason else ''}[refused: {exc.message}]"
    signal_id = signal_store.parse_signal_id(name)
    with Session(runtime.engine) as session, session.begin():
        if signal_id is not None:
            signal_store.record_refusal(
                session, signal_id, f"signal_{action}", actor=actor, reason=note, now=utcnow()
            )
        elif session.get(InboundEvent, name) is not None:
            ops.record_action(
                session, name, action, "refused", actor=actor, reason=note, now=utcnow()
            )


def replay(runtime: Runtime, event_id: str, *, actor: str, reason: str | None) -> Outcome:
    """Replay one event (or ``sig_N`` signal). Raises ``ops.OpsError`` (404, 409 refused);
    a refusal is recorded too."""
    try:
        return _replay(runtime, event_id, actor=actor, reason=reason)
    except ops.OpsError as exc:
        if isinstance(exc, ops.Conflict):
            _refused(runtime, event_id, "replay", exc, actor=actor, reason=reason)
        raise


def _replay(runtime: Runtime, event_id: str, *, actor: str, reason: str | None) -> Outcome:
    signal_id = signal_store.parse_signal_id(event_id)
    if signal_id is not None:
        with Session(runtime.engine) as session, session.begin():
            outcome = signal_store.replay(
                session, signal_id, actor=actor, reason=reason, now=utcnow()
            )
        if outcome == "requeued":
            with contextlib.suppress(RedisError, OSError):  # else the sweep queues it
                runtime.events.enqueue_signal(signal_id)
        return Outcome(event_id, outcome)
    message = ""
    with Session(runtime.engine) as session, session.begin():
        row = event_store.lock_event(session, event_id)
        if row is not None and _is_rejected(row):
            outcome, message = _accept_rejected(runtime, session, row, actor=actor, reason=reason)
        else:
            outcome = ops.replay(session, event_id, actor=actor, reason=reason, now=utcnow())
    if outcome == "requeued":
        try:
            runtime.events.enqueue(event_id, again=True)
        except (RedisError, OSError) as exc:
            log.warning("replay.enqueue_failed", event_id=event_id, error=type(exc).__name__)
    log.info("event.replayed", event_id=event_id, outcome=outcome, actor=actor)
    return Outcome(event_id, outcome, message)


def _is_rejected(row: InboundEvent) -> bool:
    """Kept as rejected and not since given a real key (a discarded one included)."""
    return row.status not in event_store.APPLIED and rejected_store.is_rejected_key(
        row.idempotency_key
    )


def _refusal(exc: BadRequest | ValidationFailed) -> str:
    if isinstance(exc, ValidationFailed):
        return f"422 {orjson.dumps(exc.detail, default=str).decode()}"
    return f"400 {exc.message}"


def _reparse(runtime: Runtime, row: InboundEvent) -> tuple[str, ParsedEvent]:
    """Parse a rejected event under the current code and its source's current config;
    return the source kind and the event. Raises ``ops.Conflict`` saying why it cannot."""
    if row.body_pruned_at is not None:
        raise ops.Conflict(f"event {row.id} cannot be replayed: its raw body was pruned")
    source = runtime.settings.sources.get(row.source)
    if source is None:
        raise ops.Conflict(
            f"event {row.id} cannot be replayed: source {row.source!r} is no longer configured"
        )
    try:
        return source.kind, parse_event(source.kind, row.body, row.content_type)
    except (BadRequest, ValidationFailed) as exc:
        raise ops.Conflict(f"event {row.id} is still refused: {_refusal(exc)}") from exc


def _accept_rejected(
    runtime: Runtime, session: Session, row: InboundEvent, *, actor: str, reason: str | None
) -> tuple[str, str]:
    """Replay a locked rejected event: ``requeued`` (parsed, now ``received``; the caller
    queues it after the commit) or ``duplicate`` (its key is another event's), with a
    message. Raises ``ops.Conflict`` when it still does not parse."""
    now = utcnow()
    kind, parsed = _reparse(runtime, row)
    other = rejected_store.accept(
        session,
        row,
        key=parsed.idempotency_key[:300],
        raw_type=parsed.raw_type[:64],
        event_type=parsed.event,
        source_kind=kind,
        now=now,
    )
    if other is None:
        ops.record_action(
            session, row.id, "replay", "requeued", actor=actor, reason=reason, now=now
        )
        return "requeued", ""
    # The valid version the counterpart sent since is the event; this one must not apply too.
    row.status = "discarded"
    row.last_error = f"a duplicate of {other}, which has its idempotency key"
    session.add(row)
    note = f"{reason + ' ' if reason else ''}[duplicate of {other}]"
    ops.record_action(session, row.id, "replay", "duplicate", actor=actor, reason=note, now=now)
    return "duplicate", f"a duplicate of {other}"


def discard(runtime: Runtime, event_id: str, *, actor: str, reason: str) -> Outcome:
    """Discard one event that is not applied (or a ``sig_N`` signal not delivered)."""
    signal_id = signal_store.parse_signal_id(event_id)
    try:
        with Session(runtime.engine) as session, session.begin():
            if signal_id is not None:
                outcome = signal_store.discard(
                    session, signal_id, actor=actor, reason=reason, now=utcnow()
                )
            else:
                outcome = ops.discard(session, event_id, actor=actor, reason=reason, now=utcnow())
    except ops.OpsError as exc:
        if isinstance(exc, ops.Conflict):
            _refused(runtime, event_id, "discard", exc, actor=actor, reason=reason)
        raise
    log.info("event.discarded", event_id=event_id, actor=actor)
    return Outcome(event_id, outcome)


def _preview_signal(runtime: Runtime, name: str, signal_id: int) -> Outcome:
    with Session(read_only(runtime.engine)) as session:
        sig = session.get(Signal, signal_id)
        if sig is None:
            raise ops.NotFound(f"no signal {name}")
        if sig.status == "delivered":
            return Outcome(name, "already_applied")
        request = {"target": sig.target, "rule": sig.rule, "send": orjson.loads(sig.payload)}
        return Outcome(name, "would_replay", "would send again with a fresh timestamp", [request])


def preview(runtime: Runtime, event_id: str) -> Outcome:
    """What replaying ``event_id`` would do, computed and rolled back."""
    signal_id = signal_store.parse_signal_id(event_id)
    if signal_id is not None:
        return _preview_signal(runtime, event_id, signal_id)
    session = Session(runtime.engine)
    try:
        session.begin()
        row = event_store.lock_event(session, event_id)
        if row is None:
            raise ops.NotFound(f"no event {event_id}")
        if row.status in event_store.APPLIED:
            return Outcome(event_id, "already_applied")
        if row.body_pruned_at is not None:
            return Outcome(event_id, "error", "its raw body was pruned")
        source = runtime.settings.sources.get(row.source)
        if source is None:
            return Outcome(event_id, "error", f"source {row.source!r} is no longer configured")
        rejected = _is_rejected(row)
        try:
            parsed = parse_event(
                source.kind if rejected else row.source_kind, row.body, row.content_type
            )
            if rejected:
                key = (row.source, parsed.idempotency_key[:300])
                other = event_store.stored_ids(session, [key]).get(key)
                if other is not None:
                    return Outcome(event_id, "duplicate", f"would be a duplicate of {other}")
            ctx = ApplyContext(
                account_id=parsed.account_id or source.account_id,
                quote_currencies=runtime.settings.file.ledger.quote_currencies,
                now=utcnow(),
            )
            with exact():
                status = apply_event(session, row, parsed, ctx)
            flush_ledger(session, ctx.now)
            session.flush()
        except (BadRequest, ValidationFailed) as exc:
            return Outcome(event_id, "error", f"would fail: {_refusal(exc)}")
        except (HookError, PermanentError) as exc:
            return Outcome(event_id, "error", f"would fail: {exc}")
        except ArithmeticError:  # its text is a list of decimal signal classes: say it in words
            return Outcome(
                event_id,
                "error",
                "would fail: an amount would lose precision (it would need rounding, or is too "
                "large)",
            )
        postings = session.execute(
            select(LedgerPosting)
            .where(col(LedgerPosting.event_id) == event_id)
            .order_by(col(LedgerPosting.id))
        ).scalars()
        effects = [
            {
                "account_id": p.account_id,
                "currency": p.currency,
                "amount": p.amount,
                "tran_type": p.tran_type,
            }
            for p in postings
        ]
        return Outcome(event_id, "would_replay", f"would end {status}", effects)
    finally:
        session.rollback()
        session.close()


def replay_many(
    runtime: Runtime, event_ids: list[str], *, actor: str, reason: str | None, dry_run: bool
) -> list[Outcome]:
    """Replay (or preview) each event; an unknown or refused one is an ``error`` outcome."""
    results = []
    for event_id in event_ids:
        try:
            if dry_run:
                results.append(preview(runtime, event_id))
            else:
                results.append(replay(runtime, event_id, actor=actor, reason=reason))
        except ops.OpsError as exc:
            results.append(Outcome(event_id, "error", exc.message))
    return results


def dead_letter_ids(runtime: Runtime, flt: ops.EventFilter) -> list[str]:
    """Dead events, then dead signals (``sig_N``), matching ``flt``; with ``flt.status``
    ``rejected``, the rejected events instead (there are no rejected signals)."""
    with Session(read_only(runtime.engine)) as session:
        if flt.status == rejected_store.STATUS:
            return ops.dead_letters(session, flt, status=rejected_store.STATUS)
        events = ops.dead_letters(session, flt)
        signals = signal_store.list_signals(
            session,
            status="dead",
            source=flt.source,
            since=flt.since,
            until=flt.until,
            limit=100_000,
        )
    # A signal whose earlier send may have been acted on is replayed only when named by id,
    # after a person has checked the target: a bulk replay must not place a second order.
    return events + [f"sig_{s.id}" for s in reversed(signals) if not s.outcome_unknown]
