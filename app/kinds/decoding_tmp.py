"""Source kinds: which media types each accepts, and how a raw body becomes a ``ParsedEvent``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from app.domain.errors import BadRequest, UnsupportedMedia
from app.domain.jsonparse import check_text, decode_text, loads_exact
from app.domain.sources import htx, pingpong, trx_energy
from app.domain.sources.base import ParsedEvent, body_digest

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

PARSERS: dict[str, Callable[[Any], ParsedEvent]] = {
    htx.KIND: htx.parse,
    pingpong.KIND: pingpong.parse,
    trx_energy.KIND: trx_energy.parse,
}
MEDIA_TYPES: dict[str, frozenset[str]] = {
    htx.KIND: frozenset({JSON, FORM}),
    pingpong.KIND: frozenset({JSON}),
    trx_energy.KIND: frozenset({JSON}),
}
KINDS = tuple(PARSERS)


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


def check_media_type(kind: str, content_type: str | None) -> str:
    """Return the accepted media type; raise ``UnsupportedMedia`` when the kind does not take it.

    Exactly ``application/json`` (every kind) and ``application/x-www-form-urlencoded``
    (``htx``), with no charset or ``charset=utf-8``: bodies are UTF-8, always."""
    bare = media_type(content_type)
    accepted = MEDIA_TYPES[kind]
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


def decode_body(kind: str, body: bytes, media: str) -> Any:
    """Return the structured payload of ``body``; raise ``BadRequest`` if it cannot be decoded."""
    if media == FORM:
        return _form_to_dict(body)
    data = loads_exact(body)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def parse_event(kind: str, body: bytes, media: str) -> ParsedEvent:
    """Decode and validate a callback body of source kind ``kind``.

    Raises ``BadRequest`` (cannot decode) or ``ValidationFailed`` (schema breach)."""
    parsed = PARSERS[kind](decode_body(kind, body, media))
    if not parsed.idempotency_key:
        parsed = replace(parsed, idempotency_key=f"sha256:{body_digest(body)}")
    return parsed
