"""What the fuzzers found, pinned down as plain cases (each a 500 or a broken answer the code
must never give), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.support import ADMIN_TOKEN, TRX_TOKEN, api_get


@pytest.fixture
def admin(admin_client: TestClient) -> TestClient:
    admin_client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return admin_client


def test_a_trx_push_without_a_string_type_echoes_big_numbers_bounded(client: TestClient) -> None:
    # Was a 500: the 422 echoed the raw body, and orjson cannot write integers past 64 bits.
    for body in (b'{"id": 18446744073709551616}', b'{"type": 5, "n": -99999999999999999999}'):
        response = client.post(
            f"/hooks/trx/{TRX_TOKEN}", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        (problem,) = response.json()["detail"]
        assert problem["loc"] == ["body", "type"]
    assert problem["type"] == "string_type"
    assert problem["input"] == 5


@pytest.mark.parametrize(
    "path",
    [
        "/account/v1/transactions?account_id=%00",
        "/account/v1/balances?account_id=1001%00",
        "/account/v1/orders?account_id=%00",
        "/account/v1/transactions?business_type=deposit&io_type=%00",
    ],
)
def test_nul_in_a_query_parameter_is_400(client: TestClient, path: str) -> None:
    # Was a 500 on PostgreSQL: text parameters cannot hold NUL.
    response = api_get(client, path, key="ak_auditor")
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["details"]


def test_nul_in_an_order_path_is_404(client: TestClient) -> None:
    response = api_get(client, "/account/v1/orders/open/1%00", key="ak_auditor")
    assert response.status_code == 404, response.text
    assert response.json()["code"] == 40401


def test_as_of_id_past_the_integer_id_column_is_400(client: TestClient) -> None:
    # Was a 500 on PostgreSQL: postings.id is INTEGER, 2147483648 does not fit the bind cast.
    response = api_get(client, "/account/v1/transactions?as_of_id=2147483648", key="ak_auditor")
    assert response.status_code == 400, response.text
    assert "as_of_id" in response.json()["details"]
    ok = api_get(client, "/account/v1/transactions?as_of_id=2147483647", key="ak_auditor")
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/events/sig_2147483648"),
        ("GET", "/admin/events/sig_9999999999999999999"),
        ("POST", "/admin/events/sig_2147483648/replay"),
    ],
)
def test_signal_ids_past_the_integer_id_column_are_404(
    admin: TestClient, method: str, path: str
) -> None:
    # Was a 500 on PostgreSQL, as above, for signals.id.
    response = admin.request(method, path)
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"


def test_nul_in_admin_filters_and_bodies_is_400(admin: TestClient) -> None:
    # Was a 500 on PostgreSQL (the filter) and would have been on storing the reason.
    listing = admin.get("/admin/events?source=%00")
    assert listing.status_code == 400, listing.text
    replay = admin.post("/admin/dead-letters/replay", json={"source": "a\x00"})
    assert replay.status_code == 400, replay.text
    assert "NUL" in replay.json()["message"]


def test_405_names_the_allowed_methods(client: TestClient) -> None:
    # RFC 9110: a 405 must carry Allow, and the JSON error handler must keep it.
    for method, path, allowed in [
        ("GET", "/hooks/htx-main", {"POST"}),
        ("DELETE", "/healthz", {"GET", "HEAD"}),
        ("PUT", "/account/v1/transactions", {"GET", "HEAD"}),
    ]:
        response = client.request(method, path)
        assert response.status_code == 405
        assert response.json()["error"] == "method_not_allowed"
        assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
