"""Never miss a callback: hookledger as it runs (``hookledger web``, a worker and the sweeper as
processes) against both counterpart simulators, which drop 10% of their callbacks and mangle
some more, on SQLite and on PostgreSQL.

Each source pulls from its simulator (``[sources.NAME.pull]``, ``interval_s = 1``, a gap after
``GAP_AFTER_S``). Once the simulators have sent everything, the test waits until nothing is
open (no HTX order short of a final state, no rental order still created) and nothing is
pending, then holds hookledger to the simulators' truth:

- the ledger equals the truth, every account and currency, exact decimals, both as stored
  (``account_balances``) and through the accountants' API;
- every thing whose last callback (its final state) was dropped or mangled has that final
  state as an ``origin = pull`` event: a dropped or refused final state leaves the thing open,
  so it is a gap, and the counterpart's answer closes it. An intermediate HTX state that was
  lost needs no pull: callbacks carry cumulative amounts, and the kind posts what each event
  adds to what it has seen, so the final state carries every fill before it;
- ``hookledger gaps --json`` lists nothing and ``hookledger ledger verify`` is clean;
- dropped final callbacks sent late, after their pull, are answered ``duplicate`` and change
  neither the events nor the ledger.

The figures (dropped, mangled, pulled, duplicates, time to close every gap) are printed and
written to ``never_miss.json`` in the test's directory.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from app.services import gaps as gap_service
from app.settings import Settings, load_settings
from app.store.db import make_engine, utcnow
from app.store.models import InboundEvent, JournalEntry
from tests.processes import free_port, wait_until
from tests.simulators.checks import (
    UNFINISHED,
    api_balances,
    event_counts,
    hookledger_stack,
    ledger_balances,
)
from tests.simulators.ledger import combined, htx_balances, only, trx_balances
from tests.simulators.process import (
    HTX_ACCOUNT,
    HTX_SOURCE,
    TRX_ACCOUNT,
    TRX_SOURCE,
    hookledger_config,
    simulator,
    simulator_env,
)
from tests.support import hookledger

pytestmark = pytest.mark.slow

HTX_ORDERS = 400
TRX_RENTALS = 300
TRX_DEPOSITS = 200
DROP, MANGLE, DUPLICATE, REORDER = 0.10, 0.03, 0.02, 0.05
GAP_AFTER_S = 2  # an HTX order unchanged this long is a gap
ORDER_TIME_S = 2  # each rental order's term: still created after it, a gap
LATE_PER_SIMULATOR = 4
SEND_TIMEOUT_S = 120
CLOSE_TIMEOUT_S = 120


@pytest.fixture
def ports() -> tuple[int, int]:
    """The simulators' ports, chosen before hookledger starts: its config names them."""
    return free_port(), free_port()


@pytest.fixture
def config_path(tmp_path: Path, ports: tuple[int, int]) -> Path:
    htx_port, trx_port = ports
    path = tmp_path / "hookledger.toml"
    path.write_text(
        hookledger_config(
            htx_pull_url=f"http://127.0.0.1:{htx_port}",
            trx_pull_url=f"http://127.0.0.1:{trx_port}",
            gap_after_s=GAP_AFTER_S,
            pull_interval_s=1,
            pull_retry_delays_s=(1,),
        )
    )
    return path


def _faults() -> list[str]:
    return [
        f"--drop={DROP}", f"--mangle={MANGLE}", f"--duplicate={DUPLICATE}",
        f"--reorder={REORDER}", "--rate", "400", "--retry-scale", "0.2",
    ]  # fmt: skip


def _htx_args(base: str) -> list[str]:
    return [
        "--hook-url", base, "--source", HTX_SOURCE, "--seed", "21",
        "--count", str(HTX_ORDERS), "--accounts", HTX_ACCOUNT, *_faults(),
    ]  # fmt: skip


def _trx_args(base: str) -> list[str]:
    return [
        "--hook-url", base, "--source", TRX_SOURCE, "--seed", "22",
        "--count", str(TRX_RENTALS), "--deposits", str(TRX_DEPOSITS),
        "--order-time", str(ORDER_TIME_S), *_faults(),
    ]  # fmt: skip


def _open_things(engine: Engine, settings: Settings) -> int:
    """How many things hookledger holds open: its gaps as they will be once every open
    order's and rental order's time has passed (every one not final)."""
    later = utcnow() + timedelta(days=1)
    return len(gap_service.listing(engine, settings, now=later))


def _closed(engine: Engine, settings: Settings) -> bool:
    counts = event_counts(engine)
    if any(counts.get(status) for status in UNFINISHED):
        return False
    return _open_things(engine, settings) == 0


def _origins(engine: Engine) -> dict[tuple[str, str], str]:
    """Each stored event's origin, by source and idempotency key."""
    with Session(engine) as session:
        rows = session.execute(
            select(InboundEvent.source, InboundEvent.idempotency_key, InboundEvent.origin)
        ).all()
    return {(str(source), str(key)): str(origin) for source, key, origin in rows}


def _journal_entries(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(JournalEntry)).scalar_one())


