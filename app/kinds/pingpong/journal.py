"""The pingpong kind's journal entries: an FX settlement, a cancellation penalty."""

from __future__ import annotations

from decimal import Decimal

from app.domain.journal import EntryDraft, checked, pair


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
        *pair(
            account_id,
            venue,
            sell_currency,
            sell_amount.copy_negate(),
            qty=sell_amount,
            fx_currency=buy_currency,
            fx_amt=buy_amount,
            **detail,
        ),
        *pair(
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
    postings = pair(
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
