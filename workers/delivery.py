"""Delivering signals: the RQ job ``deliver_signal`` and what each answer does.

A delivery is two transactions around one request. The first decides what to send and
commits it (the body, with its timestamp, and ``status = sending``) before anything leaves;
the second records the answer. So a worker killed mid-request leaves a ``sending`` signal whose
exact body is known: the retry resends *that body* (same 4pass timestamp, so a counterpart that
did receive it answers 409, which counts as delivered) while it is younger than the target's
``replay_window_s``. After the window a resend could place a second order, so such a signal goes
``dead`` with "outcome unknown" for ops to check and replay. Webhook targets are at-least-once
under one stable ``webhook-id`` (receivers dedupe on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import orjson
import structlog
from sqlalchemy import select
from sqlmodel import Session, col

from app import metrics
from app.runtime import Runtime, get_runtime
from app.settings import TargetConfig
from app.signals import net
from app.signals.targets import Verdict, build, judge
from app.store.db import utcnow
from app.store.models import Signal, SignalAttempt, TargetState

log = structlog.get_logger(__name__)
FINAL = frozenset({"delivered", "dead", "discarded"})
FRESH_RETRY_DELAY_S = 1.1
IN_FLIGHT_MARGIN_S = 5  # a send older than its timeouts plus this was abandoned by its worker


@dataclass(frozen=True, slots=True)
class Plan:
    target: TargetConfig
    url: str
    body: bytes
    headers: dict[str, str]
    attempt: int
    resend: bool  # these exact bytes went out before, without an answer
    target_name: str


def _lock(session: Session, signal_id: int) -> Signal | None:
    stmt = (
        select(Signal)
        .where(col(Signal.id) == signal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(stmt).scalar_one_or_none()


def paused(session: Session, target: str) -> bool:
    state = session.get(TargetState, target)
    return bool(state and state.paused)


def _in_flight_for(target: TargetConfig) -> timedelta:
    return timedelta(seconds=target.connect_timeout_s + target.read_timeout_s + IN_FLIGHT_MARGIN_S)


def _claim(runtime: Runtime, signal_id: int) -> Plan | str:
    with Session(runtime.engine) as session, session.begin():
        sig = _lock(session, signal_id)
        if sig is None:
            return "missing"
        if sig.status in FINAL:
            return sig.status
        target = runtime.settings.file.targets.get(sig.target)
        now = utcnow()
        if target is None:
            _finish(session, sig, now, "dead", f"target {sig.target!r} is no longer configured")
            return "dead"
        if paused(session, sig.target):
            return "paused"
        if (
            sig.status == "sending"
            and sig.sending_since
            and now - sig.sending_since < _in_flight_for(target)
        ):
            return "in_flight"
        if sig.status == "sending":
            sig.outcome_unknown = True  # the worker sending it died before it heard an answer
        made = sig.attempts - sig.retry_base
        if made > len(target.retry_delays_s):  # also here: an attempt may have died unrecorded
            _finish(session, sig, now, "dead", _give_up(sig, made, sig.last_error))
            return "dead"
        assert sig.id is not None
        payload = orjson.loads(sig.payload)
        if target.kind == "fourpass" and sig.outcome_unknown and sig.body is not None:
            assert sig.body_stamp is not None
            if (now - sig.body_stamp).total_seconds() > target.replay_window_s:
                _finish(
                    session,
                    sig,
                    now,
                    "dead",
                    "outcome unknown: an earlier send got no answer and its timestamp has expired, "
                    "so a resend could act twice; check the target, then replay or discard",
                )
                return "dead"
            url, _, headers = build(target, payload, signal_id=sig.id, now=sig.body_stamp)
            body = sig.body  # the very bytes sent before: the counterpart's 409 dedupes them
            resend = True
        else:
            url, body, headers = build(target, payload, signal_id=sig.id, now=now)
            sig.body, sig.body_stamp = body, now
            resend = False
        sig.status = "sending"
        sig.sending_since = now
        sig.attempts += 1
        session.add(sig)
        return Plan(target, url, body, headers, sig.attempts, resend, sig.target)


def _finish(session: Session, sig: Signal, now: datetime, status: str, error: str | None) -> None:
    sig.status = status
    sig.last_error = error
    sig.sending_since = None
    sig.next_attempt_at = None
    if status == "delivered":
        sig.delivered_at = now
        sig.outcome_unknown = False
    session.add(sig)


def _give_up(sig: Signal, made: int, error: str | None) -> str:
    prefix = "outcome unknown: " if sig.outcome_unknown else ""
    return f"{prefix}gave up after {made} attempts; last: {error}"


def deliver_signal(signal_id: int) -> str:
    """Send one signal (RQ job). Returns its status afterwards."""
    runtime = get_runtime()
    with structlog.contextvars.bound_contextvars(signal_id=signal_id):
        plan = _claim(runtime, signal_id)
        if isinstance(plan, str):
            return plan
        reply: net.Reply | None = None
        error: str | None = None
        try:
            reply = net.post(
                plan.url,
                plan.body,
                plan.headers,
                connect_timeout_s=plan.target.connect_timeout_s,
                read_timeout_s=plan.target.read_timeout_s,
                allow_private=plan.target.allow_private,
            )
            verdict = judge(plan.target, reply.status)
        except net.BlockedTarget as exc:
            verdict, error = Verdict.DEAD, f"refused: {exc}"
        except (net.Unresolvable, httpx.ConnectError, httpx.ConnectTimeout) as exc:
            verdict, error = Verdict.RETRY, f"could not connect, nothing was sent: {exc}"
        except httpx.HTTPError:  # read timeout, dropped connection: it may have arrived
            verdict, error = Verdict.UNKNOWN, "no answer (timed out or the connection dropped)"
        except Exception as exc:  # noqa: BLE001 - recorded and counted, so it cannot loop forever
            verdict, error = Verdict.UNKNOWN, f"unexpected error while sending: {exc}"[:300]
        status = _settle(runtime, signal_id, plan, verdict, reply=reply, error=error)
        refused = error is not None and error.startswith("refused: ")
        metrics.SIGNAL_DELIVERIES.labels(plan.target_name, "refused" if refused else status).inc()
        log.info(
            "signal.attempt",
            verdict=verdict.value,
            status=status,
            http_status=reply.status if reply else None,
        )
        return status


def _settle(
    runtime: Runtime,
    signal_id: int,
    plan: Plan,
    verdict: Verdict,
    *,
    reply: net.Reply | None,
    error: str | None,
) -> str:
    with Session(runtime.engine) as session, session.begin():
        sig = _lock(session, signal_id)
        assert sig is not None
        now = utcnow()
        if reply is not None and verdict is not Verdict.DELIVERED:
            error = f"HTTP {reply.status}: {reply.text[:200]}"
        session.add(
            SignalAttempt(
                signal_id=signal_id,
                attempt=plan.attempt,
                at=now,
                latency_ms=reply.latency_ms if reply else None,
                http_status=reply.status if reply else None,
                outcome=verdict.value,
                response=reply.text if reply else None,
                error=error,
            )
        )
        if sig.status in FINAL:
            return sig.status
        if verdict is Verdict.DELIVERED:
            _finish(session, sig, now, "delivered", None)
            return "delivered"
        if verdict is Verdict.DEAD:
            _finish(session, sig, now, "dead", error)
            return "dead"
        if verdict is Verdict.RETRY_FRESH and plan.resend:
            # A 401 to a resend proves nothing about the first send (4pass checks the timestamp
            # before duplicates): it may have placed the order. Never send a fresh body now.
            _finish(
                session,
                sig,
                now,
                "dead",
                f"outcome unknown: the resend got {error}; "
                "check the target, then replay or discard",
            )
            return "dead"
        if verdict is Verdict.UNKNOWN:
            sig.outcome_unknown = True
        elif verdict is Verdict.RETRY_FRESH:
            sig.outcome_unknown = (
                False  # 401 to a first send: refused, a fresh one cannot act twice
            )
        # RETRY (an error answer, or nothing sent) leaves an earlier unknown outcome standing.
        delays = plan.target.retry_delays_s
        made = sig.attempts - sig.retry_base
        if made > len(delays):
            _finish(session, sig, now, "dead", _give_up(sig, made, error))
            return "dead"
        # After a 401 the next send takes a new timestamp; timestamps have whole seconds, so
        # wait for the next one, or the "fresh" body could be byte-for-byte the refused one.
        delay = FRESH_RETRY_DELAY_S if verdict is Verdict.RETRY_FRESH else delays[made - 1]
        sig.status = "retrying"
        sig.last_error = error
        sig.sending_since = None
        sig.next_attempt_at = now + timedelta(seconds=delay)
        session.add(sig)
        return "retrying"
