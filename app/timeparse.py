"""Points in time as people type them, and their echo in messages.

``parse_when`` (ops filters: ``--since``, ``since=``): an ISO 8601 date or time, Unix seconds, or
an age such as ``30m``. ``parse_day`` (ledger ranges: ``--from``, ``from_date=``): a date
(``YYYY-MM-DD``, UTC) or Unix seconds. Both raise ``ValueError`` with a message that quotes the
text as typed and names the accepted forms; a number the size of milliseconds where seconds are
expected, or a date written ``YYYYMMDD``, is named as such. Messages echo times as typed or as
ISO 8601, never as a converted Unix number.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

WHEN_FORMATS = (
    "an ISO 8601 date or time (2026-11-20, 2026-11-20T10:00:00Z), Unix seconds, "
    "or an age (30m, 2h, 7d)"
)
DAY_FORMATS = "a date (YYYY-MM-DD, UTC) or Unix seconds"
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime can hold

_AGE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdw])")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MS_LOW, _MS_HIGH = 10**11, 10**14  # as seconds: years 5138 onwards; as ms: 1973 to 5138


def iso(when: datetime) -> str:
    """``2026-11-20T10:00:00Z``: an aware time in UTC to the second, as messages show it."""
    return when.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def iso_seconds(seconds: int) -> str:
    """Unix seconds as ``iso`` shows them (``seconds`` within 0..``MAX_SECONDS``)."""
    return iso(datetime.fromtimestamp(seconds, UTC))


def _shown(text: str) -> str:
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _milliseconds_hint(digits: str) -> str | None:
    """If ``digits`` (a Unix time where seconds are expected) has the size of milliseconds,
    a sentence saying so and what it would be in seconds; else ``None``."""
    value = int(digits)
    if not _MS_LOW <= value < _MS_HIGH:
        return None
    return (
        f"{digits} looks like milliseconds; this takes Unix seconds "
        f"({value // 1000} is {iso_seconds(value // 1000)})"
    )


def _compact_date_hint(digits: str, *, dates: bool) -> str | None:
    """If ``digits`` (a Unix time in seconds) reads as a date written ``YYYYMMDD`` (as seconds
    it would be 1970 to 1973), a sentence saying how to write it; else ``None``. ``dates``:
    whether the input also takes ``YYYY-MM-DD``."""
    if len(digits) != 8 or not "1974" <= digits[:4] <= "2199":
        return None
    try:
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    if dates:
        return f"{digits} looks like a date: write it {day} (or as Unix seconds, {start})"
    return f"{digits} looks like a date; this takes Unix seconds ({day} is {start})"


def unix_seconds(digits: str, *, dates: bool = True) -> int:
    """The Unix seconds of ``digits`` (ASCII digits). Raises ``ValueError`` when it looks like
    milliseconds or a ``YYYYMMDD`` date (``dates``: whether the input also takes
    ``YYYY-MM-DD``, for the wording), or is past ``MAX_SECONDS``."""
    if len(digits) <= 20:
        hint = _milliseconds_hint(digits) or _compact_date_hint(digits, dates=dates)
        if hint is not None:
            raise ValueError(hint)
    if len(digits) > 20 or int(digits) > MAX_SECONDS:
        raise ValueError(f"{_shown(digits)} is out of range for Unix seconds (and milliseconds)")
    return int(digits)


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """Return an aware UTC datetime for ``2026-11-20`` (its midnight, UTC),
    ``2026-11-20T10:00:00+08:00``, ``1763600000`` (Unix seconds) or ``2h`` (two hours ago).
    Raises ``ValueError`` quoting the input and naming the accepted forms."""
    text = text.strip()
    now = now or datetime.now(UTC)
    try:
        if age := _AGE.fullmatch(text):
            return now - timedelta(seconds=float(age.group(1)) * _UNITS[age.group(2)])
        if text.isascii() and text.isdigit():
            return datetime.fromtimestamp(unix_seconds(text), UTC)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        if text.isascii() and text.isdigit():
            raise ValueError(str(exc)) from None  # what unix_seconds says is more precise
        raise ValueError(f"{_shown(text)} is not a time we can use: {WHEN_FORMATS}") from None


def parse_day(text: str, *, end_of_day: bool = False) -> int:
    """Unix seconds from ``YYYY-MM-DD`` (its first second, UTC; its last with ``end_of_day``)
    or from Unix seconds (taken as they are). Raises ``ValueError`` quoting the input."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return unix_seconds(text)
    if _DAY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{_shown(text)} is not a day of the calendar") from None
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        if start < 0:
            raise ValueError(f"{_shown(text)} is before 1970-01-01, where Unix time starts")
        return start + (86_399 if end_of_day else 0)
    raise ValueError(f"{_shown(text)} is neither {DAY_FORMATS.replace(' or ', ' nor ')}")
