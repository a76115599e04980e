"""The ASGI application: ``create_app(settings)``; ``app.main:app`` builds it on first access.

No engine or client is created at import time: they are opened in the lifespan and closed
after it, and the settings are loaded (and validated) once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from app.domain.apikeys import ApiKey
from app.domain.errors import RequestTimeout
from app.gctune import settle_heap
from app.ingest import Ingestor
from app.logconfig import configure_logging
from app.middleware import BodyDeadline, RequestObserver
from app.rejections import RejectedKeeper
from app.responses import json_response
from app.routes import admin, ledger
from app.routes.errors import status_of
from app.routes.health import healthz, metrics, readyz
from app.routes.hooks import receive_hook
from app.runtime import build_web_runtime
from app.settings import Settings, load_settings
from app.store.dedupe import Dedupe

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the web application for ``settings`` (loaded from the environment if omitted)."""
    configure_logging()
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        web = build_web_runtime(settings)  # SchemaMismatch: refuse to start
        runtime = web.runtime
        app.state.engine = runtime.engine
        app.state.aioredis = web.aioredis
        app.state.runtime = runtime
        app.state.ingestor = Ingestor(
            engine=web.receipts,
            dedupe=Dedupe(web.aioredis, ttl_s=settings.processing.dedupe_ttl_s),
            queue=runtime.events,
            batch_size=settings.processing.batch_size,
            linger_s=settings.processing.enqueue_linger_ms / 1000,
            rejected=RejectedKeeper(engine=runtime.engine, redis=runtime.events.connection),
        )
        settle_heap()
        log.info("web.started", sources=sorted(settings.sources), config=settings.config_path)
        try:
            yield
        finally:
            await app.state.ingestor.close()
            await web.aclose()

    from app.console import console_mount

    app = Starlette(
        routes=[
            console_mount(settings),
            Route("/hooks/{source}", receive_hook, methods=["POST"]),
            Route("/hooks/{source}/{token}", receive_hook, methods=["POST"]),
            Route("/account/v1/transactions", ledger.transactions, methods=["GET"]),
            Route("/account/v1/balances", ledger.balances, methods=["GET"]),
            *ledger.listing_routes(),
            Route("/admin/events", admin.list_events, methods=["GET"]),
            Route("/admin/events/{event_id}", admin.show_event, methods=["GET"]),
            Route("/admin/events/{event_id}/replay", admin.replay_event, methods=["POST"]),
            Route("/admin/events/{event_id}/discard", admin.discard_event, methods=["POST"]),
            Route("/admin/dead-letters/replay", admin.replay_dead_letters, methods=["POST"]),
            Route("/admin/gaps", admin.list_gaps, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", _openapi_endpoint(), methods=["GET"]),
        ],
        exception_handlers={
            HTTPException: _http_error,
            RequestTimeout: _timeout_error,
            Exception: _server_error,
        },
        middleware=[
            Middleware(RequestObserver),
            Middleware(BodyDeadline, timeout_s=settings.server.body_timeout_s),
        ],
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # _http_error redirects, in JSON
    app.state.settings = settings
    app.state.instance_id = os.environ.get("HOOKLEDGER_INSTANCE_ID") or None
    app.state.api_keys = [
        ApiKey(name=name, key=cfg.key, secret=cfg.secret, accounts=cfg.accounts)
        for name, cfg in settings.file.api_keys.items()
    ]
    return app


def _openapi_endpoint() -> Callable[[Request], Awaitable[Response]]:
    """``GET /openapi.json``: the shipped document (``app/openapi.json``), read once per app."""
    document = resources.files("app").joinpath("openapi.json").read_bytes()

    async def openapi(_request: Request) -> Response:
        return Response(document, media_type="application/json")

    return openapi


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and (location := _without_trailing_slash(request)):
        # Starlette's own redirect has an empty body; this one says what to do, in JSON. 307
        # keeps the method and the body, so a sender that follows it delivers the callback.
        body = {
            "error": "redirect",
            "message": f"no trailing slash: use {location}",
            "location": location,
        }
        return json_response(body, 307, headers={"location": location})
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = exc.detail
    if exc.status_code == 404 and message == "Not Found":
        message = f"nothing at {request.url.path[:200]}"
    elif exc.status_code == 405 and exc.headers and "Allow" in exc.headers:
        message = f"{request.method} is not allowed here; use {exc.headers['Allow']}"
    response = json_response({"error": code, "message": message}, exc.status_code)
    response.headers.update(exc.headers or {})  # a 405 must say what is Allowed (RFC 9110)
    return response


def _without_trailing_slash(request: Request) -> str | None:
    """The path without its trailing slash when some route takes that path, else None."""
    path: str = request.scope["path"]
    if path == "/" or not path.endswith("/"):
        return None
    bare = path.rstrip("/")
    scope = {**request.scope, "path": bare}
    for route in request.app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            query = request.scope.get("query_string", b"").decode("latin-1")
            return bare + (f"?{query}" if query else "")
    return None


async def _timeout_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestTimeout)
    return json_response(exc.body(), status_of(exc), headers={"connection": "close"})


async def _server_error(_request: Request, exc: Exception) -> Response:
    log.error("web.unhandled_error", error=type(exc).__name__)
    return json_response({"error": "internal", "message": "internal error"}, 500)


def __getattr__(name: str) -> Any:
    # ``uvicorn app.main:app`` asks for the attribute: build the app then, not at import.
    if name == "app":
        return create_app()
    raise AttributeError(name)
