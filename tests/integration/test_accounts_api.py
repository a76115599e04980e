"""GET /account/v1/*: signed requests, scoping, filters, pagination, the error envelope."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.support import api_get, fixture_json, htx_update, post_htx, post_pp, post_trx, run_jobs

TX = "/account/v1/transactions"


@pytest.fixture
def ledger(client, runtime):
    """Three HTX fills for 1001 (8 postings), an FX settlement for 2002, a TRX deposit for 3003."""
    post_htx(client, htx_update(1, "filled", "0.03", "1260.7", "0.00006"))
    post_htx(
        client, htx_update(2, "filled", "2", "7000.50", "3.5", symbol="ethusdt", type="sell-limit")
    )
    post_htx(client, htx_update(3, "partial-filled", "0.5", "21000", "0"))
    post_pp(client, fixture_json("pingpong_position_settle.json"))
    post_trx(client, fixture_json("trx_deposit.json"))
    run_jobs(runtime)
    return client


def test_transactions_in_seed_002_shape(ledger):
    response = api_get(ledger, f"{TX}?page=1&page_size=20")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0
    data = body["data"]
    assert (data["total_records"], data["page"], data["page_size"]) == (8, 1, 20)
    first = data["transactions"][0]
    assert set(first) >= {
        "id",
        "account_id",
        "tran_type",
        "date",
        "sett_date",
        "base_currency",
        "market",
        "product_code",
        "product_name",
        "price",
        "qty",
        "amt",
        "balance",
        "io_type",
        "fx_currency",
        "fx_amt",
        "fx_rate",
        "remarks",
        "business_type",
        "business_sub_type",
    }
    assert first["account_id"] == 1001
    assert (first["market"], first["product_code"], first["business_type"]) == (
        "htx",
        "btcusdt",
        "crypto_spot",
    )
    assert first["remarks"].startswith("evt_")
    assert [t["id"] for t in data["transactions"]] == sorted(t["id"] for t in data["transactions"])
    assert {t["account_id"] for t in data["transactions"]} == {1001}


def test_decimals_are_exact_json_numbers(ledger):
    raw = api_get(ledger, f"{TX}?io_type=out&business_type=crypto_spot").text
    assert '"amt":1260.7,' in raw
    assert '"amt":0.00006,' in raw
    assert '"price":42023.333333333333333333' in raw  # 1260.7 / 0.03, 18 places


def test_filters_alias_and_paging(ledger):
    def ids(query: str, key: str = "ak_finance") -> list[int]:
        response = api_get(ledger, f"{TX}?{query}", key=key)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["data"]["transactions"]]

    everything = ids("page_size=500")
    assert len(everything) == 8
    assert len(ids("io_type=in")) == 3
    assert ids("business_types=us_stock") == []
    assert len(ids("business_types=crypto_spot,us_stock")) == 8
    page2 = api_get(ledger, f"{TX}?page=2&page_size=3").json()["data"]
    assert (page2["total_records"], [t["id"] for t in page2["transactions"]]) == (
        8,
        everything[3:6],
    )
    now = int(time.time())
    assert ids(f"from_date={now - 3600}&to_date={now + 3600}") == everything
    assert ids(f"from_date={now + 3600}") == []
    assert len(ids("account_id=2002", key="ak_treasury")) == 2
    assert len(ids("page_size=500", key="ak_auditor")) == 11


def test_paging_is_stable_while_rows_are_inserted(ledger, runtime):
    first = api_get(ledger, f"{TX}?page=1&page_size=2").json()["data"]
    post_htx(ledger, htx_update(9, "filled", "1", "100", "0"))
    run_jobs(runtime)
    pinned = api_get(ledger, f"{TX}?page=2&page_size=2&as_of_id={first['as_of_id']}").json()["data"]
    assert pinned["total_records"] == first["total_records"]
    later = api_get(ledger, f"{TX}?page=2&page_size=2").json()["data"]
    assert later["transactions"] == pinned["transactions"]  # new rows only ever append
    assert later["total_records"] == first["total_records"] + 2


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        # Seed 002's own cURL example: its from_date is after its to_date.
        (
            "page=1&page_size=20&from_date=1746775317&to_date=1746775257&io_type=in&business_types=us_stock",
            "after to_date",
        ),
        ("business_type=bonds", "unknown business_type"),
        ("io_type=sideways", "io_type"),
        ("page=0", "page"),
        ("page_size=501", "page_size"),
        ("from_date=yesterday", "from_date"),
        ("pagesize=10", "unknown parameter"),
    ],
)
def test_bad_parameters_get_the_error_envelope(ledger, query, needle):
    response = api_get(ledger, f"{TX}?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] != 0
    assert isinstance(body["code"], int)
    assert body["message"]
    assert needle in body["details"]


def test_signature_matrix(ledger):
    url = f"{TX}?page=1&page_size=5"
    assert api_get(ledger, url).status_code == 200
    wrong = api_get(ledger, url, secret="not-the-secret")
    stale = api_get(ledger, url, stamp_ms=int(time.time() * 1000) - 301_000)
    future = api_get(ledger, url, stamp_ms=int(time.time() * 1000) + 301_000)
    tampered = api_get(ledger, f"{TX}?page=1&page_size=500", sign_as=url)
    unknown_key = api_get(ledger, url, key="ak_nobody", secret="x")
    for response in (wrong, stale, future, tampered, unknown_key):
        assert response.status_code == 401, response.text
        assert response.json()["code"] != 0
    assert ledger.get(url).status_code == 401
    assert (
        ledger.get(url, headers={"X-API-Key": "ak_finance"}).json()["message"]
        == "missing credentials"
    )


def test_a_key_reads_only_its_own_accounts(ledger):
    forbidden = api_get(ledger, f"{TX}?account_id=2002")
    assert forbidden.status_code == 403
    assert forbidden.json()["code"] != 0
    assert api_get(ledger, "/account/v1/balances?account_id=3003").status_code == 403
    assert api_get(ledger, "/account/v1/orders/htx-main/1", key="ak_treasury").status_code == 404


def test_balances_now_and_as_of_a_past_time(ledger):
    now = api_get(ledger, "/account/v1/balances").json()["data"]["balances"]
    assert {(b["currency"], Decimal(str(b["balance"]))) for b in now} == {
        ("BTC", Decimal("0.52994")),  # 0.03 - 0.00006 + 0.5
        ("ETH", Decimal("-2")),
        ("USDT", Decimal("-1260.7") + Decimal("7000.5") - Decimal("3.5") - Decimal("21000")),
    }
    past = api_get(ledger, f"/account/v1/balances?as_of={int(time.time()) - 86_400}").json()["data"]
    assert past["balances"] == []


def test_order_detail_shows_each_amount_with_its_provenance(ledger):
    response = api_get(ledger, "/account/v1/orders/htx-main/1")
    assert response.status_code == 200, response.text
    order = response.json()["data"]
    assert (order["state"], order["filled_amount"]) == ("filled", 0.03)
    [applied] = order["events"]
    assert applied["event"] == "order.filled"
    assert len(applied["body_sha256"]) == 64
    assert applied["received_at"] > 0
    assert {t["remarks"] for t in order["transactions"]} == {applied["event_id"]}


def test_contracts_deposits_and_orders_listings(ledger):
    contracts = api_get(ledger, "/account/v1/contracts", key="ak_treasury").json()["data"]
    assert contracts["contracts"][0]["status"] == "settled"
    deposits = api_get(ledger, "/account/v1/deposits", key="ak_treasury").json()["data"]
    assert deposits["deposits"][0]["amount"] == 1000
    orders = api_get(ledger, "/account/v1/orders?page_size=2").json()["data"]
    assert (orders["total_records"], len(orders["orders"])) == (3, 2)


@pytest.mark.parametrize(
    "query", ["page=--1", "as_of_id=--5", "page=999999999999999999&page_size=500", "page=1e3"]
)
def test_malformed_or_absurd_integers_are_400(ledger, query):
    response = api_get(ledger, f"{TX}?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 40001


def test_a_long_read_does_not_hold_up_receipts_on_sqlite(ledger, runtime):
    from sqlalchemy import select
    from sqlmodel import Session

    from app.store.db import read_only
    from app.store.models import LedgerPosting

    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL readers never block writers")
    with Session(read_only(runtime.engine)) as reader:
        reader.execute(select(LedgerPosting)).all()  # an export's transaction, still open
        started = time.monotonic()
        response = post_htx(ledger, htx_update(77, "filled", "1", "1", "0"))
        assert response.status_code == 200
        assert time.monotonic() - started < 5  # not the 10 s busy timeout
