"""``POST /hooks/{source}`` and ``POST /hooks/{source}/{token}``: inbound callbacks.

Checks run cheapest first and never read more than ``max_body_bytes``: unknown source (404),
client address (403), declared length (413), content type (415), the bounded body (413), the
signature over those exact bytes (401), then parsing (400) and the schema (422).
"""

from __future__ import annotations

import logging
import time

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app import metrics
from app.domain.errors import (
    BadRequest,
    Forbidden,
    HookError,
    RequestTimeout,
    TooLarge,
    UnknownSource,
)
from app.domain.netaddr import in_networks, request_client
from app.ingest import Ingestor, authenticate
from app.kinds import accepted_media_type
from app.responses import json_response
from app.routes.errors import status_of
from app.settings import Settings

log = structlog.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """Return the body, refusing with ``TooLarge`` as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest("Content-Length must be a number")
        if int(declared) > limit:
            raise TooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
    # Straight from the ASGI messages (Request.stream() is an async generator per request).
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def receive_hook(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    ingestor: Ingestor = request.app.state.ingestor
    name = request.path_params["source"]
    token = request.path_params.get("token")
    source = settings.sources.get(name)
    tokens = structlog.contextvars.bind_contextvars(source=name)
    try:
        if source is None:
            raise UnknownSource(f"no source named {name!r}")
        peer = request.client.host if request.client else None
        forwarded = request.headers.getlist("x-forwarded-for")
        client = request_client(peer, forwarded, settings.server.trusted_proxies)
        if source.allow_ips and not in_networks(client, source.allow_ips):
            raise Forbidden(f"client address {client} is not allowed for source {name!r}")
        if token is not None and source.auth != "token":
            raise UnknownSource(f"source {name!r} does not take a token in the path")
        media = accepted_media_type(source.kind, request.headers.get("content-type"))
        body = await read_body(request, settings.server.max_body_bytes)
        now = time.time()
        authenticate(source, body, request.headers, token, now)
        outcome = await ingestor.receive(
            source_name=name,
            source=source,
            body=body,
            media=media,
            headers=request.headers,
            client_ip=str(client) if client else None,
            now=now,
        )
    except HookError as exc:
        status = status_of(exc)
        log.info("hook.rejected", status=status, reason=exc.code, message=exc.message)
        _count(name if source else metrics.UNKNOWN, status, exc.code)
        # After a 408 the rest of the body may still come: the connection cannot be reused.
        headers = {"connection": "close"} if isinstance(exc, RequestTimeout) else None
        return json_response(exc.body(), status, headers=headers)
    except ClientDisconnect:
        log.info("hook.client_disconnected")
        refusal = BadRequest("client disconnected")
        _count(name, status_of(refusal), refusal.code)
        return json_response(refusal.body(), status_of(refusal))
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    if _info_enabled():
        log.info("hook.received", source=name, status=outcome.status, event_id=outcome.event_id)
    metrics.child(metrics.EVENTS_RECEIVED, name, outcome.status).inc()
    return json_response({"status": outcome.status, "event_id": outcome.event_id}, 200)


def _count(source: str, status: int, code: str) -> None:
    """A callback not stored: ``unavailable`` (503, the sender retries) or ``rejected``."""
    if status == 503:
        metrics.child(metrics.EVENTS_RECEIVED, source, "unavailable").inc()
        return
    metrics.child(metrics.EVENTS_RECEIVED, source, "rejected").inc()
    metrics.child(metrics.REJECTIONS, source, metrics.rejection_reason(code)).inc()


def _info_enabled() -> bool:
    """Whether an INFO line would be written: the standard library caches the answer, while a
    structlog call runs its processor chain before the level filter drops it."""
    return _stdlib_log.isEnabledFor(logging.INFO)
