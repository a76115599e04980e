"""Gaps: what should have happened and has not, per configured source (CONTRACT section 10).

Each source's kind says what its gaps are (``SourceKind.gaps``: open orders long unchanged,
contracts past their value date, rental orders still created past their term), through partial
indexes on the open aggregates. This module asks every configured source and adds where pulling
each gap stands (``pull_state``): the surfaces (``hookledger gaps``, ``GET /admin/gaps``, the
console, the ``hookledger_gaps`` gauge) all read it here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from app import kinds
from app.kinds.base import Gap
from app.settings import Settings
from app.store.db import read_only, utcnow
from app.store.models import PullState

LIMIT = 1000  # gaps listed per source at most, oldest first
GAUGE_CAP = 10_000  # the gauge counts up to this many per source


def of_source(
    session: Session, settings: Settings, name: str, *, now: datetime, limit: int
) -> list[Gap]:
    """The gaps of configured source ``name``, oldest first, at most ``limit``."""
    source = settings.sources[name]
    kind = kinds.get(source.kind)
    return kind.gaps(session, name, gap_after_s=source.gap_after_s, now=now, limit=limit)


def pull_states(session: Session, source: str, idents: list[str]) -> dict[str, PullState]:
    """The ``pull_state`` rows of ``idents`` of ``source`` that exist."""
    if not idents:
        return {}
    rows = session.execute(
        select(PullState).where(col(PullState.source) == source, col(PullState.ident).in_(idents))
    ).scalars()
    return {row.ident: row for row in rows}


def listing(
    engine: Engine,
    settings: Settings,
    *,
    source: str | None = None,
    now: datetime | None = None,
    limit: int = LIMIT,
) -> list[dict[str, Any]]:
    """Every gap of every configured source (or of ``source``), each with its last pull."""
    now = now or utcnow()
    names = [source] if source is not None else sorted(settings.sources)
    rows: list[dict[str, Any]] = []
    with Session(read_only(engine)) as session:
        for name in names:
            found = of_source(session, settings, name, now=now, limit=limit)
            states = pull_states(session, name, [gap.ident for gap in found])
            cfg = settings.sources[name]
            pullable = cfg.pull is not None and kinds.get(cfg.kind).can_pull
            rows.extend(_row(gap, states.get(gap.ident), pullable=pullable) for gap in found)
    return rows


def counts(engine: Engine, settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """How many gaps each configured source has (up to ``GAUGE_CAP``): the gauge."""
    now = now or utcnow()
    with Session(read_only(engine)) as session:
        return {
            name: len(of_source(session, settings, name, now=now, limit=GAUGE_CAP))
            for name in sorted(settings.sources)
        }


def _row(gap: Gap, state: PullState | None, *, pullable: bool) -> dict[str, Any]:
    pull: dict[str, Any] | None = None
    if state is not None:
        pull = {
            "attempts": state.attempts,
            "last_attempt_at": state.last_attempt_at,
            "next_attempt_at": state.next_attempt_at,
            "last_outcome": state.last_outcome,
            "last_error": state.last_error,
            "pulled_event_id": state.pulled_event_id,
        }
    return {
        "source": gap.source,
        "kind": gap.kind,
        "ident": gap.ident,
        "what": gap.what,
        "since": gap.since,
        "state": gap.state,
        "account_id": gap.account_id,
        "pullable": pullable,
        "pull": pull,
    }
