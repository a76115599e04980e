"""The web edge's outermost layer: a request id for the logs, and the HTTP metrics."""

from __future__ import annotations

import os
import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import HTTP_DURATION, HTTP_REQUESTS, child

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _request_id(scope: Scope) -> str:
    """The caller's (a proxy's) ``X-Request-ID`` when it is a sane token, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
            return bytes(value).decode()
    return os.urandom(8).hex()


class RequestObserver:
    """Pure ASGI middleware. Binds ``request_id`` to every log line of the request, answers
    it in ``X-Request-ID``, and counts the response by route template (``/hooks/{source}``,
    never the raw path: label sets stay bounded), method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        header = (b"x-request-id", request_id.encode())
        status = 500  # what the client sees if the app dies before answering

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        started = time.perf_counter()
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_observed)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            # The matched route's template; under a Mount (the console) with the mount's prefix.
            template = getattr(scope.get("route"), "path", None)
            route = scope.get("root_path", "") + template if template else "_unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            child(HTTP_REQUESTS, route, method, str(status)).inc()
            child(HTTP_DURATION, route).observe(time.perf_counter() - started)
