"""Processes started together on a fresh database (``hookledger up``, a deploy's first hosts)
all come up: schema upgrades are serialised, not raced."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect

from app.store import schema
from app.store.db import make_engine
from app.store.models import SQLModel
from tests.conftest import PG_DB, fresh_pg

RACE_DB = f"{PG_DB}_race"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_upgrading_the_schema_together_all_succeed(kind, tmp_path: Path):
    url = f"sqlite:///{tmp_path}/race.db" if kind == "sqlite" else fresh_pg(RACE_DB)
    engines = [make_engine(url) for _ in range(6)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def upgrade(engine) -> None:
        start.wait()
        try:
            schema.upgrade(engine)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        tables = set(inspect(engines[0]).get_table_names())
        assert {t.name for t in SQLModel.metadata.sorted_tables} <= tables
        assert schema.state(engines[0]).status == "current"
    finally:
        for engine in engines:
            engine.dispose()
