"""Fixtures of the console tests: an app with the admin token set, and a logged-in client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.runtime import Runtime
from app.settings import Settings
from tests.console.helpers import break_orders, heal, login
from tests.support import ADMIN_TOKEN


@pytest.fixture
def admin_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_token": ADMIN_TOKEN})


@pytest.fixture
def console(admin_settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """A browser-like client of an app with the admin token set; not logged in."""
    with TestClient(create_app(admin_settings), client=("127.0.0.1", 50001)) as client:
        yield client


@pytest.fixture
def ops(console: TestClient) -> TestClient:
    """``console``, logged in as alice."""
    answer = login(console, name="alice")
    assert answer.status_code == 303, answer.text
    return console


@pytest.fixture
def broken_orders(runtime: Runtime) -> Iterator[None]:
    break_orders(runtime.engine)
    yield
    heal(runtime.engine)
