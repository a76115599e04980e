"""The htx kind's payload: HTX-style order callbacks.

Idempotency key: ``order-id`` + ``state`` + normalised ``filled-amount``, so each partial fill
is a distinct event while a redelivery of the same one is a duplicate.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.domain.money import canonical
from app.domain.payloads import Amount, Id, Int, ParsedEvent, validate

KIND = "htx"

CANONICAL = {
    "submitted": "order.submitted",
    "partial-filled": "order.partial_filled",
    "filled": "order.filled",
    "partial-canceled": "order.partial_canceled",
    "canceled": "order.canceled",
    "rejected": "order.rejected",
}

_SYMBOL = re.compile(r"[a-z0-9]{2,32}")
_STATE = re.compile(r"[a-z][a-z-]{0,31}")
_TYPE = re.compile(r"(buy|sell)-[a-z-]{1,32}")


class HtxTrade(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    trade_id: Id = Field(alias="trade-id")
    trade_time: Int | None = Field(default=None, alias="trade-time")
    trade_price: Amount = Field(alias="trade-price", ge=0)
    trade_amount: Amount = Field(alias="trade-amount", gt=0)


class HtxOrder(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    order_id: Id = Field(alias="order-id")
    client_order_id: str | None = Field(default=None, alias="client-order-id", max_length=128)
    account_id: Id | None = Field(default=None, alias="account-id")
    symbol: str
    type: str
    amount: Amount | None = Field(default=None, ge=0)
    price: Amount | None = Field(default=None, ge=0)
    created_at: Int | None = Field(default=None, alias="created-at")
    filled_amount: Amount = Field(default=Decimal(0), alias="filled-amount", ge=0)
    filled_cash_amount: Amount = Field(default=Decimal(0), alias="filled-cash-amount", ge=0)
    filled_fees: Amount = Field(default=Decimal(0), alias="filled-fees", ge=0)
    source: str | None = Field(default=None, max_length=64)
    state: str
    err_code: Id | None = Field(default=None, alias="err-code")
    err_msg: str | None = Field(default=None, alias="err-msg", max_length=1024)
    trade: list[HtxTrade] = Field(default_factory=list, max_length=1000)

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SYMBOL.fullmatch(value):
            raise ValueError("symbol must be 2 to 32 letters or digits, e.g. 'btcusdt'")
        return value

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        value = value.strip().lower()
        if not _STATE.fullmatch(value):
            raise ValueError("state must be a word such as 'partial-filled'")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        value = value.strip().lower()
        if not _TYPE.fullmatch(value):
            raise ValueError("type must look like 'buy-limit' or 'sell-market'")
        return value

    @property
    def side(self) -> str:
        return self.type.split("-", 1)[0]


def parse(data: Any) -> ParsedEvent:
    """Validate an HTX order callback; raise ``ValidationFailed`` on a schema breach."""
    order = validate(HtxOrder, data)
    key = f"{order.order_id}:{order.state}:{canonical(order.filled_amount)}"
    return ParsedEvent(
        kind=KIND,
        raw_type=order.state,
        event=CANONICAL.get(order.state),
        idempotency_key=key,
        payload=order,
        account_id=order.account_id,
        symbol=order.symbol,
    )
