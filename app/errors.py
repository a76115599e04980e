"""The one exception tree. Every error hookledger raises on purpose is a ``HookledgerError``;
catching it catches all of them, and nothing else (a bug stays a bug):

    HookledgerError
    ├── ConfigError                  the configuration is unusable          app.settings
    ├── HookError                    a callback refused at the edge         app.domain.errors
    │   ├── BadRequest               not UTF-8, not JSON, ambiguous, ...
    │   ├── Unauthorized             signature, token or timestamp
    │   ├── Forbidden                client address outside allow_ips
    │   ├── UnknownSource            no such source
    │   ├── RequestTimeout           the body did not arrive in time
    │   ├── TooLarge                 body over max_body_bytes
    │   ├── UnsupportedMedia         content type or charset
    │   ├── ValidationFailed         the source's schema (pydantic-style detail)
    │   └── Unavailable              not stored durably; the sender retries
    ├── ProcessingError              applying a stored event failed; retried app.domain.errors
    │   └── PermanentError           retrying cannot fix it: dead at once
    ├── OpsError                     an ops request refused (bad input)     app.store.ops
    │   ├── NotFound                 no such event or signal
    │   └── Conflict                 not in a state that allows it
    ├── ApiError                     the accountants' API error envelope    app.domain.apikeys
    ├── Refused                      admin API call or console page refused app.routes.refusals
    │   ├── BadInput                 a parameter, form field or body
    │   ├── NotAuthenticated         no admin token configured, or a wrong one
    │   ├── StaleForm                a console form without its CSRF token
    │   ├── NoSuchPage               nothing at this console address
    │   ├── BodyTooLarge             a body or form over its bound
    │   ├── NotAForm                 a console form not url-encoded
    │   ├── Throttled                too many wrong tokens from the address
    │   └── AuthUnavailable          Redis down: no token can be checked
    ├── BlockedTarget                an outbound address refused (SSRF)     app.signals.net
    ├── Unresolvable                 an outbound host did not resolve       app.signals.net
    ├── PullFailed                   a counterpart's API answered an error  app.kinds.base
    │                                (or a rate limit, 5xx, a timeout)
    ├── NotPullable                  a source asked to pull cannot          app.services.pull
    ├── StartFailed                  ``hookledger up`` could not start      app.supervisor
    ├── JournalError                 a journal export cannot be truthful    app.journals
    ├── SchemaMismatch               the database is not at the code's      app.store.schema
    │                                schema revision (behind, ahead, none)
    └── DependencyDown               Redis or the database did not answer
        ├── ThrottleUnavailable      the wrong-token counter (Redis)        app.throttle
        ├── SessionsUnavailable      console sessions (Redis)               app.console.session
        └── DatabaseUnreachable      a job could not reach the database     workers.jobs

Errors say what went wrong, never how to answer it: which HTTP status each branch gets is the
edge's business, in one table (``app.routes.errors``).
"""

from __future__ import annotations


class HookledgerError(Exception):
    """The root of every error hookledger raises on purpose."""


class DependencyDown(HookledgerError):
    """Redis or the database did not answer."""
