"""Signal rows: what the sweep must queue, listings, replay/discard, the kill switch."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlmodel import Session, col

from app.store.models import InboundEvent, Signal, SignalAttempt, TargetState
from app.store.ops import Conflict, NotFound, OpsError, record_action

PENDING = ("pending", "retrying", "sending")
FINAL = ("delivered", "dead", "discarded")


MAX_SIGNAL_ID = 2**31 - 1  # signals.id is an INTEGER: PostgreSQL refuses to compare more


def parse_signal_id(text: str) -> int | None:
    """``sig_12`` -> 12; anything else (a number no signal id can be, too) -> None."""
    digits = text[4:]
    if text.startswith("sig_") and digits.isascii() and digits.isdigit() and len(digits) <= 10:
        number = int(digits)
        return number if number <= MAX_SIGNAL_ID else None
    return None


def due(
    session: Session, *, now: datetime, stale_after_s: float, sending_stale_s: float, limit: int
) -> list[int]:
    """Signals the sweep should queue: retries due, jobs lost, sends abandoned mid-flight;
    never those of a paused target."""
    s = Signal
    stale = now - timedelta(seconds=stale_after_s)
    paused = select(col(TargetState.target)).where(col(TargetState.paused).is_(True))
    stmt = (
        select(col(s.id))
        .where(
            col(s.target).not_in(paused),
            or_(
                and_(
                    col(s.status).in_(["pending", "retrying"]),
                    or_(
                        and_(col(s.next_attempt_at).is_not(None), col(s.next_attempt_at) <= now),
                        and_(
                            col(s.next_attempt_at).is_(None),
                            func.coalesce(s.enqueued_at, s.created_at) < stale,
                        ),
                    ),
                ),
                and_(
                    col(s.status) == "sending",
                    col(s.sending_since) < now - timedelta(seconds=sending_stale_s),
                ),
            ),
        )
        .order_by(col(s.id))
        .limit(limit)
    )
    return [int(i) for i in session.execute(stmt).scalars()]


def mark_enqueued(session: Session, ids: list[int], *, now: datetime) -> None:
    if ids:
        session.execute(
            update(Signal)
            .where(col(Signal.id).in_(ids), col(Signal.status).in_(["pending", "retrying"]))
            .values(enqueued_at=now, next_attempt_at=None)
        )


def summary(sig: Signal) -> dict[str, Any]:
    return {
        "signal_id": f"sig_{sig.id}",
        "event_id": sig.event_id,
        "rule": sig.rule,
        "target": sig.target,
        "status": sig.status,
        "attempts": sig.attempts,
        "created_at": sig.created_at.isoformat(),
        "delivered_at": sig.delivered_at.isoformat() if sig.delivered_at else None,
        "next_attempt_at": sig.next_attempt_at.isoformat() if sig.next_attempt_at else None,
        "outcome_unknown": sig.outcome_unknown,
        "last_error": sig.last_error,
    }


def list_signals(
    session: Session,
    *,
    status: str | None = None,
    target: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[Signal]:
    stmt = select(Signal)
    if source:
        stmt = stmt.join(InboundEvent, col(InboundEvent.id) == col(Signal.event_id)).where(
            col(InboundEvent.source) == source
        )
    if status:
        stmt = stmt.where(col(Signal.status) == status)
    if target:
        stmt = stmt.where(col(Signal.target) == target)
    if since:
        stmt = stmt.where(col(Signal.created_at) >= since)
    if until:
        stmt = stmt.where(col(Signal.created_at) <= until)
    return list(session.execute(stmt.order_by(col(Signal.id).desc()).limit(limit)).scalars())


def attempts(session: Session, signal_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(SignalAttempt)
        .where(col(SignalAttempt.signal_id) == signal_id)
        .order_by(col(SignalAttempt.id))
    ).scalars()
    return [
        {
            "attempt": a.attempt,
            "at": a.at.isoformat(),
            "http_status": a.http_status,
            "latency_ms": a.latency_ms,
            "outcome": a.outcome,
            "response": a.response,
            "error": a.error,
        }
        for a in rows
    ]


def _lock(session: Session, signal_id: int) -> Signal:
    sig: Signal | None = session.execute(
        select(Signal)
        .where(col(Signal.id) == signal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if sig is None:
        raise NotFound(f"no signal sig_{signal_id}")
    return sig


def _audit(
    session: Session,
    sig: Signal,
    action: str,
    outcome: str,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
) -> None:
    """Record a signal's replay or discard among its causing event's actions."""
    note = f"sig_{sig.id}" + (f": {reason}" if reason else "")
    record_action(session, sig.event_id, action, outcome, actor=actor, reason=note, now=now)


def replay(
    session: Session, signal_id: int, *, actor: str, reason: str | None, now: datetime
) -> str:
    """Make a signal that is not delivered pending again, with a fresh body and retry budget.
    Returns ``requeued`` or ``already_applied`` (delivered). The caller commits, then queues."""
    sig = _lock(session, signal_id)
    if sig.status == "delivered":
        _audit(
            session, sig, "signal_replay", "already_applied", actor=actor, reason=reason, now=now
        )
        return "already_applied"
    if sig.status == "sending":
        # A fresh body now could act a second time if the send in flight lands: wait for it
        # (the sweeper settles an abandoned send within its timeouts plus a few seconds).
        raise Conflict(f"sig_{signal_id} is being sent right now; replay it once that settles")
    if sig.outcome_unknown and sig.status != "dead":
        raise Conflict(
            f"sig_{signal_id} may already have been acted on and is still being resolved "
            "(its unanswered body is being resent); replay it if it ends dead",
        )
    sig.status = "pending"
    sig.retry_base = sig.attempts
    sig.outcome_unknown = False  # ops checked the target: a fresh send is what they ask for
    sig.body = None
    sig.body_stamp = None
    sig.sending_since = None
    sig.next_attempt_at = None
    sig.enqueued_at = now
    session.add(sig)
    _audit(session, sig, "signal_replay", "requeued", actor=actor, reason=reason, now=now)
    return "requeued"


def record_refusal(
    session: Session, signal_id: int, action: str, *, actor: str, reason: str, now: datetime
) -> None:
    """Record a refused replay or discard of a signal (in its own transaction)."""
    sig = session.get(Signal, signal_id)
    if sig is not None:
        _audit(session, sig, action, "refused", actor=actor, reason=reason, now=now)


def discard(session: Session, signal_id: int, *, actor: str, reason: str, now: datetime) -> str:
    if not reason.strip():
        raise OpsError("a discard needs a reason")
    sig = _lock(session, signal_id)
    if sig.status == "delivered":
        raise Conflict(f"sig_{signal_id} was delivered; nothing to discard")
    if sig.status == "sending":
        raise Conflict(f"sig_{signal_id} is being sent right now; discard it once that settles")
    sig.status = "discarded"
    sig.next_attempt_at = None
    session.add(sig)
    _audit(session, sig, "signal_discard", "discarded", actor=actor, reason=reason, now=now)
    return "discarded"


def set_paused(
    session: Session, target: str, *, paused: bool, actor: str, reason: str | None, now: datetime
) -> None:
    state = session.get(TargetState, target)
    if state is None:
        state = TargetState(
            target=target, paused=paused, changed_by=actor[:128], reason=reason, changed_at=now
        )
    else:
        state.paused, state.changed_by, state.reason, state.changed_at = (
            paused,
            actor[:128],
            reason,
            now,
        )
    session.add(state)


def pending_of_target(session: Session, target: str) -> list[int]:
    stmt = select(col(Signal.id)).where(
        col(Signal.target) == target, col(Signal.status).in_(["pending", "retrying"])
    )
    return [int(i) for i in session.execute(stmt).scalars()]


def target_states(session: Session) -> dict[str, TargetState]:
    return {s.target: s for s in session.execute(select(TargetState)).scalars()}
