"""The admin API's and the console's own refusals: what went wrong with a call or a page
before any use case ran (credentials, throttling, a form or a parameter). Their statuses are
in the edge's one table (``app.routes.errors``), beside every other error's."""

from __future__ import annotations

from app.errors import HookledgerError


class Refused(HookledgerError):
    """An admin API call or a console page refused at the edge; ``code`` names the refusal
    in the admin API's ``{"error", "message"}`` answers."""

    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(Refused):
    """A parameter, form field or body that is not accepted."""

    code = "bad_request"


class NotAuthenticated(Refused):
    """No admin token is configured, or none or a wrong one was sent."""

    code = "unauthorized"


class StaleForm(Refused):
    """A console form without its session's CSRF token: expired, or sent from elsewhere."""

    code = "forbidden"


class NoSuchPage(Refused):
    """Nothing at this address of the console."""

    code = "not_found"


class BodyTooLarge(Refused):
    """A body or form over its bound."""

    code = "too_large"


class NotAForm(Refused):
    """A console form sent in a media type other than url-encoded."""

    code = "unsupported_media_type"


class Throttled(Refused):
    """Too many wrong tokens from this client address; ``retry_after`` is the seconds left in
    its window."""

    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthUnavailable(Refused):
    """No token can be checked: Redis, which counts the wrong ones, did not answer."""

    code = "unavailable"
