"""Journal entries, built as plain values. Pure: no SQL here.

Invariants (enforced here, again by the database where it can, and by ``ledger verify``):

1. Every entry's postings sum to zero in each currency.
2. No posting has a zero amount; ``amt`` is ``abs(amount)`` and ``io_type`` its sign.
3. An entry has exactly one causing event; an event causes at most one entry.
4. Customer postings go to the customer's ``account_id``; the other side goes to the
   counterpart accounts of the source: ``{source}:venue``, ``{source}:fees``,
   ``{source}:penalties``, ``{source}:chain``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, Inexact, Rounded, localcontext

from app.domain.money import MAX_INT_DIGITS, strip_zeros

ZERO = Decimal(0)
_PRICE_PLACES = Decimal("1e-18")
SUN_EXP = -6


@dataclass(frozen=True, slots=True)
class Posting:
    account_id: str
    currency: str
    amount: Decimal  # signed: positive = in, negative = out
    customer: bool
    tran_type: str
    business_sub_type: str
    price: Decimal | None = None
    qty: Decimal | None = None
    fx_currency: str | None = None
    fx_amt: Decimal | None = None
    fx_rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class EntryDraft:
    business_type: str
    market: str
    product_code: str
    product_name: str
    description: str
    postings: tuple[Posting, ...] = field(default_factory=tuple)


class UnbalancedEntry(ValueError):
    """An entry's postings do not sum to zero in some currency."""


