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
    bare = content_type.split(";", 1)[0].strip().lower()
    if bare.startswith("application/") and bare.endswith("+json"):
        return JSON
    return bare


def check_media_type(kind: str, content_type: str | None) -> str:
    """Return the accepted media type; raise ``UnsupportedMedia`` when the kind does not take it."""
    bare = media_type(content_type)
    accepted = MEDIA_TYPES[kind]
    if bare not in accepted:
        names = " or ".join(sorted(accepted))
        raise UnsupportedMedia(f"content type {bare or '(none)'!r} not accepted; send {names}")
    return bare


def _form_to_dict(body: bytes) -> dict[str, Any]:
    text = decode_text(body)
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=200
        )
    except ValueError as exc:
        raise BadRequest(f"invalid form encoding: {exc}") from exc
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
