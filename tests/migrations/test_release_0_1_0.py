"""A database release 0.1.0 made, with data of every kind, upgraded in place: every row is
kept, ``ledger verify`` passes, and the current code answers every read exactly as 0.1.0 did.

The fixture (tests/fixtures/release-0.1.0, see its README) was made by the 0.1.0 code itself:
orders with partial fills, contracts settled and canceled with penalties, deposits, rental
orders, dead, discarded, replayed and pruned events with their actions, signals delivered,
retrying, dead and held by a paused target.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import time
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import load_settings
from app.store import schema
from app.store.db import make_engine
from tests.conftest import PG_DB, PG_SERVER, fresh_pg
from tests.support import hookledger

FIXTURE = Path(__file__).parents[1] / "fixtures" / "release-0.1.0"
ADMIN_TOKEN = "fixture-010-admin-token"  # a fixture-only secret, in its README
RESTORED_DB = f"{PG_DB}_release_0_1_0"


def _restore(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        path = tmp_path / "release-0.1.0.db"
        conn = sqlite3.connect(path)
        conn.executescript((FIXTURE / "sqlite.sql").read_text())
        conn.close()
        return f"sqlite:///{path}"
    url = fresh_pg(RESTORED_DB)
    server = PG_SERVER.split("://", 1)[1]  # root@127.0.0.1:5432
    dump = str(FIXTURE / "postgresql.sql")
    subprocess.run(
        ["psql", f"postgresql://{server}/{RESTORED_DB}", "-q", "-v", "ON_ERROR_STOP=1", "-f", dump],
        check=True,
        capture_output=True,
    )
    return url


def _row_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = sorted(set(inspect(conn).get_table_names()) - {"alembic_version"})
            return {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608
                for t in tables
            }
    finally:
        engine.dispose()


def _headers(auth: str, path: str, api_secrets: dict[str, str]) -> dict[str, str]:
    if auth == "admin":
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    key = auth.removeprefix("api:")
    stamp = str(int(time.time() * 1000))
    route, _, query = path.partition("?")
    message = f"{stamp}GET{route}" + (f"?{query}" if query else "")
    signature = hmac.new(api_secrets[key].encode(), message.encode(), hashlib.sha256).hexdigest()
    return {"X-API-Key": key, "X-API-Timestamp": stamp, "X-API-Signature": signature}


# Fields the admin API's event detail gained since 0.1.0, with the value every event 0.1.0
# stored has (no conflict was recorded before there were conflicts).
ADDED_TO_EVENT_DETAIL: dict[str, Any] = {"conflicts": []}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrading_a_0_1_0_database_keeps_every_row_and_every_answer(kind, tmp_path, redis_url):
    url = _restore(kind, tmp_path)
    before = _row_counts(url)
    assert before["inbound_events"] > 0
    engine = make_engine(url)
    assert schema.state(engine).status == "unversioned"
    env = {
        **os.environ,
        "HOOKLEDGER_CONFIG": str(FIXTURE / "hookledger.toml"),
        "HOOKLEDGER_DATABASE_URL": url,
        "HOOKLEDGER_REDIS_URL": redis_url,
        "HOOKLEDGER_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    refused = hookledger(env, "worker", "--burst")  # not before the upgrade
    assert refused.returncode == 2
    assert "release 0.1.0" in refused.stderr
    assert "hookledger db upgrade" in refused.stderr

    upgraded = hookledger(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "adopting a release 0.1.0 database" in upgraded.stdout
    assert schema.state(engine).status == "current"
    engine.dispose()
    after = _row_counts(url)
    assert {table: after[table] for table in before} == before  # every row kept
    assert all(after[table] == 0 for table in set(after) - set(before))  # new tables, empty
    verify = hookledger(env, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ledger OK" in verify.stdout

    reads = json.loads((FIXTURE / "reads.json").read_text(), parse_float=Decimal)[kind]
    config = tomllib.loads((FIXTURE / "hookledger.toml").read_text())
    api_secrets = {k["key"]: k["secret"] for k in config["api_keys"].values()}
    settings = load_settings(env)
    differences: list[dict[str, Any]] = []
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        for read in reads["requests"]:
            answer = client.get(
                read["path"], headers=_headers(read["auth"], read["path"], api_secrets)
            )
            now = json.loads(answer.text, parse_float=Decimal)
            if read["path"].startswith("/admin/events/evt_") and isinstance(now, dict):
                for name, empty in ADDED_TO_EVENT_DETAIL.items():
                    if now.get(name) == empty:  # what 0.1.0's events have of it: nothing
                        del now[name]
            if (answer.status_code, now) != (read["status"], read["json"]):
                differences.append({"path": read["path"], "then": read["json"], "now": now})
    assert len(reads["requests"]) >= 100
    assert differences == []
