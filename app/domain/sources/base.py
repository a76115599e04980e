"""What every source kind's parser returns, and the field types they share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ValidationError

from app.domain.errors import ValidationFailed
from app.domain.money import parse_decimal


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A validated callback.

    ``event`` is the canonical event name (``order.filled``...) or ``None`` when the source kind
    does not know this event type: such events are stored and end ``unhandled``.
    """

    kind: str
    raw_type: str
    event: str | None
    idempotency_key: str
    payload: BaseModel
    account_id: str | None = None
    symbol: str | None = None


def _to_id(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("id must be a string or an integer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 128:
            raise ValueError("id must be 1 to 128 characters")
        return text
    raise ValueError("id must be a string or an integer")


_INT_LIMIT = 2**63


def _to_int(value: Any) -> int:
    """Accept an int, integer text or an integral Decimal that fits a 64-bit column."""
    result: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        result = value
    elif (isinstance(value, str) and len(value) <= 20 and value.strip().lstrip("-").isdigit()) or (
        isinstance(value, Decimal)
        and value.is_finite()
        and value.adjusted() < 19  # before int(): 1E+1000000 must not build a huge int
        and value == value.to_integral_value()
    ):
        result = int(value)
    if result is None:
        raise ValueError("must be an integer")
    if not -_INT_LIMIT < result < _INT_LIMIT:
        raise ValueError("integer out of range")
    return result


Id = Annotated[str, BeforeValidator(_to_id)]
Amount = Annotated[Decimal, BeforeValidator(parse_decimal)]
Int = Annotated[int, BeforeValidator(_to_int)]


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """Return pydantic's errors as the 422 ``detail`` list, ``loc`` rooted at ``"body"``."""
    detail = []
    for err in exc.errors(include_url=False, include_context=False):
        detail.append(
            {
                "type": err["type"],
                "loc": ["body", *err["loc"]],
                "msg": err["msg"],
                "input": err.get("input"),
            }
        )
    return detail


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model``; raise ``ValidationFailed`` with pydantic-style detail."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(validation_detail(exc)) from exc


def body_digest(body: bytes) -> str:
    """Return the hex SHA-256 of a raw body (provenance and fallback idempotency keys)."""
    return hashlib.sha256(body).hexdigest()
