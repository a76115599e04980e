"""The trx-energy kind's payloads: a TRON energy-rental platform's push notifications.

``type: "order"``: a rental order's status changed; key ``id`` + ``status``.
``type: "deposit"``: TRX arrived (``amount`` in sun, 1 TRX = 1,000,000 sun); key ``txHash``.
Any other ``type`` is accepted and ends ``unhandled`` (keyed by ``type`` + ``id``).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.domain.errors import ValidationFailed
from app.domain.payloads import Id, Int, ParsedEvent, echo, validate

KIND = "trx-energy"

ORDER_STATUS = {0: "rental.created", 1: "rental.delegated", -1: "rental.failed"}

_TRON_ADDRESS = re.compile(r"T[1-9A-HJ-NP-Za-km-z]{33}")
_TX_HASH = re.compile(r"[0-9a-fA-F]{64}")


def _address(value: str) -> str:
    if not _TRON_ADDRESS.fullmatch(value):
        raise ValueError("must be a base58 TRON address starting with 'T'")
    return value


class RentalOrderPush(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    id: Id
    orderTime: Int | None = None
    orderType: Int | None = None
    receiverAddress: str
    resourceType: Int = Field(ge=0, le=1)
    source: str | None = Field(default=None, max_length=64)
    status: Int
    timeStamp: Int | None = None
    times: Int | None = Field(default=None, ge=0)

    _addr = field_validator("receiverAddress")(_address)


class DepositPush(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    id: Id | None = None
    address: str
    fromAddress: str
    amount: Int = Field(gt=0, le=10**18)
    txHash: str
    createdAt: str | None = Field(default=None, max_length=32)

    _addr = field_validator("address", "fromAddress")(_address)

    @field_validator("txHash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not _TX_HASH.fullmatch(value):
            raise ValueError("txHash must be 64 hex characters")
        return value.lower()


class UnknownPush(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1, max_length=64)
    id: Id | None = None


def parse(data: Any) -> ParsedEvent:
    """Validate a push notification; raise ``ValidationFailed`` on a schema breach."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "order":
        order = validate(RentalOrderPush, data)
        return ParsedEvent(
            kind=KIND,
            raw_type=f"order:{order.status}",
            event=ORDER_STATUS.get(order.status),
            idempotency_key=f"order:{order.id}:{order.status}",
            payload=order,
        )
    if kind == "deposit":
        deposit = validate(DepositPush, data)
        return ParsedEvent(
            kind=KIND,
            raw_type="deposit",
            event="deposit.received",
            idempotency_key=f"deposit:{deposit.txHash}",
            payload=deposit,
            symbol="trx",
        )
    if not isinstance(data, dict) or not isinstance(kind, str):
        # The input is echoed bounded (``echo``): a raw body may hold what JSON cannot write.
        problem: dict[str, Any] = (
            {"type": "string_type", "msg": "Input should be a valid string", "input": echo(kind)}
            if isinstance(data, dict) and "type" in data
            else {"type": "missing", "msg": "Field required", "input": echo(data)}
        )
        raise ValidationFailed([{"loc": ["body", "type"], **problem}])
    push = validate(UnknownPush, data)
    key = f"{push.type}:{push.id}" if push.id is not None else None
    return ParsedEvent(
        kind=KIND,
        raw_type=push.type,
        event=None,
        idempotency_key=key or "",
        payload=push,
    )