def _pulled(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.execute(
            select(InboundEvent.source, func.count())
            .where(col(InboundEvent.origin) == "pull")
            .group_by(InboundEvent.source)
        ).all()
    return {str(source): int(n) for source, n in rows}


def _finals(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each thing's last callback (its final state)."""
    last: dict[str, dict[str, Any]] = {}
    for cb in plan:
        if cb["ident"] not in last or cb["step"] > last[cb["ident"]]["step"]:
            last[cb["ident"]] = cb
    return list(last.values())


def test_dropped_and_mangled_callbacks_are_pulled_and_the_ledger_equals_the_truth(
    env, database_url, ports, tmp_path
):
    engine = make_engine(database_url)
    settings = load_settings(env)
    sim_env = simulator_env()
    htx_port, trx_port = ports
    with (
        hookledger_stack(env) as base,
        simulator("htx", _htx_args(base), sim_env, port=htx_port) as htx,
        simulator("trx_energy", _trx_args(base), sim_env, port=trx_port) as trx,
    ):
        started = time.monotonic()
        htx.start()
        trx.start()
        htx_status = htx.wait_done(SEND_TIMEOUT_S)
        trx_status = trx.wait_done(SEND_TIMEOUT_S)
        sent = time.monotonic()
        wait_until(
            lambda: _closed(engine, settings),
            CLOSE_TIMEOUT_S,
            "every gap closed and every event processed",
        )
        closed = time.monotonic()
        gaps = hookledger(env, "gaps", "--json")
        htx_truth, trx_truth = htx.truth(), trx.truth()
        htx_plan, trx_plan = htx.plan(), trx.plan()
        api = api_balances(base)
        stored = ledger_balances(engine)
        events_before = event_counts(engine)
        entries_before = _journal_entries(engine)
        origins = _origins(engine)
        pulled = _pulled(engine)

        # Dropped final states, already pulled, now sent by the counterparts after all.
        late_answers = []
        for sim, plan, source in ((htx, htx_plan, HTX_SOURCE), (trx, trx_plan, TRX_SOURCE)):
            keys = [
                cb["key"]
                for cb in _finals(plan)
                if cb["fate"] == "dropped" and origins.get((source, cb["key"])) == "pull"
            ][:LATE_PER_SIMULATOR]
            late_answers += sim.late(keys=keys)
        api_after_late = api_balances(base)
        htx_api, trx_api = htx.status()["api"], trx.status()["api"]

    figures = _figures(
        htx_status, trx_status, htx_plan, trx_plan, pulled, htx_api, trx_api, late_answers,
        send_s=sent - started, close_s=closed - sent,
    )  # fmt: skip
    print("\nnever-miss figures:", json.dumps(figures, indent=2, sort_keys=True))
    (tmp_path / "never_miss.json").write_text(json.dumps(figures, indent=2, sort_keys=True))

    # The run lost callbacks in both ways, final states included.
    for name in ("htx", "trx"):
        assert figures[name]["dropped"] > 0 and figures[name]["mangled"] > 0, figures
        assert figures[name]["final_states_dropped"] > 0, figures
    assert figures["htx"]["final_states_mangled"] > 0, figures
    # Every mangled callback was refused (never stored), every intact one accepted or
    # answered duplicate (a pulled state pushed afterwards, or a push sent twice).
    for plan in (htx_plan, trx_plan):
        for cb in plan:
            if cb["fate"] == "mangled":
                assert cb["outcome"] == "failed" and set(cb["answers"]) <= {400, 422}, cb
            elif cb["fate"] == "sent":
                assert cb["outcome"] in ("accepted", "duplicate"), cb

    # Every final state the counterpart did not deliver intact came by pull.
    for plan, source in ((htx_plan, HTX_SOURCE), (trx_plan, TRX_SOURCE)):
        for cb in _finals(plan):
            if cb["fate"] != "sent":
                assert origins.get((source, cb["key"])) == "pull", (source, cb)

    # Nothing open, nothing pending, nothing failed.
    assert gaps.returncode == 0, gaps.stderr
    assert json.loads(gaps.stdout) == []
    assert set(events_before) <= {"processed", "rejected"}, events_before

    expected = combined(
        htx_balances(htx_truth, HTX_SOURCE),
        trx_balances(trx_truth, TRX_SOURCE, TRX_ACCOUNT),
    )
    assert stored == expected
    assert api == only(expected, {HTX_ACCOUNT, TRX_ACCOUNT})

    # Late callbacks of pulled states: duplicates, nothing stored or posted again.
    assert len(late_answers) == 2 * LATE_PER_SIMULATOR
    assert {answer["outcome"] for answer in late_answers} == {"duplicate"}, late_answers
    assert event_counts(engine) == events_before
    assert _journal_entries(engine) == entries_before
    assert ledger_balances(engine) == expected
    assert api_after_late == api

    verify = hookledger(env, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    engine.dispose()


def _figures(
    htx_status: dict[str, Any],
    trx_status: dict[str, Any],
    htx_plan: list[dict[str, Any]],
    trx_plan: list[dict[str, Any]],
    pulled: dict[str, int],
    htx_api: dict[str, Any],
    trx_api: dict[str, Any],
    late_answers: list[dict[str, Any]],
    *,
    send_s: float,
    close_s: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "send_s": round(send_s, 2),
        "close_all_gaps_after_send_s": round(close_s, 2),
        "late_duplicates": sum(a["outcome"] == "duplicate" for a in late_answers),
    }
    for name, status, plan, source, api in (
        ("htx", htx_status, htx_plan, HTX_SOURCE, htx_api),
        ("trx", trx_status, trx_plan, TRX_SOURCE, trx_api),
    ):
        finals = Counter(cb["fate"] for cb in _finals(plan))
        out[name] = {
            "callbacks": status["planned"],
            "things": len(_finals(plan)),
            "dropped": status["dropped"],
            "mangled": status["mangled"],
            "final_states_dropped": finals["dropped"],
            "final_states_mangled": finals["mangled"],
            "pulled_events": pulled.get(source, 0),
            "push_duplicates": status["counts"].get("duplicate", 0),
            "query_api": api,
        }
    return out
