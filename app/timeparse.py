"""Points in time as ops type them: ISO 8601, Unix seconds, or an age such as ``30m``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """Return an aware UTC datetime for ``2026-11-20``, ``2026-11-20T10:00:00+08:00``,
    ``1763600000`` or ``2h`` (two hours ago). Raises ``ValueError`` naming the input."""
    text = text.strip()
    now = now or datetime.now(UTC)
    try:
        if age := _AGE.fullmatch(text):
            return now - timedelta(seconds=float(age.group(1)) * _UNITS[age.group(2)])
        if text.isascii() and text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(
            f"{text[:40]!r} is not a time we can use: ISO 8601 (2026-11-20T10:00:00Z), Unix "
            "seconds, or an age such as 30m, 2h, 7d"
        ) from None
