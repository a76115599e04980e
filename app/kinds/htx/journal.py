"""The htx kind's journal entry: what a fill added, as postings."""

from __future__ import annotations

from decimal import Decimal

from app.domain.journal import EntryDraft, average_price, checked, pair, split_symbol


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
    price = average_price(cash, filled)
    venue, fee_account = f"{source}:venue", f"{source}:fees"
    trade = {"tran_type": "trade", "business_sub_type": side, "price": price}
    postings = [
        *pair(
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
        *pair(
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
        *pair(
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
