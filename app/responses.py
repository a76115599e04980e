"""JSON responses through orjson; exact decimals are written as JSON numbers with their text."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from app.domain.money import canonical


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(canonical(value)) if value.is_finite() else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def dumps(value: Any) -> bytes:
    """Serialise ``value``; ``Decimal`` becomes an exact JSON number, unknown types their text."""
    return orjson.dumps(value, default=_default)


def json_response(
    content: Any, status: int = 200, *, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        dumps(content), status_code=status, headers=headers, media_type="application/json"
    )
