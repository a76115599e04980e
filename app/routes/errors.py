"""How errors are answered over HTTP: the one table from error class to status, for the hooks
route, the admin API, the console and the app's own handlers. Errors themselves carry no
status (``app.errors``)."""

from __future__ import annotations

from app.domain.errors import (
    BadRequest,
    Forbidden,
    HookError,
    RequestTimeout,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownSource,
    UnsupportedMedia,
    ValidationFailed,
)
from app.errors import DependencyDown, HookledgerError
from app.routes.refusals import (
    AuthUnavailable,
    BadInput,
    BodyTooLarge,
    NoSuchPage,
    NotAForm,
    NotAuthenticated,
    StaleForm,
    Throttled,
)
from app.store.ops import Conflict, NotFound, OpsError

STATUS: dict[type[HookledgerError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    UnknownSource: 404,
    RequestTimeout: 408,
    TooLarge: 413,
    UnsupportedMedia: 415,
    ValidationFailed: 422,
    Unavailable: 503,
    HookError: 400,
    NotFound: 404,
    Conflict: 409,
    OpsError: 400,
    BadInput: 400,
    NotAuthenticated: 401,
    StaleForm: 403,
    NoSuchPage: 404,
    BodyTooLarge: 413,
    NotAForm: 415,
    Throttled: 429,
    AuthUnavailable: 503,
    DependencyDown: 503,
}


def status_of(error: HookledgerError | type[HookledgerError]) -> int:
    """The HTTP status that answers ``error`` (an instance or a class): its nearest class in
    ``STATUS``; 500 for one the table does not know."""
    cls = error if isinstance(error, type) else type(error)
    for klass in cls.__mro__:
        if klass in STATUS:
            return STATUS[klass]
    return 500
