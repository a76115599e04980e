"""Journal entries, built as plain values. Pure: no SQL here.

Invariants (enforced here, again by the database where it can, and by ``ledger verify``):

1. Every entry's postings sum to zero in each currency.
2. No posting has a zero amount; ``amt`` is ``abs(amount)`` and ``io_type`` its sign.
3. An entry has exactly one causing event; an event causes at most one entry.
4. Customer postings go to the customer's ``account_id``; the other side goes to the
   counterpart accounts of the source: ``{source}:venue``, ``{source}:fees``,
   ``{source}:penalties``, ``{source}:chain``.

Each source kind builds its entries from these values (``app.kinds.<kind>.journal``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, Inexact, Rounded, localcontext

from app.domain.money import MAX_INT_DIGITS, strip_zeros
from app.errors import HookledgerError

ZERO = Decimal(0)
_PRICE_PLACES = Decimal("1e-18")


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


class UnbalancedEntry(HookledgerError, ValueError):
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


def average_price(cash: Decimal, qty: Decimal) -> Decimal | None:
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


def pair(
    customer: str, counterpart: str, currency: str, amount: Decimal, **detail: object
) -> list[Posting]:
    """The customer's posting of ``amount`` and the counterpart's opposite one."""
    if amount == 0:
        return []
    return [
        Posting(customer, currency, amount, True, **detail),  # type: ignore[arg-type]
        Posting(counterpart, currency, amount.copy_negate(), False, **detail),  # type: ignore[arg-type]
    ]
