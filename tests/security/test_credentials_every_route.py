"""Every admin and accountants' API route refuses missing and wrong credentials with 401 and
the contract's error body, before it looks at anything else (ids, parameters, bodies).

The routes are read from the application ``app.main.create_app`` builds, so a route added
later is covered, or this module fails when it appears without being classified.

Already covered elsewhere for one route each: tests/integration/test_ops.py
``test_admin_api_refuses_missing_wrong_and_unconfigured_tokens`` (GET /admin/events) and
tests/integration/test_accounts_api.py ``test_signature_matrix`` (GET /account/v1/transactions).
"""

from __future__ import annotations

import base64
import re
import textwrap
import time
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from app.domain.apikeys import sign
from app.main import create_app
from app.settings import Settings, parse_config
from tests.canary import remember_signature
from tests.support import (
    ADMIN_TOKEN,
    API_SECRETS,
    FINANCE_SECRET,
    HTX_SECRET,
    TEST_CONFIG,
    TREASURY_SECRET,
)

# authentication does not depend on the database
pytestmark = pytest.mark.sqlite_only

_PARAMS = {"event_id": "evt_0123456789abcdef", "source": "htx-main", "order_id": "1"}


def _routes(prefix: str) -> list[tuple[str, str]]:
    """(method, concrete path) of every route of the real app under ``prefix``."""
    settings = Settings(
        config_path="routes",
        database_url="sqlite://",
        redis_url=None,
        admin_token=None,
        file=parse_config(
            textwrap.dedent(TEST_CONFIG),
            {"TEST_HTX_SECRET": HTX_SECRET, "TEST_FINANCE_SECRET": FINANCE_SECRET},
        ),
    )
    found = []
    for route in create_app(settings).routes:
        if isinstance(route, Route) and route.path.startswith(prefix):
            path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: _PARAMS.get(m.group(1), "x"), route.path)
            found += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


ADMIN_ROUTES = _routes("/admin")
LEDGER_ROUTES = _routes("/account/")


def test_the_route_lists_are_the_real_ones():
    assert ("GET", "/admin/events") in ADMIN_ROUTES
    assert ("POST", "/admin/dead-letters/replay") in ADMIN_ROUTES
    assert len(ADMIN_ROUTES) >= 5
    assert ("GET", "/account/v1/transactions") in LEDGER_ROUTES
    assert ("GET", "/account/v1/orders/htx-main/1") in LEDGER_ROUTES
    assert len(LEDGER_ROUTES) >= 6
    every = {p for _, p in _routes("/")}
    unclassified = {
        p
        for p in every
        if not p.startswith(("/admin", "/account/", "/hooks/"))
        and p not in {"/healthz", "/readyz", "/metrics", "/openapi.json"}
    }
    assert not unclassified, f"new routes: decide whether they need credentials: {unclassified}"


