"""A restore of an older backup under a live Redis that keeps what it remembered.

Follows docs/backup.md: the backup as "SQLite" and "PostgreSQL" / "Logical backups" take it
while hookledger runs, then "Restoring" step by step: 1 stop every process, 2 restore, 3 leave
Redis as it is, (4 pause signal targets: this config has none), 5 start, 6 ``hookledger
reconcile``, 7 the senders resend what was received after the backup, 8 ``hookledger ledger
verify``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine.url import make_url
from sqlmodel import col
from starlette.testclient import TestClient

from app.main import create_app
from app.runtime import Runtime, build_runtime, set_runtime
from app.settings import load_settings
from app.store.models import InboundEvent, instance_id
from tests.conftest import PG_DB, PG_SERVER, fresh_pg
from tests.support import (
    api_get,
    count,
    event,
    hookledger,
    htx_update,
    post_htx,
    run_jobs,
    upgrade_schema,
)

RESTORE_DB = f"{PG_DB}_restore"


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    """A database of this test's own: SQLite in the test's directory, or a PostgreSQL
    database beside the test database, dropped afterwards."""
    if make_url(database_url).get_backend_name() == "sqlite":
        yield database_url
        return
    yield upgrade_schema(fresh_pg(RESTORE_DB))
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {RESTORE_DB} WITH (FORCE)"))
    admin.dispose()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _libpq_url(url: str) -> str:
    """The SQLAlchemy URL as pg_dump and pg_restore take it (no driver name)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def back_up(url: str, backup: Path) -> None:
    """docs/backup.md, "SQLite" / "Logical backups" (PostgreSQL): while hookledger runs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        command = [_tool("sqlite3"), str(parsed.database), f".backup '{backup}'"]
    else:
        command = [_tool("pg_dump"), "-Fc", "-f", str(backup), _libpq_url(url)]
    subprocess.run(command, check=True, capture_output=True, text=True)


def restore(url: str, backup: Path) -> None:
    """docs/backup.md, "Restoring", step 2: with every hookledger process stopped."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        command = [_tool("sqlite3"), str(parsed.database), f".restore '{backup}'"]
    else:
        command = [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--single-transaction",
            "-d",
            _libpq_url(url),
            str(backup),
        ]
    subprocess.run(command, check=True, capture_output=True, text=True)


def _transactions(client: TestClient) -> list[dict[str, Any]]:
    response = api_get(client, "/account/v1/transactions?account_id=1001&page_size=500")
    assert response.status_code == 200, response.text
    body = json.loads(response.text, parse_float=Decimal)  # exact decimals, never floats
    assert body["data"]["total_records"] == len(body["data"]["transactions"])
    rows: list[dict[str, Any]] = body["data"]["transactions"]
    return rows


def _movements(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """What moved, whatever the posting ids, event ids and order of application."""
    return Counter(
        (r["product_code"], r["base_currency"], r["io_type"], Decimal(r["amt"]), r["tran_type"])
        for r in rows
    )


def _balances(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Each currency's running balance after its last posting."""
    return {r["base_currency"]: Decimal(r["balance"]) for r in rows}


def _fill(order: int) -> dict[str, object]:
    """A buy of btcusdt filled at once; each order its own amounts."""
    n = Decimal(order)
    return htx_update(
        order, "filled", str(Decimal("0.005") * n), str(Decimal("210.25") * n), str(n / 100_000)
    )


def test_callbacks_a_restore_lost_are_stored_again_and_applied_once(
    env, scratch_url, redis_client, tmp_path
):
    site = {**env, "HOOKLEDGER_DATABASE_URL": scratch_url}
    settings = load_settings(site)
    runtime: Runtime = build_runtime(settings)
    set_runtime(runtime)  # the burst workers' runtime
    backup = tmp_path / "hookledger.backup"
    try:
        with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as web:
            applied = [post_htx(web, _fill(n)).json()["event_id"] for n in (1, 2)]
            run_jobs(runtime)
            waiting = post_htx(web, _fill(3)).json()["event_id"]  # stored, not applied yet

            back_up(scratch_url, backup)
            namespace = instance_id(runtime.engine)

            run_jobs(runtime)  # applies the waiting event: that effect is lost with the restore
            lost = {n: post_htx(web, _fill(n)).json()["event_id"] for n in (4, 5)}
            run_jobs(runtime)
            # Received after the backup and never applied: its job still waits in Redis.
            lost[6] = post_htx(web, _fill(6)).json()["event_id"]
            before = _transactions(web)
        assert {r["remarks"] for r in before} == {*applied, waiting, lost[4], lost[5]}

        # Restoring: 1. stop every process; 2. restore; 3. leave Redis as it is.
        runtime.engine.dispose()
        restore(scratch_url, backup)
        assert redis_client.keys("hl:dd:*")  # Redis still remembers the lost receipts
        assert runtime.events.queue.count == 1  # and the lost receipt's job
        assert count(runtime.engine, InboundEvent) == 3
        assert event(runtime.engine, waiting).status == "received"
        # The restored database is the same database: Redis's keys name it.
        assert instance_id(runtime.engine) == namespace

        # 5. start again; 6. reconcile: the event the backup holds unapplied is queued again.
        with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as web:
            reconciled = hookledger(site, "reconcile")
            assert reconciled.returncode == 0, reconciled.stderr
            assert f"re-queued {waiting}" in reconciled.stdout

            # 7. the senders resend what was received after the backup (and, as senders do,
            # some of what the backup holds).
            redelivered = {n: post_htx(web, _fill(n)).json() for n in (1, 3)}
            resent = {n: post_htx(web, _fill(n)).json() for n in lost}
            run_jobs(runtime)
            after = _transactions(web)
            again = {n: post_htx(web, _fill(n)).json() for n in lost}

        assert redelivered == {
            1: {"status": "duplicate", "event_id": applied[0]},
            3: {"status": "duplicate", "event_id": waiting},
        }
        assert {r["status"] for r in resent.values()} == {"accepted"}
        stored = {n: r["event_id"] for n, r in resent.items()}
        assert not set(stored.values()) & set(lost.values())
        assert again == {n: {"status": "duplicate", "event_id": stored[n]} for n in lost}

        every = [*applied, waiting, *stored.values()]
        assert count(runtime.engine, InboundEvent) == len(every)
        assert {event(runtime.engine, e).status for e in every} == {"processed"}
        assert count(runtime.engine, InboundEvent, col(InboundEvent.id).in_(lost.values())) == 0

        # 8. the ledger: every event once, the same as before the restore plus order 6.
        verified = hookledger(site, "ledger", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        postings_per_event = Counter(r["remarks"] for r in after)
        assert set(postings_per_event) == set(every)
        assert {postings_per_event[e] for e in every} == {3}  # USDT out, BTC in, BTC fee out
        sixth = [r for r in after if r["remarks"] == stored[6]]
        assert _movements(after) - _movements(sixth) == _movements(before)
        orders = sum(range(1, 7))  # every amount is the order number times a unit
        assert _balances(after) == {
            "USDT": Decimal("-210.25") * orders,
            "BTC": (Decimal("0.005") - Decimal("0.00001")) * orders,
        }
    finally:
        set_runtime(None)
        runtime.close()
