"""The web edge's outer layers: a request id for the logs and the HTTP metrics, and a deadline
for request bodies."""

from __future__ import annotations

import asyncio
import os
import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.domain.errors import RequestTimeout
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


class BodyDeadline:
    """Pure ASGI middleware. A request's body must have arrived whole ``timeout_s`` after the
    request reached the app; past that, reading it raises ``RequestTimeout`` (408), which the
    routes answer in JSON. Without it a client that declares a body and stops sending holds a
    connection, and a task, for ever. Once the last body chunk has arrived ``receive`` is passed
    through untouched: waiting for a disconnect (a streamed response) has no deadline."""

    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        complete = False
        timeout_s = self.timeout_s

        async def receive_in_time() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {timeout_s:g} s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, receive_in_time, send)