def _send(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    # A body a handler would act on: were authentication skipped, the call would do something.
    body = b'{"reason": "test", "dry_run": false}' if method == "POST" else None
    return client.request(
        method, path, content=body, headers={"content-type": "application/json", **headers}
    )


# --- the admin API -------------------------------------------------------------------------

ADMIN_CASES = {
    "missing": {},
    "empty": {"Authorization": ""},
    "bearer-nothing": {"Authorization": "Bearer "},
    "wrong-token": {"Authorization": "Bearer not-the-admin-token"},
    "truncated-token": {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    "extended-token": {"Authorization": f"Bearer {ADMIN_TOKEN}0"},
    "no-scheme": {"Authorization": ADMIN_TOKEN},
    "basic-scheme": {"Authorization": f"Basic {ADMIN_TOKEN}"},
    "basic-credentials": {
        "Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
    },
    "token-scheme": {"Authorization": f"Token {ADMIN_TOKEN}"},
    "other-header": {"X-Admin-Token": ADMIN_TOKEN},
}


def _assert_admin_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == "unauthorized"
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize("case", list(ADMIN_CASES))
@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_refuse_bad_credentials(admin_client, method, path, case):
    _assert_admin_401(_send(admin_client, method, path, ADMIN_CASES[case]))


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_refuse_a_token_in_the_query_string(admin_client, method, path):
    for name in ("token", "access_token", "admin_token"):
        _assert_admin_401(_send(admin_client, method, f"{path}?{name}={ADMIN_TOKEN}", {}))


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_refuse_everyone_when_no_token_is_configured(client, method, path):
    response = _send(client, method, path, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    _assert_admin_401(response)
    assert "disabled" in response.json()["message"]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_let_the_right_token_through(admin_client, method, path):
    """The control: the same requests with the right token get past authentication."""
    for scheme in ("Bearer", "bearer"):
        response = _send(admin_client, method, path, {"Authorization": f"{scheme} {ADMIN_TOKEN}"})
        assert response.status_code != 401, response.text
        assert response.status_code < 500, response.text


# --- the accountants' API ------------------------------------------------------------------


def _signed(
    method: str,
    path: str,
    *,
    key: str = "ak_finance",
    secret: str | None = None,
    stamp_ms: int | None = None,
    sign_method: str | None = None,
    sign_path: str | None = None,
) -> dict[str, str]:
    stamp = str(int(time.time() * 1000) if stamp_ms is None else stamp_ms)
    signature = sign(
        secret or API_SECRETS.get(key, "no-such-secret"),
        stamp,
        sign_method or method,
        sign_path or path,
        "",
    )
    remember_signature(signature)
    return {"X-API-Key": key, "X-API-Timestamp": stamp, "X-API-Signature": signature}


def _now_ms() -> int:
    return int(time.time() * 1000)


LEDGER_CASES = {
    "missing": lambda m, p: {},
    "key-only": lambda m, p: {"X-API-Key": "ak_finance"},
    "no-signature": lambda m, p: {"X-API-Key": "ak_finance", "X-API-Timestamp": str(_now_ms())},
    "no-timestamp": lambda m, p: {k: v for k, v in _signed(m, p).items() if k != "X-API-Timestamp"},
    "no-key": lambda m, p: {k: v for k, v in _signed(m, p).items() if k != "X-API-Key"},
    "unknown-key": lambda m, p: _signed(m, p, key="ak_nobody", secret=FINANCE_SECRET),
    "wrong-signature": lambda m, p: _signed(m, p, secret="not-the-secret"),
    "another-keys-secret": lambda m, p: _signed(m, p, secret=TREASURY_SECRET),
    "garbage-signature": lambda m, p: {**_signed(m, p), "X-API-Signature": "zz" * 32},
    "signed-for-another-path": lambda m, p: _signed(m, p, sign_path="/account/v1/balances-x"),
    "signed-for-another-method": lambda m, p: _signed(m, p, sign_method="POST"),
    "stale-timestamp": lambda m, p: _signed(m, p, stamp_ms=_now_ms() - 301_000),
    "future-timestamp": lambda m, p: _signed(m, p, stamp_ms=_now_ms() + 301_000),
    "seconds-not-ms": lambda m, p: _signed(m, p, stamp_ms=int(time.time())),
    "garbage-timestamp": lambda m, p: {**_signed(m, p), "X-API-Timestamp": "yesterday"},
}


@pytest.mark.parametrize("case", list(LEDGER_CASES))
@pytest.mark.parametrize(("method", "path"), LEDGER_ROUTES)
def test_ledger_routes_refuse_bad_credentials(client, method, path, case):
    response = _send(client, method, path, LEDGER_CASES[case](method, path))
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert isinstance(body["code"], int) and body["code"] != 0
    assert body["message"]


@pytest.mark.parametrize(("method", "path"), LEDGER_ROUTES)
def test_ledger_routes_let_a_signed_request_through(client, method, path):
    """The control: a correctly signed request gets past authentication."""
    for key in ("ak_finance", "ak_auditor"):
        response = _send(client, method, path, _signed(method, path, key=key))
        assert response.status_code in {200, 404}, response.text
        assert response.json()["code"] == 0 or response.status_code == 404
