"""PostgreSQL's own guard on the journal: every entry balances per currency, checked by a
statement trigger over the entries a statement touched. Rows are written past the application,
as a bad manual fix or a bug in another writer would."""

# ruff: noqa: S608 - the SQL is built from this module's constants and the table's column names

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from app.kinds import verify_ledger
from app.store.models import LedgerPosting, table_of
from tests.support import fixture_json, htx_update, post_htx, post_pp, run_jobs

# PostgreSQL only: SQLite has no statement triggers with transition tables.
pytestmark = pytest.mark.postgresql_only


@pytest.fixture
def engine(client, runtime):
    """A ledger with an HTX fill's and a PingPong settlement's entries."""
    post_htx(client, htx_update(1, "partial-filled", "0.01", "420", "0.00002"))
    post_pp(client, fixture_json("pingpong_position_settle.json"))
    run_jobs(runtime)
    return runtime.engine


NAMES = [c.name for c in table_of(LedgerPosting).columns if c.name != "id"]
COLUMNS = ", ".join(NAMES)


def copy_of(posting: str, *, amount: str) -> str:
    """SQL selecting a copy of the posting ``posting`` (a subquery for its id) for ``amount``."""
    changed = {
        "amount": f"{amount}::numeric",
        "io_type": f"CASE WHEN {amount} > 0 THEN 'in' ELSE 'out' END",
    }
    select_list = ", ".join(changed.get(name, name) for name in NAMES)
    return f"SELECT {select_list} FROM postings WHERE id = ({posting})"


FIRST = "SELECT MIN(id) FROM postings"
LAST = "SELECT MAX(id) FROM postings"
LAST_ENTRY = f"SELECT entry_id FROM postings WHERE id = ({LAST})"


def execute(engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def posting_count(engine, where: str = "TRUE") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM postings WHERE {where}")).scalar_one())


def test_an_extra_leg_is_refused(engine):
    before = posting_count(engine)
    with pytest.raises(DBAPIError, match="does not balance"):
        execute(engine, f"INSERT INTO postings ({COLUMNS}) {copy_of(FIRST, amount='1')}")
    assert posting_count(engine) == before


def test_a_balanced_pair_in_one_statement_is_taken(engine):
    before = posting_count(engine)
    execute(
        engine,
        f"INSERT INTO postings ({COLUMNS}) {copy_of(FIRST, amount='5')} "
        f"UNION ALL {copy_of(FIRST, amount='-5')}",
    )
    assert posting_count(engine) == before + 2


def test_an_entry_written_in_pieces_is_refused(engine):
    """Each statement must leave its entries balanced: a pair split over two is refused at the
    first, even inside one transaction."""
    with pytest.raises(DBAPIError, match="does not balance"):
        execute(
            engine,
            f"INSERT INTO postings ({COLUMNS}) {copy_of(FIRST, amount='5')}",
            f"INSERT INTO postings ({COLUMNS}) {copy_of(FIRST, amount='-5')}",
        )


def test_changing_an_amount_is_refused(engine):
    with pytest.raises(DBAPIError, match="does not balance"):
        execute(engine, f"UPDATE postings SET amount = amount * 2 WHERE id = ({FIRST})")


def test_moving_a_leg_to_another_entry_is_refused(engine):
    """The entry a posting leaves is checked too, not only the one it joins."""
    with pytest.raises(DBAPIError, match="does not balance"):
        execute(
            engine,
            f"UPDATE postings SET entry_id = ({LAST_ENTRY}) WHERE id = ({FIRST})",
        )


def test_an_update_that_keeps_every_sum_is_taken(engine):
    before = posting_count(engine)
    execute(engine, f"UPDATE postings SET product_name = 'renamed' WHERE id = ({FIRST})")
    assert posting_count(engine, f"product_name = 'renamed' AND id = ({FIRST})") == 1
    assert posting_count(engine) == before
    with Session(engine) as session:
        report = verify_ledger(session, ("USDT", "USD"))
    assert report.breaches == []


def test_deleting_a_leg_is_refused(engine):
    before = posting_count(engine)
    with pytest.raises(DBAPIError, match="does not balance"):
        execute(engine, f"DELETE FROM postings WHERE id = ({LAST})")
    assert posting_count(engine) == before


def test_deleting_a_whole_balanced_entry_is_taken(engine):
    """The guard is the balance: an entry's every leg deleted in one statement leaves nothing
    unbalanced. ``ledger verify`` still reports the entry left without legs."""
    before = posting_count(engine)
    legs = posting_count(engine, f"entry_id = ({LAST_ENTRY})")
    execute(engine, f"DELETE FROM postings WHERE entry_id = ({LAST_ENTRY})")
    assert posting_count(engine) == before - legs
    with Session(engine) as session:
        report = verify_ledger(session, ("USDT", "USD"))
    assert any("has no postings" in breach for breach in report.breaches), report.breaches
