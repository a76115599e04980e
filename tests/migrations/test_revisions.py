"""The revisions and the models agree, every revision goes up and down on both databases, and
processes refuse a database behind or ahead of their code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import app.kinds  # noqa: F401 - every source kind's tables, on the metadata
from app.store import schema
from app.store.db import make_engine
from tests.conftest import PG_DB, fresh_pg
from tests.support import FINANCE_SECRET, HTX_SECRET, hookledger

SCRATCH_DB = f"{PG_DB}_revisions"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/empty.db"
    return fresh_pg(SCRATCH_DB)


@pytest.fixture
def engine(empty_url: str):
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def test_the_models_and_the_revisions_agree(engine):
    schema.upgrade(engine)
    with engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert differences == []


def test_every_revision_goes_up_and_down(engine):
    revisions = [r.revision for r in schema.history()]
    assert revisions[0] == schema.BASELINE
    for revision in revisions:
        schema.upgrade(engine, revision)
        assert schema.state(engine).database == (revision,)
    for below in [*reversed(revisions[:-1]), "base"]:
        schema.downgrade(engine, below)
    assert schema.state(engine).status == "empty"
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    schema.upgrade(engine)
    assert schema.state(engine).status == "current"


@pytest.fixture
def cli_env(config_path: Path, redis_url: str, empty_url: str) -> dict[str, str]:
    """The environment of a hookledger process on the scratch database."""
    return {
        **os.environ,
        "HOOKLEDGER_CONFIG": str(config_path),
        "HOOKLEDGER_DATABASE_URL": empty_url,
        "HOOKLEDGER_REDIS_URL": redis_url,
        "TEST_HTX_SECRET": HTX_SECRET,
        "TEST_FINANCE_SECRET": FINANCE_SECRET,
    }


@pytest.mark.slow
def test_processes_refuse_a_database_behind_or_ahead_of_their_code(cli_env, engine):
    env = cli_env
    cases = {"empty": None, "behind": schema.BASELINE, "ahead": "9f9f9f9f"}
    for status, revision in cases.items():
        if revision == schema.BASELINE:
            schema.upgrade(engine, revision)
        elif revision is not None:
            with engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        assert schema.state(engine).status == status
        commands = [["worker", "--burst"], ["sweeper"], ["web", "--port", "1"]]
        for command in commands if status != "empty" else commands[:1]:
            result = hookledger(env, *command)
            assert result.returncode == 2, (status, command, result.stderr)
            assert "hookledger db upgrade" in result.stderr, result.stderr
        check = hookledger(env, "db", "check")
        assert check.returncode == 1
        assert "hookledger db upgrade" in check.stderr
        if status == "behind":
            schema.upgrade(engine)  # and on to the next case from head
    # A newer release's database is not "upgraded" by older code: it says so, and changes nothing.
    refused = hookledger(env, "db", "upgrade")
    assert refused.returncode == 2
    assert "newer release" in refused.stderr
    assert schema.state(engine).database == ("9f9f9f9f",)


def test_db_commands_say_where_the_database_stands(cli_env):
    env = cli_env
    head = schema.code_heads()[0]
    assert "database: none (empty)" in hookledger(env, "db", "current").stdout
    upgraded = hookledger(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded to {schema.BASELINE}" in upgraded.stdout
    assert f"database at revision {head}" in upgraded.stdout
    again = hookledger(env, "db", "upgrade")
    assert "nothing to do" in again.stdout
    current = hookledger(env, "db", "current").stdout
    assert f"database: {head} (current)" in current
    assert f"code:     {head}" in current
    assert hookledger(env, "db", "check").returncode == 0
    history = hookledger(env, "db", "history").stdout.splitlines()
    assert history[0].startswith(f"{schema.BASELINE}  ")
    assert "(head)" in history[-1]
    bad = hookledger(env, "db", "upgrade", "--to", "nope")
    assert bad.returncode == 2
    assert "nope" in bad.stderr
