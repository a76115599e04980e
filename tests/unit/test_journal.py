"""The pure journal builders: every entry balances, symbols split by the longest quote."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.journal import (
    EntryDraft,
    Posting,
    UnbalancedEntry,
    checked,
    imbalance,
    split_symbol,
)
from app.kinds.htx.journal import spot_fill
from app.kinds.pingpong.journal import fx_penalty, fx_settlement
from app.kinds.trx_energy.journal import trx_deposit

QUOTES = ("usdt", "usdc", "usd", "btc", "eth", "ht", "husd", "trx")


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("btcusdt", ("BTC", "USDT")),
        ("ethbtc", ("ETH", "BTC")),
        ("htusdt", ("HT", "USDT")),
        ("btchusd", ("BTC", "HUSD")),  # husd beats usd: the longest suffix wins
        ("BTCUSDC", ("BTC", "USDC")),
    ],
)
def test_split_symbol_takes_the_longest_quote_suffix(symbol, expected):
    assert split_symbol(symbol, QUOTES) == expected


@pytest.mark.parametrize("symbol", ["abcxyz", "usdt"])
def test_split_symbol_refuses_what_it_cannot_split(symbol):
    with pytest.raises(ValueError, match="quote currencies"):
        split_symbol(symbol, QUOTES)


amounts = st.decimals(
    min_value=0, max_value=10**12, places=8, allow_nan=False, allow_infinity=False
)


@settings(deadline=None)  # a stalled CI machine is not a slow test
@given(side=st.sampled_from(["buy", "sell"]), filled=amounts, cash=amounts, fees=amounts)
def test_a_fill_entry_always_balances_per_currency(side, filled, cash, fees):
    entry = spot_fill(
        source="htx",
        account_id="1",
        symbol="btcusdt",
        side=side,
        quote_currencies=QUOTES,
        filled=filled,
        cash=cash,
        fees=fees,
    )
    if not (filled or cash or fees):
        assert entry is None
        return
    assert entry is not None
    assert imbalance(entry.postings) == {}
    customer = {p.currency: Decimal(0) for p in entry.postings}
    for p in entry.postings:
        if p.customer:
            customer[p.currency] += p.amount
    sign = 1 if side == "buy" else -1
    fee_ccy = "BTC" if side == "buy" else "USDT"
    assert customer.get("BTC", 0) == sign * filled - (fees if fee_ccy == "BTC" else 0)
    assert customer.get("USDT", 0) == -sign * cash - (fees if fee_ccy == "USDT" else 0)
    assert all(p.amount != 0 for p in entry.postings)


def test_settlement_penalty_and_deposit_entries():
    settle = fx_settlement(
        source="pp",
        account_id="2",
        position_id="P1",
        sell_currency="MXN",
        sell_amount=Decimal("8667.49"),
        buy_currency="CNH",
        buy_amount=Decimal("3645.95"),
        price=Decimal("2.37729"),
    )
    assert [(p.account_id, p.currency, p.amount) for p in settle.postings] == [
        ("2", "MXN", Decimal("-8667.49")),
        ("pp:venue", "MXN", Decimal("8667.49")),
        ("2", "CNH", Decimal("3645.95")),
        ("pp:venue", "CNH", Decimal("-3645.95")),
    ]
    penalty = fx_penalty(
        source="pp", account_id="2", position_id="P1", currency="USD", amount=Decimal("1.5")
    )
    assert [(p.account_id, p.amount) for p in penalty.postings] == [
        ("2", Decimal("-1.5")),
        ("pp:penalties", Decimal("1.5")),
    ]
    deposit = trx_deposit(source="t", account_id="3", tx_hash="h", amount_sun=1)
    assert deposit.postings[0].amount == Decimal("0.000001")


def test_checked_refuses_unbalanced_and_zero_postings():
    leg = Posting("1", "USD", Decimal(5), True, "x", "y")
    with pytest.raises(UnbalancedEntry, match="does not balance"):
        checked(EntryDraft("other", "m", "p", "n", "d", (leg,)))
    with pytest.raises(UnbalancedEntry, match="zero"):
        checked(
            EntryDraft(
                "other", "m", "p", "n", "d", (Posting("1", "USD", Decimal(0), True, "x", "y"),)
            )
        )
    with pytest.raises(UnbalancedEntry, match="needs postings"):
        checked(EntryDraft("other", "m", "p", "n", "d", ()))
