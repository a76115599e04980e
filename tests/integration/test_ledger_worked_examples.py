"""Worked examples: callbacks in, journal out, every figure computed by hand in the test.

Accounts: the customer is 1001 (HTX), 2002 (PingPong) or 3003 (TRON); the other side of each
entry is the source's venue, fee, penalty or chain account.
"""

from __future__ import annotations

from decimal import Decimal as D

from sqlalchemy import select
from sqlmodel import Session, col

from app.kinds import verify_ledger
from app.store.models import AccountBalance, JournalEntry, LedgerPosting
from tests.support import fixture_json, htx_update, post_htx, post_pp, post_trx, run_jobs


def customer_rows(engine, account: str) -> list[tuple[str, str, D, D]]:
    """(tran_type, currency, signed amount, running balance) of the customer, in posting order."""
    with Session(engine) as session:
        rows = session.execute(
            select(LedgerPosting)
            .where(col(LedgerPosting.account_id) == account, col(LedgerPosting.customer).is_(True))
            .order_by(col(LedgerPosting.id))
        ).scalars()
        return [(r.tran_type, r.currency, r.amount, r.balance) for r in rows]


def balances(engine) -> dict[tuple[str, str], D]:
    with Session(engine) as session:
        return {
            (b.account_id, b.currency): b.balance
            for b in session.execute(select(AccountBalance)).scalars()
        }


def assert_ledger_verifies(runtime) -> None:
    with Session(runtime.engine) as session:
        report = verify_ledger(session, runtime.settings.file.ledger.quote_currencies)
    assert report.ok, report.breaches


BUY_1 = htx_update(500, "partial-filled", "0.01", "420", "0.00002")
BUY_2 = htx_update(500, "partial-filled", "0.025", "1050.5", "0.00005")
BUY_3 = htx_update(500, "filled", "0.03", "1260.7", "0.00006")


def test_buy_filled_in_three_callbacks_out_of_order_and_twice(client, runtime):
    # Arrival: 2nd, 1st, 3rd, then the 2nd and 1st again. Each is drained before the next.
    for payload in (BUY_2, BUY_1, BUY_3, BUY_2, BUY_1):
        assert post_htx(client, payload).status_code == 200
        run_jobs(runtime)

    # The 2nd callback brings the order to 0.025 BTC for 1050.5 USDT, fee 0.00005 BTC;
    # the 1st adds nothing (already covered); the 3rd adds 0.005 BTC, 210.2 USDT, 0.00001 BTC.
    assert customer_rows(runtime.engine, "1001") == [
        ("trade", "BTC", D("0.025"), D("0.025")),
        ("trade", "USDT", D("-1050.5"), D("-1050.5")),
        ("fee", "BTC", D("-0.00005"), D("0.02495")),
        ("trade", "BTC", D("0.005"), D("0.02995")),
        ("trade", "USDT", D("-210.2"), D("-1260.7")),
        ("fee", "BTC", D("-0.00001"), D("0.02994")),
    ]
    assert balances(runtime.engine) == {
        ("1001", "BTC"): D("0.02994"),  # 0.03 bought less 0.00006 fees
        ("1001", "USDT"): D("-1260.7"),
        ("htx-main:venue", "BTC"): D("-0.03"),
        ("htx-main:venue", "USDT"): D("1260.7"),
        ("htx-main:fees", "BTC"): D("0.00006"),
    }
    with Session(runtime.engine) as session:
        assert (
            len(session.execute(select(JournalEntry)).all()) == 2
        )  # the 1st callback posted nothing
    assert_ledger_verifies(runtime)


def test_the_same_buy_delivered_in_another_order_ends_with_the_same_balances(client, runtime):
    for payload in (BUY_3, BUY_1, BUY_2, BUY_3):
        post_htx(client, payload)
    run_jobs(runtime)
    assert balances(runtime.engine)[("1001", "BTC")] == D("0.02994")
    assert balances(runtime.engine)[("1001", "USDT")] == D("-1260.7")
    assert_ledger_verifies(runtime)


