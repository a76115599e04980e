"""Receiving one callback: authenticate, parse, store durably, dedupe, queue.

The order is the contract's: verify the raw bytes before parsing them; commit the raw event in
SQL before answering 2xx; Redis is only a fast path in front of the SQL unique key; queueing
failures are repaired by the sweep (the event is already durable), so they never fail a receipt.

Outages, decided here and documented in the README:
- database down: 503 ``unavailable`` (the sender retries); nothing is acknowledged;
- Redis down: dedupe falls through to SQL and the answer is still exact; the job is made by the
  sweep once Redis is back (``stale_after_s`` after receipt).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import structlog
from anyio import to_thread
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from app.domain.errors import Unavailable
from app.domain.signing import verify_hmac_sha256, verify_standard_webhook, verify_token
from app.domain.sources import parse_event
from app.domain.sources.base import ParsedEvent
from app.settings import SourceConfig
from app.store import events as event_store
from app.store.dedupe import Dedupe
from app.store.models import InboundEvent, instance_id
from app.store.queue import EventQueue

log = structlog.get_logger(__name__)

_SENSITIVE = ("authorization", "cookie", "signature", "secret", "token", "api-key", "apikey")
_KEEP_HEADERS = 40


def authenticate(
    source: SourceConfig, body: bytes, headers: Mapping[str, str], token: str | None, now: float
) -> None:
    """Verify a callback as its source's auth mode says. Raises ``Unauthorized``."""
    secrets = source.secret_bytes()
    if source.auth == "hmac-sha256":
        verify_hmac_sha256(
            body,
            headers,
            secrets,
            signature_header=source.signature_header,
            timestamp_header=source.timestamp_header,
            tolerance_s=source.tolerance_s,
            now=now,
        )
    elif source.auth == "standard-webhooks":
        verify_standard_webhook(body, headers, secrets, now=now, tolerance_s=source.tolerance_s)
    elif source.auth == "token":
        verify_token(token, secrets)
    # auth == "none": settings guarantee an allowlist, checked before the body was read.


def redact_headers(headers: Mapping[str, str], source: SourceConfig) -> dict[str, str]:
    """Headers worth keeping with a receipt, every credential-bearing one redacted."""
    extra = {source.signature_header.lower()}
    kept: dict[str, str] = {}
    for name, value in list(headers.items())[:_KEEP_HEADERS]:
        lname = name.lower()
        if lname in extra or any(word in lname for word in _SENSITIVE):
            kept[lname] = "[redacted]"
        else:
            kept[lname] = value[:512]
    return kept


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # "accepted" | "duplicate"
    event_id: str


class Ingestor:
    """Stores and queues parsed callbacks. Built once per web process, in the lifespan."""

    def __init__(
        self,
        *,
        engine: Engine,
        dedupe: Dedupe,
        queue: EventQueue,
    ) -> None:
        self._engine = engine
        self._dedupe = dedupe
        self._queue = queue

    async def receive(
        self,
        *,
        source_name: str,
        source: SourceConfig,
        body: bytes,
        media: str,
        headers: Mapping[str, str],
        client_ip: str | None,
        now: float,
    ) -> Outcome:
        """Parse and durably record a verified body. Raises ``BadRequest``, ``ValidationFailed``
        or ``Unavailable``; returns whether it was a first receipt or a duplicate."""
        parsed = parse_event(source.kind, body, media)
        event_id = event_store.new_event_id(now)
        if self._dedupe.namespace is None:
            with contextlib.suppress(SQLAlchemyError):  # database down: the store below says 503
                self._dedupe.namespace = await to_thread.run_sync(instance_id, self._engine)
        claim = await self._dedupe.claim(source_name, parsed.idempotency_key, event_id)
        if claim.known_id is not None:
            return Outcome("duplicate", claim.known_id)
        row = _row(
            event_id=event_id,
            source_name=source_name,
            source=source,
            parsed=parsed,
            body=body,
            media=media,
            headers=headers,
            client_ip=client_ip,
            now=now,
        )
        try:
            receipt = await to_thread.run_sync(self._store, row)
        except SQLAlchemyError as exc:
            log.error("ingest.store_failed", source=source_name, error=type(exc).__name__)
            if claim.claimed:
                await self._dedupe.release(source_name, parsed.idempotency_key, event_id)
            raise Unavailable("the event could not be stored; retry later") from exc
        await self._dedupe.remember(source_name, parsed.idempotency_key, receipt.event_id)
        if not receipt.created:
            return Outcome("duplicate", receipt.event_id)
        await to_thread.run_sync(self._enqueue, receipt.event_id)
        return Outcome("accepted", receipt.event_id)

    def _store(self, row: InboundEvent) -> event_store.Receipt:
        with Session(self._engine) as session, session.begin():
            return event_store.insert_or_get(session, row)

    def _enqueue(self, event_id: str) -> None:
        try:
            self._queue.enqueue(event_id)
        except (RedisError, OSError) as exc:
            # The event is durable; the sweep makes its job once Redis answers again.
            log.warning("ingest.enqueue_failed", event_id=event_id, error=type(exc).__name__)


def _row(
    *,
    event_id: str,
    source_name: str,
    source: SourceConfig,
    parsed: ParsedEvent,
    body: bytes,
    media: str,
    headers: Mapping[str, str],
    client_ip: str | None,
    now: float,
) -> InboundEvent:
    return InboundEvent(
        id=event_id,
        source=source_name,
        source_kind=source.kind,
        idempotency_key=parsed.idempotency_key[:300],
        raw_type=parsed.raw_type[:64],
        event_type=parsed.event,
        status="received",
        content_type=media,
        body=body,
        body_sha256=hashlib.sha256(body).hexdigest(),
        headers=orjson.dumps(redact_headers(headers, source)).decode(),
        client_ip=client_ip,
        received_at=datetime.fromtimestamp(now, UTC),
    )