def imbalance(postings: tuple[Posting, ...] | list[Posting]) -> dict[str, Decimal]:
    """Return the non-zero sum per currency (empty when balanced)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for posting in postings:
        totals[posting.currency] += posting.amount
    return {ccy: total for ccy, total in totals.items() if total != 0}


def checked(entry: EntryDraft) -> EntryDraft:
    """Return ``entry`` if it balances and has no zero posting; raise ``UnbalancedEntry``."""
    if not entry.postings:
        raise UnbalancedEntry("an entry needs postings")
    if any(p.amount == 0 for p in entry.postings):
        raise UnbalancedEntry("a posting of zero")
    off = imbalance(entry.postings)
    if off:
        raise UnbalancedEntry(f"entry does not balance: {off}")
    return entry


def split_symbol(symbol: str, quote_currencies: tuple[str, ...]) -> tuple[str, str]:
    """Split ``btcusdt`` into ``("BTC", "USDT")``: the longest quote currency suffix wins.

    Raises ``ValueError`` when no configured quote currency ends the symbol."""
    symbol = symbol.lower()
    matches = [
        q.lower() for q in quote_currencies if symbol.endswith(q.lower()) and len(symbol) > len(q)
    ]
    if not matches:
        raise ValueError(
            f"symbol {symbol!r} ends with none of the quote currencies {quote_currencies}"
        )
    quote = max(matches, key=len)
    return symbol[: -len(quote)].upper(), quote.upper()


def _price(cash: Decimal, qty: Decimal) -> Decimal | None:
    """Average price of a fill, rounded to 18 places (a derived figure, not an amount).
    ``None`` when undefined or too large for NUMERIC(38, 18)."""
    if qty == 0 or cash == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 80
        ctx.traps[Inexact] = ctx.traps[Rounded] = False  # rounding is the point here
        price = (cash / qty).quantize(_PRICE_PLACES, rounding=ROUND_HALF_EVEN)
    if price.adjusted() >= MAX_INT_DIGITS:
        return None
    return strip_zeros(price)


def _pair(
    customer: str, counterpart: str, currency: str, amount: Decimal, **detail: object
) -> list[Posting]:
    """The customer's posting of ``amount`` and the counterpart's opposite one."""
    if amount == 0:
        return []
    return [
        Posting(customer, currency, amount, True, **detail),  # type: ignore[arg-type]
        Posting(counterpart, currency, amount.copy_negate(), False, **detail),  # type: ignore[arg-type]
    ]


def spot_fill(
    *,
    source: str,
    account_id: str,
    symbol: str,
    side: str,
    quote_currencies: tuple[str, ...],
    filled: Decimal,
    cash: Decimal,
    fees: Decimal,
) -> EntryDraft | None:
    """The entry for what one HTX callback added to an order (increments, never negative).

    Buy: quote out, base in, fee out in base. Sell: base out, quote in, fee out in quote.
    Returns ``None`` when nothing moved."""
    if filled < 0 or cash < 0 or fees < 0:
        raise ValueError("fill increments cannot be negative")
    base, quote = split_symbol(symbol, quote_currencies)
    buy = side == "buy"
    price = _price(cash, filled)
    venue, fee_account = f"{source}:venue", f"{source}:fees"
    trade = {"tran_type": "trade", "business_sub_type": side, "price": price}
    postings = [
        *_pair(
            account_id,
            venue,
            base,
            filled if buy else filled.copy_negate(),
            qty=filled,
            fx_currency=quote,
            fx_amt=cash,
            fx_rate=price,
            **trade,
        ),
        *_pair(
            account_id,
            venue,
            quote,
            cash.copy_negate() if buy else cash,
            qty=filled,
            fx_currency=base,
            fx_amt=filled,
            fx_rate=price,
            **trade,
        ),
        *_pair(
            account_id,
            fee_account,
            base if buy else quote,
            fees.copy_negate(),
            tran_type="fee",
            business_sub_type="fee",
        ),
    ]
    if not postings:
        return None
    return checked(
        EntryDraft(
            business_type="crypto_spot",
            market="htx",
            product_code=symbol,
            product_name=f"{base}/{quote}",
            description=f"{side} {filled} {base} for {cash} {quote}, fee {fees}",
            postings=tuple(postings),
        )
    )


def fx_settlement(
    *,
    source: str,
    account_id: str,
    position_id: str,
    sell_currency: str,
    sell_amount: Decimal,
    buy_currency: str,
    buy_amount: Decimal,
    price: Decimal | None,
) -> EntryDraft:
    """A settled FX contract: ``sell_amount`` of ``sell_currency`` out, ``buy_amount`` in."""
    venue = f"{source}:venue"
    detail = {"tran_type": "fx", "business_sub_type": "settle", "price": price, "fx_rate": price}
    postings = [
        *_pair(
            account_id,
            venue,
            sell_currency,
            sell_amount.copy_negate(),
            qty=sell_amount,
            fx_currency=buy_currency,
            fx_amt=buy_amount,
            **detail,
        ),
        *_pair(
            account_id,
            venue,
            buy_currency,
            buy_amount,
            qty=buy_amount,
            fx_currency=sell_currency,
            fx_amt=sell_amount,
            **detail,
        ),
    ]
    return checked(
        EntryDraft(
            business_type="fx_contract",
            market="pingpong",
            product_code=position_id,
            product_name=f"{sell_currency}/{buy_currency} FX contract",
            description=(
                f"settle {position_id}: "
                f"{sell_amount} {sell_currency} -> {buy_amount} {buy_currency}"
            ),
            postings=tuple(postings),
        )
    )


def fx_penalty(
    *, source: str, account_id: str, position_id: str, currency: str, amount: Decimal
) -> EntryDraft:
    """A cancelled FX contract's penalty (``violate_money``): that amount out."""
    postings = _pair(
        account_id,
        f"{source}:penalties",
        currency,
        amount.copy_negate(),
        tran_type="penalty",
        business_sub_type="penalty",
        qty=amount,
    )
    return checked(
        EntryDraft(
            business_type="fx_contract",
            market="pingpong",
            product_code=position_id,
            product_name="FX contract penalty",
            description=f"cancel {position_id}: penalty {amount} {currency}",
            postings=tuple(postings),
        )
    )


def trx_deposit(*, source: str, account_id: str, tx_hash: str, amount_sun: int) -> EntryDraft:
    """A TRX deposit: ``amount_sun / 1,000,000`` TRX in, from the chain."""
    amount = Decimal(amount_sun).scaleb(SUN_EXP)
    postings = _pair(
        account_id,
        f"{source}:chain",
        "TRX",
        amount,
        tran_type="deposit",
        business_sub_type="deposit",
        qty=amount,
    )
    return checked(
        EntryDraft(
            business_type="deposit",
            market="tron",
            product_code=tx_hash,
            product_name="TRX deposit",
            description=f"deposit {amount} TRX ({tx_hash})",
            postings=tuple(postings),
        )
    )