def test_a_sell_pays_its_fee_in_the_quote_currency(client, runtime):
    sell = htx_update(600, "filled", "2", "7000.50", "3.5", symbol="ethusdt", type="sell-market")
    post_htx(client, sell)
    run_jobs(runtime)

    assert customer_rows(runtime.engine, "1001") == [
        ("trade", "ETH", D("-2"), D("-2")),
        ("trade", "USDT", D("7000.5"), D("7000.5")),
        ("fee", "USDT", D("-3.5"), D("6997")),  # 7000.50 received less 3.50 fee
    ]
    assert balances(runtime.engine)[("htx-main:fees", "USDT")] == D("3.5")
    assert_ledger_verifies(runtime)


def test_an_fx_settlement_moves_both_currencies_at_the_contract_rate(client, runtime):
    settle = fixture_json("pingpong_position_settle.json")
    post_pp(client, settle)
    again = {**settle, "msg_id": "P-redelivered-under-a-new-id"}  # a second settle callback
    post_pp(client, again)
    run_jobs(runtime)

    assert customer_rows(runtime.engine, "2002") == [
        ("fx", "MXN", D("-8667.49"), D("-8667.49")),
        ("fx", "CNH", D("3645.95"), D("3645.95")),
    ]
    with Session(runtime.engine) as session:
        row = (
            session.execute(select(LedgerPosting).where(col(LedgerPosting.currency) == "CNH"))
            .scalars()
            .first()
        )
    assert row is not None
    assert (row.fx_currency, row.fx_amt, row.fx_rate) == ("MXN", D("8667.49"), D("2.37729"))
    assert row.sett_date == 1704412800  # value_date 2024-01-05, midnight UTC
    assert_ledger_verifies(runtime)


def test_a_cancelled_contract_charges_its_penalty_once(client, runtime):
    cancel = {
        "event_type": "positionCancel",
        "msg_id": "P-cancel-1",
        "payload": {
            "position_id": "240105SP000000001",
            "status": "cancel",
            "violate_money": "150.25",
            "violate_currency": "USD",
            "trade_channel": "api",
            "source_type": "spot",
        },
    }
    post_pp(client, cancel)
    post_pp(client, {**cancel, "msg_id": "P-cancel-2"})
    run_jobs(runtime)

    assert customer_rows(runtime.engine, "2002") == [("penalty", "USD", D("-150.25"), D("-150.25"))]
    assert balances(runtime.engine)[("pp:penalties", "USD")] == D("150.25")
    assert_ledger_verifies(runtime)


def test_trx_deposits_convert_sun_exactly(client, runtime):
    first = fixture_json("trx_deposit.json")  # 1,000,000,000 sun
    second = {**first, "amount": 2_500_001, "txHash": "ab" * 32}  # 2.500001 TRX
    for payload in (first, second, first):
        post_trx(client, payload)
    run_jobs(runtime)

    assert customer_rows(runtime.engine, "3003") == [
        ("deposit", "TRX", D("1000"), D("1000")),
        ("deposit", "TRX", D("2.500001"), D("1002.500001")),
    ]
    assert balances(runtime.engine)[("trx:chain", "TRX")] == D("-1002.500001")
    assert_ledger_verifies(runtime)


def test_amounts_with_38_significant_digits_are_posted_exactly(client, runtime):
    big = htx_update(
        700,
        "filled",
        "12345678901.123456789012345678",
        "98765432109876543210.1",
        "0.000000000000000001",
    )
    post_htx(client, big)
    run_jobs(runtime)

    assert customer_rows(runtime.engine, "1001") == [
        ("trade", "BTC", D("12345678901.123456789012345678"), D("12345678901.123456789012345678")),
        ("trade", "USDT", D("-98765432109876543210.1"), D("-98765432109876543210.1")),
        ("fee", "BTC", D("-0.000000000000000001"), D("12345678901.123456789012345677")),
    ]
    assert_ledger_verifies(runtime)
