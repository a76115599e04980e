"""Fixtures of the fault suite: a private PostgreSQL cluster for the session, a private Redis
and a database per test, and the cluster of hookledger processes on them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.cluster import Cluster
from tests.faults.servers import PrivatePostgres, PrivateRedis


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    private_pg: PrivatePostgres,
    private_redis: PrivateRedis,
) -> Iterator[Cluster]:
    private_pg.start_if_stopped()
    name = "f_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    deployment = Cluster(tmp_path, private_pg.create_database(name), private_redis.url)
    yield deployment
    deployment.close()
