"""Guessing the admin token is slowed: wrong admin bearer tokens and wrong console logins are
counted per client address in a real Redis, and past ``server.auth_failure_limit`` within
``server.auth_failure_window_s`` the address gets 429 with ``Retry-After``, its attempts no
longer evaluated, until the window ends. Everything through HTTP with the app ``create_app``
builds; the address is judged as the hooks route judges it (X-Forwarded-For only from a
trusted proxy: 127.0.0.1 in the test config).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.console.helpers import csrf_of, login
from tests.support import ADMIN_TOKEN

# counting lives in Redis, not in the database
pytestmark = pytest.mark.sqlite_only

LIMIT = 3
GOOD = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BAD = {"Authorization": "Bearer not-the-admin-token"}
PROXY = ("127.0.0.1", 40000)  # a trusted proxy: its X-Forwarded-For names the client


def throttled(settings: Settings, *, limit: int = LIMIT, window_s: int = 300) -> Settings:
    server = settings.server.model_copy(
        update={"auth_failure_limit": limit, "auth_failure_window_s": window_s}
    )
    return settings.model_copy(
        update={
            "admin_token": ADMIN_TOKEN,
            "file": settings.file.model_copy(update={"server": server}),
        }
    )


@pytest.fixture
def app_for(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """Clients of one app with a small limit, each from a peer address of its choosing."""
    opened: list[TestClient] = []
    apps: dict[int, Any] = {}

    def open_client(peer: tuple[str, int] = PROXY, *, window_s: int = 300) -> TestClient:
        if window_s not in apps:
            apps[window_s] = create_app(throttled(settings, window_s=window_s))
        client = TestClient(apps[window_s], client=peer)
        client.__enter__()
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.__exit__(None, None, None)


def _from(address: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**(headers or {}), "X-Forwarded-For": address}


def _admin(client: TestClient, headers: dict[str, str]) -> Any:
    return client.get("/admin/events", headers=headers)


def _assert_429(answer: Any, window_s: int = 300) -> int:
    assert answer.status_code == 429, answer.text
    wait = int(answer.headers["retry-after"])
    assert 1 <= wait <= window_s
    return wait


# --- the admin API ---------------------------------------------------------------------------


def test_wrong_admin_tokens_past_the_limit_get_429_with_retry_after(app_for):
    client = app_for()
    for _ in range(LIMIT):
        assert _admin(client, _from("203.0.113.7", BAD)).status_code == 401
    refused = _admin(client, _from("203.0.113.7", BAD))
    _assert_429(refused)
    body = refused.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "too_many_requests"
    assert "try again in" in body["message"]
    # Over the limit nothing is evaluated: the right token is refused the same way.
    _assert_429(_admin(client, _from("203.0.113.7", GOOD)))


def test_a_correct_token_works_below_the_limit_and_does_not_reset_it(app_for):
    client = app_for()
    for _ in range(LIMIT - 1):
        assert _admin(client, _from("203.0.113.7", BAD)).status_code == 401
    assert _admin(client, _from("203.0.113.7", GOOD)).status_code == 200
    assert _admin(client, _from("203.0.113.7", BAD)).status_code == 401  # the last one allowed
    _assert_429(_admin(client, _from("203.0.113.7", GOOD)))


def test_another_client_address_is_unaffected(app_for):
    client = app_for()
    for _ in range(LIMIT):
        _admin(client, _from("203.0.113.7", BAD))
    _assert_429(_admin(client, _from("203.0.113.7", GOOD)))
    assert _admin(client, _from("203.0.113.8", GOOD)).status_code == 200
    assert _admin(client, _from("203.0.113.8", BAD)).status_code == 401
    assert _admin(client, GOOD).status_code == 200  # the proxy itself
    assert _admin(app_for(("198.51.100.1", 1)), GOOD).status_code == 200


def test_an_untrusted_peer_cannot_dodge_the_count_with_x_forwarded_for(app_for):
    client = app_for(("198.51.100.9", 1))  # not a trusted proxy: its header is not believed
    for n in range(LIMIT):
        assert _admin(client, _from(f"203.0.113.{n}", BAD)).status_code == 401
    _assert_429(_admin(client, _from("203.0.113.200", GOOD)))
    # ...and it cannot make another address pay for its guesses either.
    assert _admin(app_for(), _from("198.51.100.10", GOOD)).status_code == 200


def test_an_ipv6_client_counts_as_its_64(app_for):
    client = app_for()
    for n in range(LIMIT):
        assert _admin(client, _from(f"2001:db8:1:2::{n + 1}", BAD)).status_code == 401
    _assert_429(_admin(client, _from("2001:db8:1:2:ffff::9", GOOD)))
    assert _admin(client, _from("2001:db8:1:3::1", GOOD)).status_code == 200


def test_requests_without_credentials_are_not_guesses(app_for):
    client = app_for()
    for headers in ({}, {"Authorization": ""}) * LIMIT:
        assert _admin(client, _from("203.0.113.7", headers)).status_code == 401
    assert _admin(client, _from("203.0.113.7", GOOD)).status_code == 200


def _until_allowed(attempt: Callable[[], Any], window_s: int) -> None:
    """Fail ``attempt`` until the address is refused, then wait until it is let in again."""
    deadline = time.monotonic() + 30
    answer = attempt()
    while answer.status_code != 429:  # a slow machine may see a window end on the way
        assert answer.status_code == 401, answer.text
        assert time.monotonic() < deadline, "never throttled"
        answer = attempt()
    _assert_429(answer, window_s)
    while answer.status_code == 429:
        assert time.monotonic() < deadline, "still refused long after the window"
        time.sleep(0.1)
        answer = attempt()
    assert answer.status_code == 401  # evaluated again: a wrong token is just wrong


def test_the_address_may_try_again_when_the_window_ends(app_for):
    client = app_for(window_s=1)
    _until_allowed(lambda: _admin(client, _from("203.0.113.7", BAD)), 1)
    assert _admin(client, _from("203.0.113.7", GOOD)).status_code == 200


def test_redis_down_is_a_503_not_a_pass(settings):
    app = create_app(throttled(settings).model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    with TestClient(app, client=PROXY) as client:
        for headers in (GOOD, BAD):
            answer = _admin(client, headers)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "unavailable"


# --- the console login -------------------------------------------------------------------------


def _login(client: TestClient, token: str, address: str) -> Any:
    form = client.get("/console/login", headers=_from(address))
    data = {"csrf": csrf_of(form.text), "token": token, "name": "mallory"}
    return client.post("/console/login", data=data, headers=_from(address), follow_redirects=False)


def test_console_logins_are_throttled_the_same_way(app_for):
    client = app_for()
    for _ in range(LIMIT):
        assert _login(client, "not-the-token", "203.0.113.7").status_code == 401
    refused = _login(client, ADMIN_TOKEN, "203.0.113.7")
    _assert_429(refused)
    assert refused.headers["content-type"].startswith("text/html")
    assert "Too many wrong tokens" in refused.text
    assert 'name="token"' in refused.text  # the login page, with its form
    assert client.get("/console/events", follow_redirects=False).status_code == 303
    assert _login(client, ADMIN_TOKEN, "203.0.113.8").status_code == 303


def test_console_and_admin_api_share_one_count(app_for):
    client = app_for()
    assert _login(client, "not-the-token", "203.0.113.7").status_code == 401
    for _ in range(LIMIT - 1):
        assert _admin(client, _from("203.0.113.7", BAD)).status_code == 401
    _assert_429(_login(client, ADMIN_TOKEN, "203.0.113.7"))
    _assert_429(_admin(client, _from("203.0.113.7", GOOD)))


def test_a_console_address_may_log_in_again_when_the_window_ends(app_for):
    client = app_for(window_s=1)
    _until_allowed(lambda: _login(client, "not-the-token", "203.0.113.7"), 1)
    assert _login(client, ADMIN_TOKEN, "203.0.113.7").status_code == 303


def test_throttled_requests_are_counted(app_for):
    client = app_for()

    def count(surface: str) -> float:
        text = client.get("/metrics").text
        line = f'hookledger_auth_throttled_total{{surface="{surface}"}} '
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = count("admin"), count("console")
    for _ in range(LIMIT + 2):
        _admin(client, _from("203.0.113.7", BAD))
    _login(client, ADMIN_TOKEN, "203.0.113.7")
    assert (count("admin"), count("console")) == (before[0] + 2, before[1] + 1)


# --- the same work whatever the name -------------------------------------------------------------


def test_every_login_does_the_same_comparisons_whatever_the_name(app_for, monkeypatch):
    """The name is a label, not an account: no name takes another path than any other."""
    client = app_for()
    real = hmac.compare_digest
    seen: list[list[tuple[int, int]]] = []
    for n, name in enumerate(("alice", "", "no-such-person", "admin")):
        calls: list[tuple[int, int]] = []

        def counting(a: Any, b: Any, calls: list[tuple[int, int]] = calls) -> bool:
            calls.append((len(a), len(b)))
            return real(a, b)

        address = _from(f"203.0.113.{n}")  # one address each: none of them is throttled
        form = client.get("/console/login", headers=address)
        data = {"csrf": csrf_of(form.text), "token": "not-the-token", "name": name}
        monkeypatch.setattr(hmac, "compare_digest", counting)
        answer = client.post("/console/login", data=data, headers=address)
        monkeypatch.setattr(hmac, "compare_digest", real)
        assert answer.status_code == 401
        seen.append(calls)
        client.cookies.clear()
    assert all(calls == seen[0] for calls in seen)
    assert (len("not-the-token"), len(ADMIN_TOKEN)) in seen[0]  # the token, compared once
    assert login(client, name="bob").status_code == 303
