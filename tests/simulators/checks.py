"""Running hookledger against the simulators and reading back what its ledger says."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import httpx
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from app.store.models import AccountBalance, InboundEvent
from tests.processes import spawn, start_web, stop
from tests.simulators.ledger import Balances
from tests.support import api_get

UNFINISHED = ("received", "retrying")


@contextmanager
def hookledger_stack(env: dict[str, str], *, workers: int = 1) -> Iterator[str]:
    """``hookledger web`` (two uvicorn workers), ``workers`` RQ workers and the sweeper, as
    real processes; yields the web base URL."""
    web, base = start_web(env, workers=2)
    procs: list[subprocess.Popen[bytes]] = [web]
    try:
        procs += [spawn(["worker"], env) for _ in range(workers)]
        procs.append(spawn(["sweeper"], env))
        yield base
    finally:
        for proc in reversed(procs):
            stop(proc)


def event_counts(engine: Engine) -> dict[str, int]:
    """Stored events per status."""
    with Session(engine) as session:
        rows = session.execute(
            select(InboundEvent.status, func.count()).group_by(InboundEvent.status)
        ).all()
    return {str(status): int(n) for status, n in rows}


def settled(engine: Engine, expected_events: int) -> bool:
    """True once ``expected_events`` events are stored and none is unfinished."""
    counts = event_counts(engine)
    return sum(counts.values()) >= expected_events and not any(counts.get(s) for s in UNFINISHED)


def api_balances(base: str) -> Balances:
    """Every customer account's balance per currency, from ``GET /account/v1/balances`` with
    the auditor's key (all accounts), decimals read exactly."""
    with httpx.Client(base_url=base, timeout=30) as client:
        answer = api_get(client, "/account/v1/balances", key="ak_auditor")
    assert answer.status_code == 200, answer.text
    data = json.loads(answer.text, parse_float=Decimal)["data"]
    return {
        (str(row["account_id"]), row["currency"]): Decimal(row["balance"])
        for row in data["balances"]
        if Decimal(row["balance"]) != 0
    }


def ledger_balances(engine: Engine) -> Balances:
    """Every account's balance per currency (customer and counterpart accounts), as stored."""
    with Session(engine) as session:
        rows = session.execute(select(AccountBalance)).scalars().all()
    return {(r.account_id, r.currency): Decimal(r.balance) for r in rows if r.balance != 0}
