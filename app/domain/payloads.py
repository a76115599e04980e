"""Callback bodies as values: decoding (JSON or form, exact and strict), the field types and
validation every source kind's schema shares, and ``ParsedEvent``, what a kind's parser returns.
Pure: no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, BeforeValidator, ValidationError

from app.domain.errors import BadRequest, UnsupportedMedia, ValidationFailed
from app.domain.jsonparse import check_text, decode_text, loads_exact
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


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def media_type(content_type: str | None) -> str | None:
    """Return the bare, lower-cased media type of a Content-Type header value."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _charset(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type header value, lower-cased, if any."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def check_media_type(accepted: frozenset[str], content_type: str | None) -> str:
    """Return the media type of ``content_type`` if it is one of ``accepted`` (a kind's
    ``application/json``, and for some ``application/x-www-form-urlencoded``), with no charset
    or ``charset=utf-8``: bodies are UTF-8, always. Raise ``UnsupportedMedia`` otherwise."""
    bare = media_type(content_type)
    if bare not in accepted:
        names = " or ".join(sorted(accepted))
        raise UnsupportedMedia(f"content type {bare or '(none)'!r} not accepted; send {names}")
    assert content_type is not None  # a bare media type came from it
    charset = _charset(content_type)
    if charset is not None and charset not in ("utf-8", "utf8"):
        raise UnsupportedMedia(f"charset {charset[:32]!r} not accepted; bodies are UTF-8")
    return bare


def _form_to_dict(body: bytes) -> dict[str, Any]:
    text = decode_text(body)
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            max_num_fields=200,
            errors="strict",  # a percent-escape that is not UTF-8 is refused, not replaced
        )
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "a form field is not valid UTF-8 once its percent-escapes are decoded"
        ) from exc
    except ValueError as exc:
        raise BadRequest(f"invalid form encoding: {_form_problem(exc)}") from exc
    data: dict[str, Any] = {}
    for name, value in pairs:
        check_text(name)
        check_text(value)
        if name in data:
            raise BadRequest(f"form field {name!r} given twice")
        data[name] = value
    trade = data.get("trade")
    if isinstance(trade, str):
        # A form cannot carry a list: senders put the trade array in as JSON text.
        data["trade"] = loads_exact(trade) if trade.strip() else []
    return data


def _form_problem(exc: ValueError) -> str:
    """``parse_qsl``'s complaint in plain words."""
    text = str(exc)
    if text.startswith("Max number of fields exceeded"):
        return "more than 200 fields"
    if text.startswith("bad query field"):
        return "a field without '=' (" + text.partition(":")[2].strip()[:64] + ")"
    return text[:200]


def decode_body(body: bytes, media: str) -> dict[str, Any]:
    """Return the structured payload of ``body``; raise ``BadRequest`` if it cannot be decoded."""
    if media == FORM:
        return _form_to_dict(body)
    data = loads_exact(body)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data
