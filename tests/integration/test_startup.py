"""Processes started together on a fresh database (``hookledger up``, the Procfile) all come up:
table creation is serialised, not raced."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from app.store.db import make_engine
from app.store.models import SQLModel, create_all
from tests.conftest import PG_DB, fresh_pg

RACE_DB = f"{PG_DB}_race"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_creating_the_schema_together_all_succeed(kind, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/race.db" if kind == "sqlite" else fresh_pg(RACE_DB)
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


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_from_before_a_new_nullable_column_gets_it(kind, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/old.db" if kind == "sqlite" else fresh_pg(RACE_DB)
    engine = make_engine(url)
    try:
        create_all(engine)
        with engine.begin() as conn:  # as an older version left it: no queued_job yet
            conn.execute(text("ALTER TABLE inbound_events DROP COLUMN queued_job"))
        assert "queued_job" not in {
            c["name"] for c in inspect(engine).get_columns("inbound_events")
        }
        create_all(engine)
        assert "queued_job" in {c["name"] for c in inspect(engine).get_columns("inbound_events")}
        create_all(engine)  # and again: nothing left to add
    finally:
        engine.dispose()
