"""Pulling what never arrived: ask each counterpart's API for the current state of its source's
gaps and feed every answer through the receipt path (CONTRACT section 10).

A source pulls when it has ``[sources.NAME.pull]`` and its kind can (``SourceKind.can_pull``).
For each gap that is due (never asked, or its ``pull_state.next_attempt_at`` has passed) the
kind asks its counterpart (``SourceKind.pull``) through an ``httpx.AsyncClient`` behind the
outbound guard (``app.signals.net.GuardedTransport``), at most ``pull.concurrency`` at a time,
each within ``pull.timeout_s``. Every body it answers goes through ``app.ingest.PulledReceipts``
as an ``origin = pull`` event: parsed by the kind, stored under the key a callback would have,
queued for the workers. A pulled state and a late callback of it are one event; the ledger is
only ever changed by the worker applying events.

Each ask is recorded in ``pull_state``: ``attempts``, ``last_attempt_at``, ``last_outcome``
(``pulled``: a new event was stored; ``unchanged``: the counterpart says what is stored
already; ``not_found``; ``error``, ``rate_limited``, ``server_error``, ``timeout``, ``refused``),
``last_error`` and ``next_attempt_at``: after anything but ``pulled``, ``retry_delays_s`` by the
number of attempts (the last delay repeating), so a counterpart that fails or a gap the answer
cannot close is asked less and less often. Nothing here raises for a counterpart's failure.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from app import kinds
from app.errors import HookledgerError
from app.ingest import PulledReceipts
from app.kinds.base import Pulled, PullFailed, SourceKind
from app.runtime import Runtime
from app.services import gaps as gap_service
from app.settings import PullConfig, Settings, SourceConfig
from app.signals.net import BlockedTarget, GuardedTransport, Unresolvable
from app.store.db import as_utc, insert_ignore, read_only, utcnow
from app.store.models import PullState, table_of

log = structlog.get_logger(__name__)

FAILED = frozenset({"error", "rate_limited", "server_error", "timeout", "refused"})


@dataclass(slots=True)
class Asked:
    """One ask: which source and ident, what came of it, the events its answer made."""

    source: str
    ident: str
    outcome: str
    events: list[tuple[str, str]] = field(default_factory=list)  # (event id, accepted|duplicate)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED


class NotPullable(HookledgerError):
    """A source asked to pull cannot: no ``[sources.NAME.pull]``, or its kind has no API."""


def pullable(settings: Settings) -> list[str]:
    """The configured sources that pull, by name."""
    return sorted(
        name
        for name, cfg in settings.sources.items()
        if cfg.pull is not None and kinds.get(cfg.kind).can_pull
    )


def check_pullable(settings: Settings, name: str) -> None:
    """Raise ``NotPullable`` saying why source ``name`` cannot pull."""
    cfg = settings.sources.get(name)
    if cfg is None:
        known = ", ".join(sorted(settings.sources)) or "none are configured"
        raise NotPullable(f"no source named {name!r}; known sources: {known}")
    if not kinds.get(cfg.kind).can_pull:
        raise NotPullable(
            f"source {name!r} ({cfg.kind}) cannot pull: its counterpart has no query API"
        )
    if cfg.pull is None:
        raise NotPullable(f"source {name!r} has no [sources.{name}.pull] section")


def due_idents(engine: Engine, settings: Settings, name: str, *, now: datetime) -> list[str]:
    """The gaps of source ``name`` whose next ask is due, oldest first."""
    with Session(read_only(engine)) as session:
        found = gap_service.of_source(session, settings, name, now=now, limit=gap_service.LIMIT)
        states = gap_service.pull_states(session, name, [g.ident for g in found])
    due = []
    for gap in found:
        state = states.get(gap.ident)
        nxt = None if state is None else state.next_attempt_at
        if nxt is None or as_utc(nxt) <= now:
            due.append(gap.ident)
    return due


def pull_source(
    runtime: Runtime, name: str, *, idents: list[str] | None = None, now: datetime | None = None
) -> list[Asked]:
    """Ask source ``name``'s counterpart about ``idents`` (default: its due gaps) and store
    what it answers; ``now`` (default: the clock) is when gaps and backoff are judged and asks
    recorded. Raises ``NotPullable``; a counterpart's failures are recorded, not raised."""
    check_pullable(runtime.settings, name)
    cfg = runtime.settings.sources[name]
    assert cfg.pull is not None
    fixed = now
    now = now or utcnow()
    wanted = (
        due_idents(runtime.engine, runtime.settings, name, now=now) if idents is None else idents
    )
    if not wanted:
        return []
    kind = kinds.get(cfg.kind)
    answers = asyncio.run(_ask_all(kind, cfg.pull, wanted))
    receipts = PulledReceipts(
        engine=runtime.engine,
        queue=runtime.events,
        dedupe_ttl_s=runtime.settings.processing.dedupe_ttl_s,
    )
    results = []
    for ident, answer in zip(wanted, answers, strict=True):
        asked = _feed(receipts, name, cfg, ident, answer)
        _record(runtime.engine, name, asked, cfg.pull, now=fixed or utcnow())
        results.append(asked)
        log.info(
            "pull.asked",
            source=name,
            ident=ident,
            outcome=asked.outcome,
            events=len(asked.events),
            error=asked.error,
        )
    return results


