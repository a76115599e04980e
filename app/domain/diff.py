"""Which fields two decoded callback bodies disagree on: the record of a conflict (the same
idempotency key, another body). Pure.

A field is named by its path (``payload.status``, ``trade.0.trade-price``); each value is
given as JSON text (exact: decimals as written), ``null`` on the side that lacks it. At most
``MAX_FIELDS`` fields are listed and each value is cut to ``MAX_TEXT`` characters: a conflict
record stays small whatever a sender puts in a body.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

MAX_FIELDS = 50
MAX_TEXT = 200
_MAX_DEPTH = 8


def field_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``{"fields": [{"field", "old", "new"}, ...]}`` sorted by field, plus ``"more"`` (how many
    were left out) when over ``MAX_FIELDS``, and a ``"note"`` when there is nothing to compare
    field by field (``old`` is ``None``: the stored body was pruned or no longer decodes) or
    when every field is equal (the bodies differ only in their bytes: spacing, key order)."""
    if old is None:
        return {"fields": [], "note": "the stored body cannot be compared (pruned or undecodable)"}
    flat_old, flat_new = _flatten(old), _flatten(new)
    names = sorted(
        name
        for name in flat_old.keys() | flat_new.keys()
        if flat_old.get(name) != flat_new.get(name)
    )
    fields = [
        {"field": name, "old": flat_old.get(name), "new": flat_new.get(name)}
        for name in names[:MAX_FIELDS]
    ]
    out: dict[str, Any] = {"fields": fields}
    if len(names) > MAX_FIELDS:
        out["more"] = len(names) - MAX_FIELDS
    if not names:
        out["note"] = "the same fields and values; the bodies differ only in their bytes"
    return out


def _flatten(value: Any, path: tuple[str, ...] = ()) -> dict[str, str]:
    """Leaf values by dotted path, as bounded JSON text (deeper than ``_MAX_DEPTH``: the
    subtree is one value)."""
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict) and value and len(path) < _MAX_DEPTH:
        items = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, list) and value and len(path) < _MAX_DEPTH:
        items = [(str(index), item) for index, item in enumerate(value)]
    if not items:
        return {".".join(path): _text(value)}
    flat: dict[str, str] = {}
    for name, item in items:
        flat.update(_flatten(item, (*path, name)))
    return flat


def _text(value: Any) -> str:
    text = orjson.dumps(value, default=_exact).decode()
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON")
