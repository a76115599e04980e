"""Console logins live in Redis, so logout ends them for every copy of the cookie and in every
web process, and a Redis that cannot be asked is a 503 page, never a login taken on trust.
Through HTTP with the app ``create_app`` builds, against a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from redis import Redis
from starlette.testclient import TestClient

from app.console.session import COOKIE
from app.main import create_app
from app.settings import Settings
from tests.console.helpers import csrf_of, login, post_form
from tests.support import ADMIN_TOKEN

# sessions live in Redis, not in the database
pytestmark = pytest.mark.sqlite_only

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there


def _as(client: TestClient, method: str, path: str, cookie: str, **kwargs: Any) -> Any:
    """A request with exactly this session cookie, whatever the client's jar holds."""
    return client.request(
        method, path, headers={"cookie": f"{COOKIE}={cookie}"}, follow_redirects=False, **kwargs
    )


def _assert_to_login(answer: Any) -> None:
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/console/login")


def test_a_cookie_copied_before_logout_is_refused_after_it(console):
    assert login(console, name="alice").status_code == 303
    copied = console.cookies[COOKIE]
    page = _as(console, "GET", "/console/dead-letters", copied)
    assert page.status_code == 200

    out = post_form(console, "/console/logout", {}, page=page.text)
    assert out.status_code == 303
    assert out.headers["location"] == "/console/login"

    _assert_to_login(_as(console, "GET", "/console/events", copied))
    # A form of the ended login, with its own valid CSRF token, is refused the same way.
    data = {"csrf": csrf_of(page.text), "reason": "after logout"}
    _assert_to_login(
        _as(console, "POST", "/console/events/evt_0123abcd/discard", copied, data=data)
    )
    _assert_to_login(_as(console, "POST", "/console/logout", copied, data=data))
    # The login page shows its form to the ended cookie (no redirect loop), and it works.
    form = _as(console, "GET", "/console/login", copied)
    assert form.status_code == 200
    assert 'name="token"' in form.text


def test_logout_in_one_web_process_ends_the_login_in_every_other(admin_settings):
    with (
        TestClient(create_app(admin_settings)) as first,
        TestClient(create_app(admin_settings)) as second,
    ):
        assert login(first, name="alice").status_code == 303
        cookie = first.cookies[COOKIE]
        assert _as(second, "GET", "/console/events", cookie).status_code == 200
        page = _as(second, "GET", "/console/dead-letters", cookie)
        out = _as(second, "POST", "/console/logout", cookie, data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        _assert_to_login(_as(first, "GET", "/console/events", cookie))
        _assert_to_login(first.get("/console/events", follow_redirects=False))


def test_logging_in_again_ends_the_previous_login(console):
    assert login(console, name="alice").status_code == 303
    earlier = console.cookies[COOKIE]
    # A login form sent from a page of a live login (an old tab) replaces that login.
    page = _as(console, "GET", "/console/events", earlier)
    data = {"csrf": csrf_of(page.text), "token": ADMIN_TOKEN, "name": "bob"}
    again = _as(console, "POST", "/console/login", earlier, data=data)
    assert again.status_code == 303
    later = again.cookies[COOKIE]
    assert later != earlier
    _assert_to_login(_as(console, "GET", "/console/events", earlier))
    shown = _as(console, "GET", "/console/events", later)
    assert shown.status_code == 200
    assert "console:bob" in shown.text


def test_a_redis_that_forgets_its_data_logs_everyone_out(console, redis_client: Redis):
    assert login(console).status_code == 303
    assert console.get("/console/events", follow_redirects=False).status_code == 200
    redis_client.flushdb()
    _assert_to_login(console.get("/console/events", follow_redirects=False))


def test_without_redis_the_console_refuses_with_a_page_not_a_500(console, admin_settings: Settings):
    assert login(console, name="alice").status_code == 303
    cookie = console.cookies[COOKIE]  # signed with the same admin token: only Redis differs
    app = create_app(admin_settings.model_copy(update={"redis_url": NO_REDIS}))
    with TestClient(app) as offline:
        page = _as(offline, "GET", "/console/events", cookie)
        assert page.status_code == 503
        assert "Redis is unavailable" in page.text
        assert "Log out" not in page.text  # a login that cannot be checked is not shown as one

        form = offline.get("/console/login")
        assert form.status_code == 200  # the form needs no Redis; judging it does
        refused = offline.post(
            "/console/login",
            data={"csrf": csrf_of(form.text), "token": "anything"},
            follow_redirects=False,
        )
        assert refused.status_code == 503
        assert "Logging in needs Redis" in refused.text
        _assert_to_login(offline.get("/console/events", follow_redirects=False))
    assert _as(console, "GET", "/console/events", cookie).status_code == 200  # still live
