"""The trx-energy kind's journal entry: a TRX deposit (amounts arrive in sun)."""

from __future__ import annotations

from decimal import Decimal

from app.domain.journal import EntryDraft, checked, pair

SUN_EXP = -6  # 1 TRX = 1,000,000 sun


def trx_deposit(*, source: str, account_id: str, tx_hash: str, amount_sun: int) -> EntryDraft:
    """A TRX deposit: ``amount_sun / 1,000,000`` TRX in, from the chain."""
    amount = Decimal(amount_sun).scaleb(SUN_EXP)
    postings = pair(
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
