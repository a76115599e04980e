"""``hookledger ledger verify`` and ``hookledger ledger export`` on a real ledger."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text

from tests.support import (
    fixture_json,
    hookledger,
    htx_update,
    post_htx,
    post_pp,
    post_trx,
    run_jobs,
)


@pytest.fixture
def ledger(client, runtime):
    post_htx(client, htx_update(1, "partial-filled", "0.01", "420", "0.00002"))
    post_htx(client, htx_update(1, "filled", "0.03", "1260.7", "0.00006"))
    post_pp(client, fixture_json("pingpong_position_settle.json"))
    post_trx(client, fixture_json("trx_deposit.json"))
    run_jobs(runtime)
    return runtime


def test_verify_passes_on_a_sound_ledger(ledger, env):
    result = hookledger(env, "ledger", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ledger OK" in result.stdout
    assert "checked 18 postings, 4 entries, 1 deposits, 1 orders" in result.stdout


@pytest.mark.parametrize(
    ("corruption", "finding"),
    [
        (
            "UPDATE postings SET balance = '999' WHERE id = (SELECT MIN(id) FROM postings)",
            "should be",
        ),
        ("DELETE FROM postings WHERE id = (SELECT MAX(id) FROM postings)", "do not sum to zero"),
        ("UPDATE orders SET filled_amount = '0.04'", "its events added"),
        (
            "UPDATE account_balances SET balance = '1' WHERE currency = 'TRX' AND account_id = '3003'",
            "postings sum to",
        ),
        ("UPDATE inbound_events SET status = 'dead' WHERE source = 'pp'", "not processed"),
    ],
    ids=["running-balance", "missing-leg", "order-amount", "balance-row", "event-status"],
)
def test_verify_fails_on_a_corrupted_row(ledger, env, corruption, finding):
    engine = ledger.engine
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Corrupt past the database's own guards, as a bad manual fix would.
            conn.execute(text("SET session_replication_role = replica"))
            corruption = (
                corruption.replace("'999'", "999").replace("'0.04'", "0.04").replace("= '1'", "= 1")
            )
        conn.execute(text(corruption))
    result = hookledger(env, "ledger", "verify")
    assert result.returncode == 1
    assert "ledger BROKEN" in result.stdout
    assert finding in result.stdout


def test_export_csv_and_json_carry_the_same_rows(ledger, env):
    as_csv = hookledger(
        env, "ledger", "export", "--from", "2000-01-01", "--to", "2999-12-31", "--account", "1001"
    )
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["base_currency"], r["io_type"], r["amt"], r["balance"]) for r in rows] == [
        ("BTC", "in", "0.01", "0.01"),
        ("USDT", "out", "420", "-420"),
        ("BTC", "out", "0.00002", "0.00998"),
        ("BTC", "in", "0.02", "0.02998"),
        ("USDT", "out", "840.7", "-1260.7"),
        ("BTC", "out", "0.00004", "0.02994"),
    ]
    as_json = hookledger(
        env,
        "ledger",
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2999-12-31",
        "--format",
        "json",
    )
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout, parse_float=str)
    assert len(data) == 9  # 6 for 1001, 2 for 2002, 1 for 3003
    assert data[4]["amt"] == "840.7"  # an exact JSON number


def test_export_refuses_a_reversed_range(ledger, env):
    result = hookledger(env, "ledger", "export", "--from", "2026-02-01", "--to", "2026-01-01")
    assert result.returncode == 2
    assert "after --to" in result.stderr
    result = hookledger(env, "ledger", "export", "--from", "last week", "--to", "2026-01-01")
    assert result.returncode == 2
    assert "neither a date (YYYY-MM-DD, UTC) nor Unix seconds" in result.stderr
