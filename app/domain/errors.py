"""The errors of the inbound edge and of processing, as branches of ``app.errors``' tree.

They say what went wrong; ``code`` names the refusal in answers and metrics. Which HTTP status
answers each is the edge's (``app.routes.errors``).
"""

from __future__ import annotations

from typing import Any

from app.errors import HookledgerError


class HookError(HookledgerError):
    """A rejected callback; ``code`` names the refusal (``bad_request``, ...)."""

    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


class BadRequest(HookError):
    code = "bad_request"


class Unauthorized(HookError):
    code = "unauthorized"


class Forbidden(HookError):
    code = "forbidden"


class UnknownSource(HookError):
    code = "unknown_source"


class RequestTimeout(HookError):
    code = "request_timeout"


class TooLarge(HookError):
    code = "too_large"


class UnsupportedMedia(HookError):
    code = "unsupported_media_type"


class Unavailable(HookError):
    code = "unavailable"


class ValidationFailed(HookError):
    """422 with a pydantic-style ``detail`` list (type, loc, msg, input)."""

    code = "validation_failed"

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(detail)} validation error(s)")
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


class ProcessingError(HookledgerError):
    """Applying a stored event failed; retried with backoff."""


class PermanentError(ProcessingError):
    """Applying a stored event failed in a way retrying cannot fix; the event goes dead."""
