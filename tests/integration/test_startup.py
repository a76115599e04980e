"""Processes started together on a fresh database (``hookledger up``, the Procfile) all come up:
table creation is serialised, not raced."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from app.store.db import make_engine
from app.store.models import SQLModel, create_all
from tests.conftest import PG_SERVER, _unavailable

RACE_DB = "hookledger_test_race"


def _fresh_pg() -> str:
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {RACE_DB} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {RACE_DB}"))
    except OperationalError:
        _unavailable("PostgreSQL")
    finally:
        admin.dispose()
    return f"{PG_SERVER}/{RACE_DB}"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_creating_the_schema_together_all_succeed(kind, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/race.db" if kind == "sqlite" else _fresh_pg()
    engines = [make_engine(url) for _ in range(6)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def create(engine) -> None:
        start.wait()
        try:
            create_all(engine)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        tables = set(inspect(engines[0]).get_table_names())
        assert {t.name for t in SQLModel.metadata.sorted_tables} <= tables
    finally:
        for engine in engines:
            engine.dispose()
