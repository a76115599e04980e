"""Each seed document's example payload, posted over HTTP and applied by a worker."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlmodel import Session

from app.kinds.htx.tables import Order, OrderEvent, Trade
from app.kinds.pingpong.tables import Contract, ContractEventRow
from app.kinds.trx_energy.tables import Deposit, RentalOrder
from tests.support import count, event, fixture_bytes, post_htx, post_pp, post_trx, run_jobs


def test_htx_filled_order_with_trades_is_applied(client, runtime):
    response = post_htx(client, fixture_bytes("htx_order_filled.json"))
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    event_id = response.json()["event_id"]
    assert event(runtime.engine, event_id).status == "received"

    run_jobs(runtime)

    stored = event(runtime.engine, event_id)
    assert (stored.status, stored.attempts, stored.event_type) == ("processed", 1, "order.filled")
    with Session(runtime.engine) as session:
        order = session.execute(select(Order)).scalar_one()
        applied = session.execute(select(OrderEvent)).scalar_one()
    assert order.order_id == "59378"
    assert order.account_id == "100009"  # the payload's account wins over the source default
    assert (order.state, order.side, order.symbol) == ("filled", "buy", "btcusdt")
    assert order.filled_amount == Decimal("0.03")
    assert order.filled_cash_amount == Decimal("1260")
    assert order.filled_fees == Decimal("0.00006")
    assert applied.event_id == event_id
    assert applied.delta_filled_cash_amount == Decimal("1260")
    assert count(runtime.engine, Trade) == 2


def test_pingpong_seed_example_position_extend_ends_unhandled(client, runtime):
    response = post_pp(client, fixture_bytes("pingpong_position_extend.json"))
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]

    run_jobs(runtime)

    stored = event(runtime.engine, event_id)
    assert stored.status == "unhandled"
    assert stored.raw_type == "positionExtend"
    assert stored.event_type is None
    assert count(runtime.engine, Contract) == 0


def test_pingpong_settlement_records_exact_amounts(client, runtime):
    response = post_pp(client, fixture_bytes("pingpong_position_settle.json"))
    assert response.status_code == 200, response.text

    run_jobs(runtime)

    with Session(runtime.engine) as session:
        contract = session.execute(select(Contract)).scalar_one()
    assert contract.status == "settled"
    assert contract.account_id == "2002"
    assert (contract.buy_currency, contract.buy_amount) == ("CNH", Decimal("3645.95"))
    assert (contract.sell_currency, contract.sell_amount) == ("MXN", Decimal("8667.49"))
    assert contract.price == Decimal("2.37729")
    assert contract.value_date == "2024-01-05"
    assert count(runtime.engine, ContractEventRow) == 1


def test_trx_order_and_deposit_pushes_are_applied(client, runtime):
    order = post_trx(client, fixture_bytes("trx_order.json"))
    deposit = post_trx(client, fixture_bytes("trx_deposit.json"))
    assert order.status_code == deposit.status_code == 200

    run_jobs(runtime)

    assert event(runtime.engine, order.json()["event_id"]).event_type == "rental.failed"
    with Session(runtime.engine) as session:
        rental = session.execute(select(RentalOrder)).scalar_one()
        credited = session.execute(select(Deposit)).scalar_one()
    assert (rental.rental_id, rental.status, rental.account_id) == ("5", -1, "3003")
    assert credited.amount_sun == 1_000_000_000
    assert credited.amount_trx == Decimal("1000")
    assert credited.event_id == deposit.json()["event_id"]


def test_htx_form_encoded_callback_is_accepted(client, runtime):
    body = (
        b"order-id=77&account-id=1001&symbol=ethusdt&type=sell-market&filled-amount=1.5"
        b"&filled-cash-amount=3000.75&filled-fees=0.3&state=filled"
        b"&trade=%5B%7B%22trade-id%22%3A1%2C%22trade-price%22%3A%222000.5%22%2C%22trade-amount%22%3A%221.5%22%7D%5D"
    )
    from tests.support import htx_headers

    headers = {**htx_headers(body), "content-type": "application/x-www-form-urlencoded"}
    response = client.post("/hooks/htx-main", content=body, headers=headers)
    assert response.status_code == 200, response.text

    run_jobs(runtime)

    with Session(runtime.engine) as session:
        order = session.execute(select(Order)).scalar_one()
    assert (order.side, order.filled_cash_amount) == ("sell", Decimal("3000.75"))
    assert count(runtime.engine, Trade) == 1
