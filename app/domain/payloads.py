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


_ECHO_TEXT = 200
MAX_ERRORS = 50  # a 422 lists at most this many problems
_ECHO_ITEMS = 20


def echo(value: Any, depth: int = 0) -> Any:
    """A bounded, always-serialisable copy of an offending input for a 422 answer: long text
    is cut, numbers JSON cannot carry exactly become text, big containers are summarised."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_INT_LIMIT < value < _INT_LIMIT else f"{str(value)[:40]}..."
    if isinstance(value, Decimal):
        return value if value.is_finite() and abs(value.adjusted()) <= 40 else str(value)[:40]
    if isinstance(value, str):
        return value if len(value) <= _ECHO_TEXT else value[:_ECHO_TEXT] + "..."
    if isinstance(value, dict) and depth < 2 and len(value) <= _ECHO_ITEMS:
        return {str(k)[:_ECHO_TEXT]: echo(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list) and depth < 2 and len(value) <= _ECHO_ITEMS:
        return [echo(v, depth + 1) for v in value]
    if isinstance(value, dict | list):
        return f"<{type(value).__name__} of {len(value)} items>"
    return str(value)[:_ECHO_TEXT]


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """Return pydantic's errors as the 422 ``detail`` list, ``loc`` rooted at ``"body"``."""
    detail = []
    for err in exc.errors(include_url=False, include_context=False)[:MAX_ERRORS]:
        detail.append(
            {
                "type": err["type"],
                "loc": [
                    "body",
                    *(p if isinstance(p, int) else str(p)[:_ECHO_TEXT] for p in err["loc"]),
                ],
                "msg": err["msg"],
                "input": echo(err.get("input")),
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
