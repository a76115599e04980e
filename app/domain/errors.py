"""The one error tree of the inbound edge.

    HookError                    every rejection of a callback; carries an HTTP status
    ├── BadRequest        400    not JSON / not UTF-8 / wrong structure for parsing
    ├── Unauthorized      401    signature, token or timestamp wrong or missing
    ├── Forbidden         403    client address outside the source's allowlist
    ├── UnknownSource     404    no such source
    ├── RequestTimeout    408    the body did not arrive within server.body_timeout_s
    ├── TooLarge          413    body over max_body_bytes
    ├── UnsupportedMedia  415    content type not accepted for the source kind
    ├── ValidationFailed  422    payload fails the source's schema (pydantic-style detail)
    └── Unavailable       503    the event could not be stored durably; the sender should retry

    ProcessingError              raised while applying a stored event
    └── PermanentError           retrying cannot fix it: the event goes dead at once

Verification raises exactly one of these whatever went wrong inside (a bad base64 string,
a non-UTF-8 header, ...), so no input can turn into a 500.
"""

from __future__ import annotations

from typing import Any


class HookError(Exception):
    """A rejected callback. ``status`` and ``code`` map it to the response."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


class BadRequest(HookError):
    status, code = 400, "bad_request"


class Unauthorized(HookError):
    status, code = 401, "unauthorized"


class Forbidden(HookError):
    status, code = 403, "forbidden"


class UnknownSource(HookError):
    status, code = 404, "unknown_source"


class RequestTimeout(HookError):
    status, code = 408, "request_timeout"


class TooLarge(HookError):
    status, code = 413, "too_large"


class UnsupportedMedia(HookError):
    status, code = 415, "unsupported_media_type"


class Unavailable(HookError):
    status, code = 503, "unavailable"


class ValidationFailed(HookError):
    """422 with a pydantic-style ``detail`` list (type, loc, msg, input)."""

    status, code = 422, "validation_failed"

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(detail)} validation error(s)")
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}


class ProcessingError(Exception):
    """Applying a stored event failed; retried with backoff."""


class PermanentError(ProcessingError):
    """Applying a stored event failed in a way retrying cannot fix; the event goes dead."""
