"""What hookledger's ledger should show for a simulator's truth: balances per account and
currency, exact decimals, computed from the truth alone (not from hookledger's code).

HTX (docs/ledger.md): a buy takes ``filled-amount`` of the base currency in and
``filled-cash-amount`` of the quote currency out, and the fee out in the base currency; a sell
the other way round, with the fee out in the quote currency. The other side of the trade is
``{source}:venue``, of the fee ``{source}:fees``. A canceled order moves nothing. TRON: each
deposit is ``amount / 1,000,000`` TRX in, from ``{source}:chain``; rental orders move nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

Balances = dict[tuple[str, str], Decimal]  # (account, currency) -> balance, none zero

SUN_PER_TRX = Decimal(1_000_000)


def htx_balances(truth: Mapping[str, Any], source: str) -> Balances:
    """The balances HTX orders of ``truth`` leave, posted through ``source``."""
    out: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    venue, fee_account = f"{source}:venue", f"{source}:fees"
    for order in truth["orders"]:
        filled = Decimal(order["filled-amount"])
        cash = Decimal(order["filled-cash-amount"])
        fees = Decimal(order["filled-fees"])
        account, base, quote = str(order["account-id"]), order["base"], order["quote"]
        sign = 1 if order["side"] == "buy" else -1
        out[account, base] += sign * filled
        out[venue, base] -= sign * filled
        out[account, quote] -= sign * cash
        out[venue, quote] += sign * cash
        fee_currency = base if order["side"] == "buy" else quote
        out[account, fee_currency] -= fees
        out[fee_account, fee_currency] += fees
    return _nonzero(out)


def trx_balances(truth: Mapping[str, Any], source: str, account_id: str) -> Balances:
    """The balances the TRX deposits of ``truth`` leave in ``account_id`` through ``source``."""
    total = sum((Decimal(d["amount"]) / SUN_PER_TRX for d in truth["deposits"]), Decimal(0))
    return _nonzero({(account_id, "TRX"): total, (f"{source}:chain", "TRX"): -total})


def combined(*parts: Balances) -> Balances:
    out: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for part in parts:
        for key, value in part.items():
            out[key] += value
    return _nonzero(out)


def only(balances: Balances, accounts: Iterable[str]) -> Balances:
    """The balances of ``accounts`` alone (the customer side the accountants' API shows)."""
    wanted = set(accounts)
    return {key: value for key, value in balances.items() if key[0] in wanted}


def _nonzero(values: Mapping[tuple[str, str], Decimal]) -> Balances:
    return {key: value for key, value in values.items() if value != 0}
