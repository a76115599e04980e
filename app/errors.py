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
    ├── AdminError                   the admin API's own refusals           app.routes.admin
    ├── ConsoleError                 a console form or query refused        app.console.inputs
    ├── BlockedTarget                an outbound address refused (SSRF)     app.signals.net
    ├── Unresolvable                 an outbound host did not resolve       app.signals.net
    ├── StartFailed                  ``hookledger up`` could not start      app.supervisor
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
