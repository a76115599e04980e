"""Receiving one callback: authenticate, parse, store durably, dedupe, queue.

The order is the contract's: verify the raw bytes before parsing them; commit the raw event in
SQL before answering 2xx; Redis is only a fast path in front of the SQL unique key; queueing
failures are repaired by the sweep (the event is already durable), so they never fail a receipt.

Outages, decided here and documented in the README:
- database down: 503 ``unavailable`` (the sender retries); nothing is acknowledged;
- Redis down: dedupe falls through to SQL and the answer is still exact; the job is made by the
  sweep once Redis is back (``stale_after_s`` after receipt).

Two records besides the receipts: a body that passed authentication but not parsing or the
schema is kept as a ``rejected`` event (``app.rejections``; the answer stays the 400 or 422),
and a duplicate whose body differs from the stored event's is kept as a conflict on that
event (``app.store.conflicts``), once its answer is out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import orjson
import structlog
from anyio import to_thread
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlmodel import Session

from app import metrics
from app.domain.diff import field_diff
from app.domain.errors import BadRequest, HookError, Unavailable, ValidationFailed
from app.domain.payloads import ParsedEvent, decode_body
from app.domain.signing import verify_hmac_sha256, verify_standard_webhook, verify_token
from app.kinds import parse_event
from app.rejections import RejectedKeeper
from app.settings import SourceConfig
from app.store import conflicts as conflict_store
from app.store import events as event_store
from app.store import rejected as rejected_store
from app.store.db import read_only
from app.store.dedupe import Claim, Dedupe, remember_committed
from app.store.events import Receipt
from app.store.models import instance_id
from app.store.queue import EventQueue, batch_job_id

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

_SENSITIVE = (
    "auth",  # authorization, x-auth, x-auth-token, proxy-authorization
    "cookie",
    "signature",
    "secret",
    "token",
    "api-key",
    "apikey",
    "password",
    "passwd",
    "credential",
)
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
    extra = source.signature_header.lower()
    kept: dict[str, str] = {}
    for name, value in itertools.islice(headers.items(), _KEEP_HEADERS):
        lname = name.lower()
        if lname == extra or _sensitive(lname):
            kept[lname] = "[redacted]"
        else:
            kept[lname] = value[:512]
    return kept


@lru_cache(maxsize=1024)  # header names repeat from request to request
def _sensitive(lname: str) -> bool:
    return any(word in lname for word in _SENSITIVE)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # "accepted" | "duplicate"
    event_id: str


@dataclass(slots=True)
class _Pending:
    """One receipt waiting for its batch: its row and the answer its request awaits."""

    source: str
    key: str  # the full idempotency key (Redis); the row holds the stored, bounded one
    row: dict[str, Any]
    answer: asyncio.Future[Outcome]

    @property
    def event_id(self) -> str:
        return str(self.row["id"])

    @property
    def sql_key(self) -> tuple[str, str]:
        return self.source, str(self.row["idempotency_key"])

    def resolve(self, outcome: Outcome | BaseException) -> None:
        if self.answer.done():  # the request was cancelled (client gone); the work stands
            return
        if isinstance(outcome, BaseException):
            self.answer.set_exception(outcome)
        else:
            self.answer.set_result(outcome)


@dataclass(slots=True)
class _JobWindow:
    """One processing job being filled by consecutive flushes. It is queued once it is full
    (``batch_size``) or ``enqueue_linger_ms`` after it opened, and never while a flush that
    stored rows under its name has not added their ids yet."""

    name: str
    ids: list[str] = field(default_factory=list)
    flushing: int = 0
    due: bool = False
    sent: bool = False
    timer: asyncio.TimerHandle | None = None


GATHER_S = 0.002  # a flush waits this long for company: bigger batches, less CPU per receipt
FLUSHES_IN_FLIGHT = 1  # 2 measured slower (bench.ingest): batches shrink, costs per batch stay


class Ingestor:
    """Stores and queues parsed callbacks. Built once per web process, in the lifespan.

    Receipts are micro-batched: a request parks its row and awaits its answer; a flush (up to
    ``FLUSHES_IN_FLIGHT`` at a time) takes everything parked (up to ``batch_size``) and, for
    the whole batch, makes one Redis round trip to claim the keys, one SQL lookup of the keys
    Redis already knew (only when it knew some), one SQL transaction (one executemany insert),
    and one Redis pipeline that remembers the ids and queues one processing job. Nothing waits
    for a timer: a lone request is flushed at once, and under load each flush gathers what
    arrived during the previous one. Every request still gets its answer only after its row
    committed. Processing jobs are made per *window* of consecutive flushes (``_JobWindow``),
    so a steady trickle of small flushes still makes few jobs.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        dedupe: Dedupe,
        queue: EventQueue,
        batch_size: int = 200,
        linger_s: float = 0.02,
        rejected: RejectedKeeper | None = None,
    ) -> None:
        self._engine = engine
        self._rejected = rejected
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._dedupe = dedupe
        self._queue = queue
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._window: _JobWindow | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._parked: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._recording: set[asyncio.Task[None]] = set()

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
        (the body is kept as a ``rejected`` event first, within the source's bounds) or
        ``Unavailable``; returns whether it was a first receipt or a duplicate."""
        try:
            parsed, row = parse_receipt(
                source_name=source_name,
                source=source,
                body=body,
                media=media,
                headers=headers,
                client_ip=client_ip,
                now=now,
            )
        except (BadRequest, ValidationFailed) as exc:
            if self._rejected is not None:
                reason = metrics.rejection_reason(exc.code)
                await self._rejected.keep(
                    rejected_row(
                        source_name=source_name,
                        source=source,
                        body=body,
                        media=media,
                        headers=headers,
                        client_ip=client_ip,
                        now=now,
                        error=exc,
                    ),
                    reason=reason,
                    per_minute=source.rejected_per_minute,
                    most=source.rejected_max,
                    now=now,
                )
            raise
        pending = _Pending(
            source_name, parsed.idempotency_key, row, asyncio.get_running_loop().create_future()
        )
        self._parked.append(pending)
        if len(self._flushers) < FLUSHES_IN_FLIGHT:
            self._flushers.add(asyncio.create_task(self._flush_parked()))
        return await pending.answer

    async def _flush_parked(self) -> None:
        try:
            while self._parked:
                if len(self._parked) < self._batch_size and GATHER_S:
                    await asyncio.sleep(GATHER_S)  # let requests in flight join this flush
                batch = self._parked[: self._batch_size]
                del self._parked[: self._batch_size]
                try:
                    await self._flush(batch)
                except Exception:
                    log.exception("ingest.flush_failed")
                    for pending in batch:
                        pending.resolve(Unavailable("the event could not be stored; retry later"))
        finally:
            # Here, with no await since the loop saw nothing parked: a receipt parked after
            # this point finds a free slot and starts a flusher itself.
            self._flushers.discard(asyncio.current_task())

    async def _flush(self, batch: list[_Pending]) -> None:
        if self._dedupe.namespace is None:
            with contextlib.suppress(SQLAlchemyError):  # database down: the store below says 503
                self._dedupe.namespace = await to_thread.run_sync(instance_id, self._engine)
        claims = await self._dedupe.claim_many([(p.source, p.key, p.event_id) for p in batch])
        todo = await self._confirm_known(batch, claims)
        if not todo:
            return
        leaders: dict[tuple[str, str], _Pending] = {}
        for pending in todo:
            leaders.setdefault(pending.sql_key, pending)
        window = self._open_window(todo[0].event_id, incoming=len(leaders))
        window.flushing += 1
        try:
            receipts = await self._store(list(leaders.values()), window.name)
        except BaseException:
            window.flushing -= 1
            if window.due:  # its linger ended during this flush: send what it holds
                self._expire(window)
            raise
        window.flushing -= 1
        outcomes: list[Outcome | Exception] = []
        conflicts: list[tuple[_Pending, str]] = []
        for pending in todo:
            receipt = receipts.get(pending.sql_key)
            if receipt is None:  # its row could not be stored: the sender retries
                outcomes.append(Unavailable("the event could not be stored; retry later"))
                continue
            leader = leaders[pending.sql_key]
            first = receipt.created and leader is pending
            if first:
                window.ids.append(receipt.event_id)
            else:
                held = receipt.stored_sha256 or leader.row["body_sha256"]
                if held != pending.row["body_sha256"]:
                    conflicts.append((pending, receipt.event_id))
            outcomes.append(Outcome("accepted" if first else "duplicate", receipt.event_id))
        unstored = [
            (p.source, p.key, p.event_id)
            for p, c in zip(batch, claims, strict=True)
            if c.claimed and p.sql_key not in receipts
        ]
        await self._dedupe.release_many(unstored)
        if len(window.ids) >= self._batch_size:
            window.due = True
        if self._take_if_due(window):
            await self._send(window)  # full, or no linger: queued before the answers go out
        for pending, outcome in zip(todo, outcomes, strict=True):
            pending.resolve(outcome)
        self._note_conflicts(conflicts)

    async def _confirm_known(self, batch: list[_Pending], claims: list[Claim]) -> list[_Pending]:
        """Answer ``duplicate`` for the receipts whose key Redis remembers and SQL holds (with
        the id SQL holds); return the rest of ``batch``, in order, to be stored.

        Redis may remember a commit the database no longer has: a restore of an older backup,
        or a failover to a replica that had not received the last commits. Such a key is
        stored as a new receipt (and remembered again), so the sender's retry is not thrown
        away. One lookup in SQL, and only for a batch in which Redis knew a key. If it fails,
        those receipts get 503 (a duplicate answer vouches for a durable record)."""
        known = {p.sql_key for p, c in zip(batch, claims, strict=True) if c.known_id is not None}
        if not known:
            return batch
        held: dict[tuple[str, str], event_store.Stored] | None = None
        try:
            held = await to_thread.run_sync(self._stored, known)
        except SQLAlchemyError as exc:
            log.error("ingest.confirm_failed", events=len(known), error=type(exc).__name__)
        todo: list[_Pending] = []
        conflicts: list[tuple[_Pending, str]] = []
        for pending, claim in zip(batch, claims, strict=True):
            if claim.known_id is None:
                todo.append(pending)
            elif held is None:
                pending.resolve(Unavailable("the event could not be looked up; retry later"))
            elif (found := held.get(pending.sql_key)) is not None:
                pending.resolve(Outcome("duplicate", found.event_id))
                if found.body_sha256 != pending.row["body_sha256"]:
                    conflicts.append((pending, found.event_id))
            else:
                todo.append(pending)
        if held is not None and len(held) < len(known):
            log.warning("dedupe.not_in_database", events=len(known) - len(held))
        self._note_conflicts(conflicts)
        return todo

    def _stored(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], event_store.Stored]:
        """In a worker thread: the ids and body hashes SQL holds for ``keys``. Raises
        ``SQLAlchemyError``."""
        if self._engine.dialect.name != "postgresql":
            with Session(read_only(self._engine)) as session, session.begin():
                return event_store.stored(session, keys)
        return self._autocommitted(lambda session: event_store.stored(session, keys))

    # --- conflicts: the same key with another body, recorded once the answers are out -------

    def _note_conflicts(self, conflicts: list[tuple[_Pending, str]]) -> None:
        """Count the conflicts and record them in a task of their own: their senders have
        their ``duplicate`` answers already, and the next flush need not wait."""
        if not conflicts:
            return
        for pending, _ in conflicts:
            metrics.child(metrics.CONFLICTS, pending.source).inc()
        task = asyncio.create_task(self._record_conflicts(conflicts))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record_conflicts(self, conflicts: list[tuple[_Pending, str]]) -> None:
        try:
            await to_thread.run_sync(self._write_conflicts, conflicts)
        except SQLAlchemyError as exc:
            log.warning(
                "ingest.conflict_not_recorded", events=len(conflicts), error=type(exc).__name__
            )

    def _write_conflicts(self, conflicts: list[tuple[_Pending, str]]) -> None:
        """In a worker thread: one read of the stored bodies, then one insert-or-update per
        conflicting body, in one transaction. Raises ``SQLAlchemyError``."""
        with Session(self._engine) as session, session.begin():
            stored = conflict_store.stored_bodies(session, sorted({e for _, e in conflicts}))
            for pending, event_id in conflicts:
                body, media = stored.get(event_id, (None, ""))
                row = pending.row
                conflict_store.record(
                    session,
                    {
                        "event_id": event_id,
                        "source": pending.source,
                        "body_sha256": row["body_sha256"],
                        "headers": row["headers"],
                        "diff": orjson.dumps(
                            field_diff(
                                _decoded(body, media),
                                decode_body(row["body"], row["content_type"]),
                            )
                        ).decode(),
                        "first_at": row["received_at"],
                        "last_at": row["received_at"],
                    },
                )
                log.info("ingest.conflict", event_id=event_id, source=pending.source)

    async def _store(self, leaders: list[_Pending], job: str) -> dict[tuple[str, str], Receipt]:
        """Store the batch; if it fails for a reason other than the database being unreachable
        (one row the database refuses), store its rows one by one so only that row fails.
        Rows that could not be stored are missing from the result."""
        try:
            return await to_thread.run_sync(self._store_and_remember, leaders, job)
        except (OperationalError, InterfaceError) as exc:
            log.error("ingest.store_failed", events=len(leaders), error=type(exc).__name__)
            return {}
        except SQLAlchemyError as exc:
            log.error("ingest.store_failed", events=len(leaders), error=type(exc).__name__)
            if len(leaders) == 1:
                return {}
        receipts: dict[tuple[str, str], Receipt] = {}
        for leader in leaders:
            receipts.update(await self._store([leader], job))
        return receipts

    def _store_and_remember(
        self, leaders: list[_Pending], job: str
    ) -> dict[tuple[str, str], Receipt]:
        """In a worker thread: commit the rows (each naming the job that will carry it), then
        remember them in Redis in one round trip. Raises ``SQLAlchemyError``; Redis failures are
        logged (SQL still decides duplicates)."""
        for pending in leaders:
            pending.row["queued_job"] = job
        receipts = self._insert([p.row for p in leaders])
        committed = [(p.source, p.key, receipts[p.sql_key].event_id) for p in leaders]
        try:
            self._dedupe.remember_many(self._queue.connection, committed)
        except (RedisError, OSError) as exc:
            log.warning("dedupe.redis_unavailable", error=type(exc).__name__)
        return receipts

    def _insert(self, rows: list[dict[str, Any]]) -> dict[tuple[str, str], Receipt]:
        """Commit the rows. PostgreSQL: the batch is one ``INSERT ... RETURNING`` statement, run
        in autocommit (one round trip where BEGIN and COMMIT made three). The pool does not
        ping connections, so a connection the server dropped since its last use (a restart)
        fails here, and the batch is sent again once on a new one. Sending it again is safe
        even if the first try committed before the connection dropped: the rows conflict with
        themselves, and ``insert_many`` still counts them as stored by this call."""
        if self._engine.dialect.name != "postgresql":
            with Session(self._engine) as session, session.begin():
                return event_store.insert_many(session, rows)
        return self._autocommitted(lambda session: event_store.insert_many(session, rows))

    def _autocommitted(self, work: Callable[[Session], _T]) -> _T:
        """PostgreSQL: run ``work`` in autocommit on a receipt connection; if the server
        dropped that connection since its last use, once more on a new one."""
        for attempt in (1, 2):
            try:
                with self._autocommit.connect() as conn, Session(bind=conn) as session:
                    return work(session)
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
                log.warning("ingest.connection_dropped", error=type(exc).__name__)
        raise AssertionError("unreachable")

    # --- processing jobs: one per window of consecutive flushes ----------------------------

    def _open_window(self, first_event_id: str, *, incoming: int) -> _JobWindow:
        window = self._window
        if window is not None and len(window.ids) + incoming > self._batch_size:
            self._expire(window)  # full: a job never carries more than batch_size events
            window = self._window
        if window is None or window.due:
            window = self._window = _JobWindow(batch_job_id(first_event_id))
            if self._linger_s > 0:
                window.timer = asyncio.get_running_loop().call_later(
                    self._linger_s, self._expire, window
                )
            else:
                window.due = True
        return window

    def _expire(self, window: _JobWindow) -> None:
        window.due = True
        if self._take_if_due(window):
            task = asyncio.create_task(self._send(window))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def _take_if_due(self, window: _JobWindow) -> bool:
        """Close ``window`` if it is due and no flush holds it; True if it has a job to send."""
        if not window.due or window.flushing or window.sent:
            return False
        window.sent = True
        if window.timer is not None:
            window.timer.cancel()
        if self._window is window:
            self._window = None
        return bool(window.ids)

    async def _send(self, window: _JobWindow) -> None:
        try:
            await to_thread.run_sync(self._queue.enqueue_batch, window.ids, window.name)
        except (RedisError, OSError) as exc:
            # The events are durable; the sweep queues them once Redis answers again.
            log.warning("ingest.enqueue_failed", events=len(window.ids), error=type(exc).__name__)

    async def close(self) -> None:
        """Finish the flushes under way, queue the job being filled and wait for the sends
        (web shutdown)."""
        if self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)
        window = self._window
        if window is not None:
            window.due = True
            if self._take_if_due(window):
                await self._send(window)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)


def parse_receipt(
    *,
    source_name: str,
    source: SourceConfig,
    body: bytes,
    media: str,
    headers: Mapping[str, str],
    client_ip: str | None,
    now: float,
    origin: str = "push",
) -> tuple[ParsedEvent, dict[str, Any]]:
    """Parse and validate a verified body; return it with the ``inbound_events`` row of its
    receipt (a new event id; ``origin`` push for a callback, pull for an answer hookledger
    asked for). Raises ``BadRequest`` or ``ValidationFailed``."""
    parsed = parse_event(source.kind, body, media)
    row = _row(
        event_id=event_store.new_event_id(now),
        source_name=source_name,
        source=source,
        key=parsed.idempotency_key,
        raw_type=parsed.raw_type,
        event_type=parsed.event,
        body=body,
        media=media,
        headers=headers,
        client_ip=client_ip,
        now=now,
        origin=origin,
    )
    return parsed, row


def _decoded(body: bytes | None, media: str) -> dict[str, Any] | None:
    """A stored body decoded for comparison; ``None`` if it was pruned or no longer decodes."""
    if body is None:
        return None
    try:
        return decode_body(body, media)
    except HookError:
        return None


def rejected_row(
    *,
    source_name: str,
    source: SourceConfig,
    body: bytes,
    media: str,
    headers: Mapping[str, str],
    client_ip: str | None,
    now: float,
    error: BadRequest | ValidationFailed,
) -> dict[str, Any]:
    """The ``inbound_events`` row that keeps a callback the parser or the schema refused:
    status ``rejected``, keyed by its body's hash, the refusal in ``last_error``."""
    sha = hashlib.sha256(body).hexdigest()
    if isinstance(error, ValidationFailed):
        reason = f"422 {orjson.dumps(error.detail, default=str).decode()}"
    else:
        reason = f"400 {error.message}"
    return _row(
        event_id=event_store.new_event_id(now),
        source_name=source_name,
        source=source,
        key=rejected_store.key_of(sha),
        raw_type="",
        event_type=None,
        status=rejected_store.STATUS,
        body=body,
        media=media,
        headers=headers,
        client_ip=client_ip,
        now=now,
        last_error=reason,
    )


def _row(
    *,
    event_id: str,
    source_name: str,
    source: SourceConfig,
    key: str,
    raw_type: str,
    event_type: str | None,
    body: bytes,
    media: str,
    headers: Mapping[str, str],
    client_ip: str | None,
    now: float,
    status: str = "received",
    origin: str = "push",
    last_error: str | None = None,
) -> dict[str, Any]:
    """Every ``inbound_events`` column of a new receipt (a multi-row insert needs them all)."""
    return {
        "id": event_id,
        "source": source_name,
        "source_kind": source.kind,
        "idempotency_key": key[:300],
        "raw_type": raw_type[:64],
        "event_type": event_type,
        "status": status,
        "content_type": media,
        "body": body,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "headers": orjson.dumps(redact_headers(headers, source)).decode(),
        "client_ip": client_ip,
        "received_at": datetime.fromtimestamp(now, UTC),
        "enqueued_at": None,
        "queued_job": None,
        "next_attempt_at": None,
        "processed_at": None,
        "attempts": 0,
        "retry_base": 0,
        "last_error": last_error,
        "body_pruned_at": None,
        "origin": origin,
    }


class PulledReceipts:
    """The receipt path of bodies hookledger asked a counterpart for (``origin = pull``), for
    the sweeper and ``hookledger pull``: the same parse, the same durable insert under the same
    unique (source, idempotency key), the same Redis memory of the key and the same processing
    job as a callback's receipt, but synchronous and one body at a time. Pulls are few (one per
    gap) and run in a thread of the sweeper or in the command line, neither of which has the web
    process's event loop; micro-batching buys nothing there."""

    def __init__(self, *, engine: Engine, queue: EventQueue, dedupe_ttl_s: int) -> None:
        self._engine = engine
        self._queue = queue
        self._ttl_s = dedupe_ttl_s
        self._namespace: str | None = None

    def receive(
        self, *, source_name: str, source: SourceConfig, body: bytes, media: str, now: float
    ) -> Outcome:
        """Store a pulled body as an event (``accepted``), or find the event a callback or an
        earlier pull with its key made (``duplicate``). Raises ``BadRequest``,
        ``ValidationFailed`` or ``SQLAlchemyError``; Redis failures are logged (the sweep
        queues the event once Redis answers)."""
        parsed, row = parse_receipt(
            source_name=source_name,
            source=source,
            body=body,
            media=media,
            headers={},
            client_ip=None,
            now=now,
            origin="pull",
        )
        job = batch_job_id(row["id"])
        row["queued_job"] = job
        with Session(self._engine) as session, session.begin():
            receipts = event_store.insert_many(session, [row])
        receipt = receipts[(source_name, row["idempotency_key"])]
        if not receipt.created:
            return Outcome("duplicate", receipt.event_id)
        try:
            if self._namespace is None:
                self._namespace = instance_id(self._engine)
            remember_committed(
                self._queue.connection,
                self._namespace,
                self._ttl_s,
                [(source_name, parsed.idempotency_key, receipt.event_id)],
            )
            self._queue.enqueue_batch([receipt.event_id], job)
        except (RedisError, OSError) as exc:
            log.warning("pull.enqueue_failed", source=source_name, error=type(exc).__name__)
        return Outcome("accepted", receipt.event_id)
