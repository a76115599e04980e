"""The Redis fast path of deduplication.

Key ``hl:dd:{database instance id}:{source}:{sha256(idempotency key)}``: the instance id names the
database the remembered ids live in, so a fresh or recreated database (same URL or not) never
trusts what Redis remembers of another one. A first receipt claims the key with
``SET NX`` and a *pending* marker (``p:<event id>``, short TTL); once the event is committed in
SQL the value becomes the event id itself (TTL ``dedupe_ttl_s``). A later delivery that finds a
committed id answers ``duplicate`` without touching SQL. A pending marker, a missing key
(flushed Redis, expired TTL) or Redis being down all fall through to SQL, whose unique key is
the guarantee, so the fast path can never turn an unstored event into a ``duplicate``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

PENDING_TTL_S = 60

# KEYS[1] key; ARGV[1] pending marker; ARGV[2] pending ttl. Returns the existing value or nil.
_CLAIM = """
local ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
if ok then return false end
return redis.call('GET', KEYS[1])
"""


def dedupe_key(namespace: str, source: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"hl:dd:{namespace}:{source}:{digest}"


@dataclass(frozen=True, slots=True)
class Claim:
    """``known_id`` is a committed event id when Redis already knows this event."""

    known_id: str | None
    claimed: bool


class Dedupe:
    def __init__(self, client: aioredis.Redis, *, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        # The database's instance id; until it is known the fast path is skipped (SQL decides).
        self.namespace: str | None = None
        self._claim = client.register_script(_CLAIM)

    async def claim(self, source: str, idempotency_key: str, event_id: str) -> Claim:
        """Claim the key for ``event_id``; report a committed id if one is already there."""
        if self.namespace is None:
            return Claim(None, False)
        key = dedupe_key(self.namespace, source, idempotency_key)
        try:
            existing = await self._claim(keys=[key], args=[f"p:{event_id}", PENDING_TTL_S])
        except (RedisError, OSError) as exc:
            log.warning("dedupe.redis_unavailable", error=type(exc).__name__)
            return Claim(None, False)
        if existing is None:
            return Claim(None, True)
        value = existing.decode() if isinstance(existing, bytes) else str(existing)
        return Claim(None if value.startswith("p:") else value, False)

    async def remember(self, source: str, idempotency_key: str, event_id: str) -> None:
        """Record that (source, key) is committed as ``event_id``. Best effort."""
        if self.namespace is None:
            return
        try:
            await self._client.set(
                dedupe_key(self.namespace, source, idempotency_key), event_id, ex=self._ttl_s
            )
        except (RedisError, OSError) as exc:
            log.warning("dedupe.redis_unavailable", error=type(exc).__name__)

    async def release(self, source: str, idempotency_key: str, event_id: str) -> None:
        """Drop our pending claim after a failed store, so a retry is not slowed. Best effort."""
        if self.namespace is None:
            return
        key = dedupe_key(self.namespace, source, idempotency_key)
        try:
            if await self._client.get(key) == f"p:{event_id}".encode():
                await self._client.delete(key)
        except (RedisError, OSError) as exc:
            log.warning("dedupe.redis_unavailable", error=type(exc).__name__)
