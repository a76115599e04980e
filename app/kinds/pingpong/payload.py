"""The pingpong kind's payload: PingPong-style FX contract lifecycle callbacks.

Idempotency key: ``msg_id``. ``positionCreate``/``positionCancel``/``positionSettle`` are known;
any other ``event_type`` (PingPong's own example sends ``positionExtend``) is accepted and ends
``unhandled``. The payload is validated whenever present; known types require it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.domain.payloads import Amount, Id, Int, ParsedEvent, validate

KIND = "pingpong"

CANONICAL = {
    "positionCreate": "contract.created",
    "positionCancel": "contract.canceled",
    "positionSettle": "contract.settled",
}

_CURRENCY = re.compile(r"[A-Z0-9]{2,12}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _currency(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().upper()
    if not _CURRENCY.fullmatch(value):
        raise ValueError("currency must be a code such as 'CNH'")
    return value


class ContractPayload(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    position_id: Id | None = None
    parent_position_id: Id | None = None
    root_position_id: Id | None = None
    c_order_id: Id | None = None
    buy_currency: str | None = None
    buy_amount: Amount | None = Field(default=None, ge=0)
    sell_currency: str | None = None
    sell_amount: Amount | None = Field(default=None, ge=0)
    price: Amount | None = Field(default=None, ge=0)
    base_currency: str | None = None
    price2: Amount | None = Field(default=None, ge=0)
    base_currency2: str | None = None
    status: str | None = Field(default=None, max_length=64)
    status_desc: str | None = Field(default=None, max_length=256)
    value_date: str | None = None
    open_time: Int | None = None
    pay_way: Literal["credit", "balance"] | None = None
    violate_date: Int | None = None
    violate_money: Amount | None = Field(default=None, ge=0)
    violate_currency: str | None = None
    trade_channel: str = Field(max_length=64)
    source_type: str = Field(max_length=64)
    cancel_way: str | None = Field(default=None, max_length=64)

    _cur = field_validator(
        "buy_currency", "sell_currency", "base_currency", "base_currency2", "violate_currency"
    )(_currency)

    @field_validator("value_date")
    @classmethod
    def _value_date(cls, value: str | None) -> str | None:
        if value is not None and not _DATE.fullmatch(value):
            raise ValueError("value_date must be YYYY-MM-DD")
        return value


class ContractEvent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    event_type: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_]+$")
    msg_id: Id
    payload: ContractPayload | None = None

    @model_validator(mode="after")
    def _known_types_need_fields(self) -> ContractEvent:
        if self.event_type not in CANONICAL:
            return self
        if self.payload is None:
            raise ValueError(f"{self.event_type} requires a payload")
        p = self.payload
        if p.position_id is None:
            raise ValueError(f"{self.event_type} requires payload.position_id")
        settle_fields = (p.buy_currency, p.buy_amount, p.sell_currency, p.sell_amount)
        if self.event_type == "positionSettle" and None in settle_fields:
            raise ValueError(
                "positionSettle requires payload.buy_currency, buy_amount, "
                "sell_currency and sell_amount"
            )
        if self.event_type == "positionCancel" and p.violate_money and p.violate_currency is None:
            raise ValueError("positionCancel with violate_money requires violate_currency")
        return self


def parse(data: Any) -> ParsedEvent:
    """Validate a PingPong contract callback; raise ``ValidationFailed`` on a schema breach."""
    event = validate(ContractEvent, data)
    return ParsedEvent(
        kind=KIND,
        raw_type=event.event_type,
        event=CANONICAL.get(event.event_type),
        idempotency_key=event.msg_id,
        payload=event,
    )
