"""The web console under ``/console``: server-rendered pages for ops and accountants.

Ops search the event log, open an event (raw body as text, redacted headers, attempts, actions,
ledger effects), replay or discard dead letters, and see each source's gaps and their pulls;
accountants filter the ledger's customer transactions, download them as the CSV ``hookledger
ledger export`` writes, and read balances.

Security, in one place:

- login with ``HOOKLEDGER_ADMIN_TOKEN`` (constant-time compare); no token, no console; wrong
  tokens counted per client address with the admin API's, 429 past the limit (``app.throttle``);
- a signed session cookie (key derived from the admin token: rotating it logs everyone out),
  HttpOnly, SameSite=Strict, scoped to ``/console``, 8 hours from login (``session``); a login
  is also live in Redis until logout, so a copied cookie stops working at logout;
- every POST form carries the session's CSRF token, checked in constant time (``web``);
- Jinja2 autoescaping on for every template; every shown value passes a filter that replaces
  any configured secret with ``[redacted]`` (headers were redacted when stored);
- a strict Content-Security-Policy (no scripts at all), no framing, no caching.

Modules: ``session`` (the cookie), ``web`` (templates, the login gate and error pages),
``inputs`` (forms and query parameters), ``headers``, ``login``, ``pages_ops``,
``pages_ledger``; templates and CSS are package data. Bad input raises the refusals of
``app.routes.refusals``, shared with the admin API.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.console import login, pages_ledger, pages_ops
from app.console.headers import SecurityHeaders
from app.console.inputs import MAX_FORM_BYTES
from app.console.web import Console
from app.settings import Settings


def console_mount(settings: Settings) -> Mount:
    """The console's routes, mounted at ``/console``, for an app built with ``settings``."""
    console = Console(settings)
    page = console.page
    routes = [
        Route("/", page(pages_ops.dashboard), methods=["GET"], name="home"),
        Route("/login", login.login_page(console), methods=["GET", "POST"], name="login"),
        Route("/logout", page(login.logout), methods=["POST"], name="logout"),
        Route("/events", page(pages_ops.events), methods=["GET"], name="events"),
        Route("/events/{event_id}", page(pages_ops.event), methods=["GET"], name="event"),
        Route("/events/{event_id}/replay", page(pages_ops.replay), methods=["POST"], name="replay"),
        Route(
            "/events/{event_id}/discard",
            page(pages_ops.discard),
            methods=["POST"],
            name="discard",
        ),
        Route("/dead-letters", page(pages_ops.dead_letters), methods=["GET"], name="dead_letters"),
        Route("/gaps", page(pages_ops.gaps), methods=["GET"], name="gaps"),
        Route(
            "/ledger/transactions",
            page(pages_ledger.transactions),
            methods=["GET"],
            name="transactions",
        ),
        Route(
            "/ledger/transactions.csv",
            page(pages_ledger.transactions_csv),
            methods=["GET"],
            name="transactions_csv",
        ),
        Route("/ledger/balances", page(pages_ledger.balances), methods=["GET"], name="balances"),
        Mount(
            "/static",
            StaticFiles(packages=[("app.console", "static")]),
            name="static",
        ),
        Route("/{rest:path}", page(pages_ops.not_found), methods=["GET"], name="not_found"),
    ]
    return Mount(
        "/console",
        routes=routes,
        name="console",
        middleware=[Middleware(SecurityHeaders)],
        max_body_size=MAX_FORM_BYTES,
    )


__all__ = ["console_mount"]
