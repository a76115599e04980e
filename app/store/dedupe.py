"""The Redis fast path of deduplication.

Key ``hl:dd:{database instance id}:{source}:{sha256(idempotency key)}``: the instance id names the
database the remembered ids live in, so a fresh or recreated database (same URL or not) never
trusts what Redis remembers of another one. A first receipt claims the key with
``SET NX`` and a *pending* marker (``p:<event id>``, short TTL); once the event is committed in
SQL the value becomes the event id itself (TTL ``dedupe_ttl_s``). A later delivery that finds a
committed id is reported as known, and the receipt path confirms it in SQL before answering
``duplicate`` (one lookup per batch): the database can lose a commit Redis remembers (a restore
of an older backup, a failover to a replica that lagged). A pending marker, a missing key
(flushed Redis, expired TTL) or Redis being down all fall through to SQL, whose unique key is
the guarantee, so the fast path can never turn an unstored event into a ``duplicate``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

PENDING_TTL_S = 60

# KEYS: the keys of a batch; ARGV[i]: the pending marker of KEYS[i]; ARGV[#KEYS + 1]: the
# pending TTL. Returns, per key, "" when this call claimed it, else the value already there.
_CLAIM_MANY = """
local ttl = ARGV[#KEYS + 1]
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[i], 'NX', 'EX', ttl) then
    out[i] = ''
  else
    out[i] = redis.call('GET', key) or ''
  end
end
return out
"""


# KEYS: committed keys; ARGV[i]: the event id of KEYS[i]; ARGV[#KEYS + 1]: the TTL. One command
# for a whole batch: a pipeline of SETs costs redis-py about 25 us of packing per key.
_REMEMBER_MANY = """
local ttl = ARGV[#KEYS + 1]
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i], 'EX', ttl)
end
return #KEYS
"""


# KEYS[1] key; ARGV[1] our pending marker: delete the key only while it still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def dedupe_key(namespace: str, source: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"hl:dd:{namespace}:{source}:{digest}"


@dataclass(frozen=True, slots=True)
class Claim:
    """``known_id`` is the event id Redis remembers as committed for this key (for SQL to
    confirm); ``claimed`` is true when this call set the pending marker."""

    known_id: str | None
    claimed: bool


_CLAIMED = Claim(None, True)
_UNCLAIMED = Claim(None, False)


class Dedupe:
    def __init__(self, client: aioredis.Redis, *, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        # The database's instance id; until it is known the fast path is skipped (SQL decides).
        self.namespace: str | None = None
        self._claim_many = client.register_script(_CLAIM_MANY)
        self._release = client.register_script(_RELEASE)
        self._remember: Script | None = None

    async def claim_many(self, items: list[tuple[str, str, str]]) -> list[Claim]:
        """Claim each (source, idempotency key, event id) in one round trip; report the
        committed ids Redis already knows. Redis down: nothing is claimed, SQL decides."""
        if self.namespace is None or not items:
            return [_UNCLAIMED] * len(items)
        keys = [dedupe_key(self.namespace, source, key) for source, key, _ in items]
        markers = [f"p:{event_id}" for _, _, event_id in items]
        try:
            found = await self._claim_many(keys=keys, args=[*markers, PENDING_TTL_S])
        except (RedisError, OSError) as exc:
            log.warning("dedupe.redis_unavailable", error=type(exc).__name__)
            return [_UNCLAIMED] * len(items)
        claims = []
        for value in found:
            text = value.decode() if isinstance(value, bytes) else str(value)
            if not text:
                claims.append(_CLAIMED)
            else:
                claims.append(_UNCLAIMED if text.startswith("p:") else Claim(text, False))
        return claims

    def remember_many(self, client: Redis, items: list[tuple[str, str, str]]) -> None:
        """Record that each (source, idempotency key) is committed as its event id, in one
        round trip on the synchronous ``client`` (the store runs in a worker thread). Raises
        redis errors to the caller."""
        if self.namespace is None or not items:
            return
        keys = [dedupe_key(self.namespace, source, key) for source, key, _ in items]
        if self._remember is None:
            self._remember = Script(client, _REMEMBER_MANY)
        self._remember(
            keys=keys, args=[*(event_id for _, _, event_id in items), self._ttl_s], client=client
        )

    async def release_many(self, items: list[tuple[str, str, str]]) -> None:
        """Drop our pending claims after a failed store, so a retry is not slowed. Best effort;
        a claim another receipt has taken over since is left alone."""
        if self.namespace is None or not items:
            return
        try:
            for source, key, event_id in items:
                await self._release(
                    keys=[dedupe_key(self.namespace, source, key)], args=[f"p:{event_id}"]
                )
        except (RedisError, OSError) as exc:
            log.warning("dedupe.redis_unavailable", error=type(exc).__name__)


def remember_committed(
    client: Redis, namespace: str, ttl_s: int, items: list[tuple[str, str, str]]
) -> None:
    """``Dedupe.remember_many`` for a process without the web's asyncio client (the sweeper's
    pulls): record each (source, idempotency key) as committed under its event id, in one
    round trip. Raises redis errors to the caller."""
    if not items:
        return
    keys = [dedupe_key(namespace, source, key) for source, key, _ in items]
    Script(client, _REMEMBER_MANY)(
        keys=keys, args=[*(event_id for _, _, event_id in items), ttl_s], client=client
    )
