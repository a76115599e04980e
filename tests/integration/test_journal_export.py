"""``hookledger ledger export --format beancount|hledger``: journals the accountants' own tools
accept, whose balances are hookledger's, and which those tools reject once tampered with."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from app.journals import account_name, commodity
from app.store.models import AccountBalance
from tests.conftest import IN_CI
from tests.support import (
    fixture_json,
    hookledger,
    htx_update,
    post_htx,
    post_pp,
    post_trx,
    run_jobs,
)

WHOLE = ("--from", "2000-01-01", "--to", "2999-12-31")


def _tool(fmt: str) -> list[str]:
    """The checker of ``fmt``'s journals, as a command prefix (skip without it, fail in CI)."""
    venv_bin = Path(__file__).resolve().parents[2] / ".venv" / "bin"
    found = (
        shutil.which("bean-check", path=f"{venv_bin}:{os.environ.get('PATH', '')}")
        if fmt == "beancount"
        else shutil.which("hledger")
    )
    if found is None:
        what = "bean-check (pip install beancount)" if fmt == "beancount" else "hledger"
        if IN_CI:
            pytest.fail(f"{what} is not installed; CI must run these tests", pytrace=False)
        pytest.skip(f"{what} is not installed")
    return [found] if fmt == "beancount" else [found, "-f"]


def _check(fmt: str, path: Path) -> subprocess.CompletedProcess[str]:
    args = [*_tool(fmt), str(path)] + (["check"] if fmt == "hledger" else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def _export(env, tmp_path: Path, fmt: str, *args: str) -> Path:
    path = tmp_path / f"ledger.{fmt}"
    result = hookledger(env, "ledger", "export", "--format", fmt, "-o", str(path), *args)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def ledger(client, runtime):
    """Two orders (one filled in two parts, one partly), an FX settlement and a deposit; the
    deposit dated a day before the rest, as a counterpart's clock may date it, so date order
    and posting order differ."""
    post_htx(client, htx_update(1, "partial-filled", "0.01", "420", "0.00002"))
    post_htx(client, htx_update(1, "filled", "0.03", "1260.7", "0.00006"))
    post_htx(client, htx_update(2, "partial-filled", "0.005", "210.25", "0.00001"))
    post_pp(client, fixture_json("pingpong_position_settle.json"))
    post_trx(client, fixture_json("trx_deposit.json"))
    run_jobs(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE journal_entries SET date = date - 86400 WHERE market = 'tron'"))
        conn.execute(text("UPDATE postings SET date = date - 86400 WHERE market = 'tron'"))
    return runtime


def _balances(engine) -> dict[tuple[str, str], Decimal]:
    with Session(engine) as session:
        return {
            (account_name(b.account_id), commodity(b.currency)): b.balance
            for b in session.execute(select(AccountBalance)).scalars()
            if b.balance != 0
        }


def _hledger_balances(path: Path) -> dict[tuple[str, str], Decimal]:
    result = subprocess.run(
        ["hledger", "-f", str(path), "bal", "--flat", "--no-total", "--layout=bare", "-O", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    return {(r["account"], r["commodity"]): Decimal(r["balance"]) for r in rows}


@pytest.mark.parametrize("fmt", ["beancount", "hledger"])
def test_the_tools_accept_the_journal(ledger, env, tmp_path, fmt):
    path = _export(env, tmp_path, fmt, *WHOLE)
    checked = _check(fmt, path)
    assert checked.returncode == 0, checked.stdout + checked.stderr + path.read_text()
    body = path.read_text()
    assert body.count("event-id") == 5  # one transaction per entry
    if fmt == "beancount":
        assert "Assets:Hookledger:1001" in body
        assert re.search(
            r"^\d{4}-\d\d-\d\d balance Assets:Hookledger:1001 +0\.03493 BTC$", body, re.M
        )
    else:
        assert _hledger_balances(path) == _balances(ledger.engine)


@pytest.mark.parametrize("fmt", ["beancount", "hledger"])
@pytest.mark.parametrize("tamper", ["posting", "assertion"])
def test_the_tools_reject_a_tampered_journal(ledger, env, tmp_path, fmt, tamper):
    path = _export(env, tmp_path, fmt, *WHOLE)
    lines = path.read_text().splitlines()
    if tamper == "posting":
        at = next(i for i, line in enumerate(lines) if line.endswith(" 0.01 BTC"))
        lines[at] = lines[at].replace(" 0.01 BTC", " 0.011 BTC")
    else:
        marker = " balance " if fmt == "beancount" else " = "
        at = next(i for i, line in enumerate(lines) if marker in line and "BTC" in line)
        head, number, tail = re.fullmatch(r"(.*[ =] +)(-?[0-9.]+)( BTC)", lines[at]).groups()
        lines[at] = f"{head}{Decimal(number) + Decimal('0.001')}{tail}"
    path.write_text("\n".join(lines) + "\n")
    checked = _check(fmt, path)
    assert checked.returncode != 0, path.read_text()


@pytest.mark.parametrize("fmt", ["beancount", "hledger"])
def test_one_account_from_a_day_carries_whole_entries_and_an_opening(ledger, env, tmp_path, fmt):
    # Every entry is dated today except the deposit (yesterday): from today on, account 3003's
    # deposit is before the range and arrives as an opening balance; 1001 has three entries.
    with Session(ledger.engine) as session:
        today = max(
            int(d) for d in session.execute(text("SELECT date FROM journal_entries")).scalars()
        )
    day = str(today - today % 86400)
    path = _export(env, tmp_path, fmt, "--from", day, "--to", "2999-12-31", "--account", "1001")
    checked = _check(fmt, path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    body = path.read_text()
    assert body.count("event-id") == 3
    assert "Hookledger:2002" not in body  # the FX contract is another account's entry
    venue = account_name("htx-main:venue")
    assert venue in body  # the counterpart legs of 1001's entries

    path = _export(env, tmp_path, fmt, "--from", day, "--to", "2999-12-31", "--account", "3003")
    body = path.read_text()
    assert "event-id" not in body
    assert "opening balances" in body
    assert _check(fmt, path).returncode == 0


def test_a_whole_ledger_export_fails_when_the_balance_rows_disagree(ledger, env, tmp_path):
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE account_balances SET balance = 7 WHERE account_id = '3003'"))
    path = tmp_path / "ledger.beancount"
    result = hookledger(env, "ledger", "export", "--format", "beancount", "-o", str(path), *WHOLE)
    assert result.returncode == 1
    assert "3003 TRX: entries sum to" in result.stderr
    assert "balance row says 7" in result.stderr
    # The journal itself is consistent: it is the ledger's balance row that is wrong.
    assert _check("beancount", path).returncode == 0


def test_names_are_valid_and_distinct():
    assert account_name("1001") == "Assets:Hookledger:1001"
    venue = account_name("htx-main:venue")
    assert re.fullmatch(r"Assets:Hookledger:Htx-main-venue-[0-9a-f]{8}", venue)
    assert account_name("htx-main-venue") != account_name("htx-main:venue")
    assert account_name("_x").startswith("Assets:Hookledger:X-x-")
    assert commodity("USDT") == "USDT"
    assert re.fullmatch(r"XUSDT[0-9A-F]{8}", commodity("usdt"))
    assert commodity("usdt") != commodity("USDT")
