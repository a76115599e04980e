"""What people send the console: forms and query parameters, validated. Bad input raises a
refusal (``app.routes.refusals``), which the console shows as a 4xx page instead of a 500."""

from __future__ import annotations

import re
from datetime import datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request

from app.console.session import cookie_path
from app.routes.refusals import BadInput, BodyTooLarge, NotAForm
from app.timeparse import parse_when

MAX_FORM_BYTES = 16_384
_TEXT_MAX = 200


async def read_form(request: Request) -> dict[str, str]:
    """A small url-encoded form, each name once. Raises ``BadInput``, ``BodyTooLarge`` and
    ``NotAForm``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type:
        return {}  # a bodiless POST: an empty form (which then fails the CSRF check)
    if content_type != "application/x-www-form-urlencoded":
        raise NotAForm("Forms are sent as application/x-www-form-urlencoded.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise BodyTooLarge("This form is too large.")
    try:
        async with request.form(max_files=0, max_fields=20, max_part_size=MAX_FORM_BYTES) as data:
            fields = data.multi_items()
    except HTTPException as exc:
        refusal = BodyTooLarge if exc.status_code == 413 else BadInput
        raise refusal("This form could not be read.") from exc
    form: dict[str, str] = {}
    for name, value in fields:
        if not isinstance(value, str) or name in form:
            raise BadInput(f"Form field {name[:40]!r} is not a single text value.")
        if "\x00" in value:
            raise BadInput(f"Form field {name[:40]!r} may not contain NUL.")
        form[name] = value
    return form


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Query:
    """A page's query parameters, validated. Unknown names are refused (a misspelt filter must
    not silently widen a search); so is NUL, which no stored value holds."""

    def __init__(self, request: Request, allowed: set[str]) -> None:
        self._q = request.query_params
        unknown = sorted(set(self._q.keys()) - allowed)
        if unknown:
            names = ", ".join(repr(u[:40]) for u in unknown[:5])
            raise BadInput(f"Unknown search field(s): {names}.")
        for name, value in self._q.multi_items():
            if _CONTROL.search(value):
                raise BadInput(f"{name} may not contain control characters.")

    def text(self, name: str, *, max_len: int = _TEXT_MAX) -> str | None:
        raw = self._q.get(name, "").strip()
        if len(raw) > max_len:
            raise BadInput(f"{name} is longer than {max_len} characters.")
        return raw or None

    def when(self, name: str) -> datetime | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return parse_when(raw)
        except ValueError as exc:
            raise BadInput(f"{name} {exc}.") from exc

    def window(self, start: str, end: str) -> tuple[datetime | None, datetime | None]:
        """The times ``start`` and ``end`` (``since``, ``until``); refused when reversed."""
        since, until = self.when(start), self.when(end)
        if since is not None and until is not None and since > until:
            raise BadInput(
                f"{start} {self.text(start)} is after {end} {self.text(end)}: nothing is both."
            )
        return since, until

    def choice(self, name: str, choices: tuple[str, ...] | frozenset[str]) -> str | None:
        raw = self.text(name)
        if raw is not None and raw not in choices:
            raise BadInput(f"{name} {raw[:40]!r} is not one of: {', '.join(sorted(choices))}.")
        return raw

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
            raise BadInput(f"{name} must be a whole number from {low} to {high}.")
        return int(raw)

    def raw(self) -> dict[str, str]:
        """The parameters as given (for links that keep the filters)."""
        return {k: v for k, v in self._q.items() if v}


def safe_next(request: Request, candidate: str | None, default: str) -> str:
    """``candidate`` if it is a path inside the console (never another site), else
    ``default``."""
    root = cookie_path(request)
    if (
        candidate
        and candidate.startswith(root + "/")
        and "//" not in candidate
        and "\\" not in candidate
        and not any(ord(c) < 0x21 for c in candidate)
        and len(candidate) <= 2000
    ):
        return candidate
    return default