def pull_all(runtime: Runtime, *, now: datetime | None = None) -> list[Asked]:
    """One pass over every pulling source's due gaps."""
    results: list[Asked] = []
    for name in pullable(runtime.settings):
        results.extend(pull_source(runtime, name, now=now))
    return results


async def _ask_all(kind: SourceKind, cfg: PullConfig, idents: list[str]) -> list[Pulled | str]:
    """Each ident's answer, or the error text and outcome (``outcome: message``)."""
    limit = asyncio.Semaphore(cfg.concurrency)
    timeout = httpx.Timeout(cfg.timeout_s)
    transport = GuardedTransport(allow_private=cfg.allow_private)
    async with httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:

        async def ask(ident: str) -> Pulled | str:
            async with limit:
                try:
                    # Two requests at most (HTX: the order and its match results).
                    return await asyncio.wait_for(
                        kind.pull(client, cfg, ident), timeout=2 * cfg.timeout_s + 1
                    )
                except PullFailed as exc:
                    return f"{exc.outcome}: {exc.message}"
                except TimeoutError:
                    return f"timeout: no answer within {2 * cfg.timeout_s + 1:g} s"
                except BlockedTarget as exc:
                    return f"refused: {exc}"
                except (Unresolvable, httpx.HTTPError) as exc:
                    return f"error: {exc}"

        return list(await asyncio.gather(*(ask(ident) for ident in idents)))


def _feed(
    receipts: PulledReceipts, name: str, cfg: SourceConfig, ident: str, answer: Pulled | str
) -> Asked:
    if isinstance(answer, str):
        outcome, _, message = answer.partition(": ")
        return Asked(name, ident, outcome, error=message[:1000])
    if answer.missing:
        return Asked(name, ident, "not_found", error="the counterpart does not know it")
    asked = Asked(name, ident, "unchanged")
    for body in answer.bodies:
        try:
            stored = receipts.receive(
                source_name=name, source=cfg, body=body, media=answer.media_type, now=time.time()
            )
        except HookledgerError as exc:  # BadRequest, ValidationFailed: the answer does not parse
            return Asked(
                name, ident, "error", asked.events, f"the answer does not parse: {exc}"[:1000]
            )
        asked.events.append((stored.event_id, stored.status))
        if stored.status == "accepted":
            asked.outcome = "pulled"
    return asked


def _record(engine: Engine, name: str, asked: Asked, cfg: PullConfig, *, now: datetime) -> None:
    """Note the ask in ``pull_state`` (one row per source and ident)."""
    table = table_of(PullState)
    with Session(engine) as session, session.begin():
        dialect = session.get_bind().dialect.name
        session.execute(
            insert_ignore(
                dialect,
                table,
                {"source": name, "ident": asked.ident, "attempts": 0},
                ["source", "ident"],
            )
        )
        state = session.execute(
            select(PullState)
            .where(col(PullState.source) == name, col(PullState.ident) == asked.ident)
            .with_for_update()
        ).scalar_one()
        state.attempts += 1
        state.last_attempt_at = now
        state.last_outcome = asked.outcome
        state.last_error = asked.error
        if asked.events:
            state.pulled_event_id = asked.events[-1][0]
        if asked.outcome == "pulled":
            state.next_attempt_at = None  # due again only if it is still a gap
        else:
            delays = cfg.retry_delays_s or (cfg.interval_s,)
            delay = delays[min(state.attempts, len(delays)) - 1]
            state.next_attempt_at = now + timedelta(seconds=delay)
        session.add(state)


def run_forever(runtime: Runtime, stop: threading.Event) -> None:
    """Pull each pulling source's due gaps every ``pull.interval_s`` until ``stop`` is set;
    outages and counterparts' failures are logged, never fatal (the sweeper's thread)."""
    names = pullable(runtime.settings)
    if not names:
        log.info("pull.off")
        return
    log.info("pull.started", sources=names)
    next_at = dict.fromkeys(names, 0.0)
    while not stop.is_set():
        for name in names:
            if stop.is_set() or time.monotonic() < next_at[name]:
                continue
            cfg = runtime.settings.sources[name].pull
            assert cfg is not None
            next_at[name] = time.monotonic() + cfg.interval_s
            try:
                pull_source(runtime, name)
            except (SQLAlchemyError, HookledgerError, OSError) as exc:
                log.warning("pull.failed", source=name, error=type(exc).__name__)
        stop.wait(max(0.05, min(next_at.values()) - time.monotonic()))
