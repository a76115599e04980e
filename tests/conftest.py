"""Shared fixtures: real SQLite and PostgreSQL, a real Redis, the app, burst workers.

Every integration test that takes ``database_url`` runs twice, on SQLite and on PostgreSQL.
PostgreSQL tests use a database of their own (``hookledger_test``, or
``HOOKLEDGER_TEST_PG_DB``), emptied per test; Redis
tests use database 9 of the local server (``HOOKLEDGER_TEST_REDIS_URL``), flushed per test.
Without PostgreSQL or Redis the tests that need them skip, except under ``CI=true``, where a
missing service is an error: CI must run them.

Every secret configured here is a canary (tests/support.py, tests/canary.py): the canary plugin
registered below (tests/canary_plugin.py) captures every log line of the session and fails it if
one ever shows a secret.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from app.main import create_app
from app.runtime import Runtime, build_runtime, set_runtime
from app.settings import Settings, load_settings
from app.store.models import SQLModel
from tests.support import (
    ADMIN_TOKEN,
    FINANCE_SECRET,
    HTX_SECRET,
    TEST_CONFIG,
    upgrade_schema,
)

# Captures every log line of the session and fails it if one shows a secret (tests/canary.py).
pytest_plugins = ["tests.canary_plugin"]

PG_SERVER = os.environ.get("HOOKLEDGER_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432")
PG_DB = os.environ.get("HOOKLEDGER_TEST_PG_DB", "hookledger_test")
REDIS_URL = os.environ.get("HOOKLEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
# Under pytest-xdist (``-n 2``) each worker process gets a database and a Redis database of its
# own: gw0 keeps the ones above, gwN uses "<db>_gwN" and the Redis database N below.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
if _WORKER != "gw0" and _WORKER.startswith("gw"):
    PG_DB = f"{PG_DB}_{_WORKER}"
    _base, _, _db = REDIS_URL.rpartition("/")
    REDIS_URL = f"{_base}/{int(_db) - int(_WORKER[2:])}"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not reachable; CI must run these tests", pytrace=False)
    pytest.skip(f"{what} is not reachable")


def fresh_pg(name: str) -> str:
    """Drop and create PostgreSQL database ``name``; return its URL (skip, or fail in CI,
    when PostgreSQL does not answer)."""
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError:
        _unavailable("PostgreSQL")
    finally:
        admin.dispose()
    return f"{PG_SERVER}/{name}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    return upgrade_schema(fresh_pg(PG_DB))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the code's schema, made once; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("schema") / "template.db"
    upgrade_schema(f"sqlite:///{path}")
    return path


def _empty_pg(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses ``database_url`` runs on SQLite and on PostgreSQL, unless it (or
    its module) is marked ``sqlite_only`` or ``postgresql_only``."""
    if "database_url" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("sqlite_only"):
        databases = ["sqlite"]
    elif metafunc.definition.get_closest_marker("postgresql_only"):
        databases = ["postgresql"]
    else:
        databases = ["sqlite", "postgresql"]
    metafunc.parametrize("database_url", databases, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "ledger.db")
        return f"sqlite:///{tmp_path}/ledger.db"
    url: str = request.getfixturevalue("pg_url")
    _empty_pg(url)
    return url


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.flushdb()
    except (RedisError, OSError):
        _unavailable("Redis")
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "hookledger.toml"
    path.write_text(textwrap.dedent(TEST_CONFIG))
    return path


@pytest.fixture
def env(config_path: Path, database_url: str, redis_url: str) -> dict[str, str]:
    """The environment a hookledger process of this test runs with."""
    return {
        **os.environ,
        "HOOKLEDGER_CONFIG": str(config_path),
        "HOOKLEDGER_DATABASE_URL": database_url,
        "HOOKLEDGER_REDIS_URL": redis_url,
        "TEST_HTX_SECRET": HTX_SECRET,
        "TEST_FINANCE_SECRET": FINANCE_SECRET,
        "HOOKLEDGER_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(config_path.parent / "metrics"),
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = build_runtime(settings)
    set_runtime(rt)
    yield rt
    set_runtime(None)


@pytest.fixture
def client(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as test_client:
        yield test_client


@pytest.fixture
def admin_client(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """The app with ``HOOKLEDGER_ADMIN_TOKEN`` set to the canary ``ADMIN_TOKEN``; requests
    carry no credentials unless the test adds them (``tests.support.admin_auth``)."""
    app = create_app(settings.model_copy(update={"admin_token": ADMIN_TOKEN}))
    with TestClient(app, client=("127.0.0.1", 50001)) as test_client:
        yield test_client
