"""Slowing down guesses of the admin token: wrong credentials counted per client address.

The console login and the admin API take the same secret, so they share one counter per client
address: ``hl:authfail:{address}`` in Redis, seen by every web process. The address is the one
the hooks route judges (``X-Forwarded-For`` believed only from ``server.trusted_proxies``); an
IPv6 client counts as its /64, since one host commonly holds a whole /64.

The window is fixed and starts at the first failure: once ``server.auth_failure_limit`` wrong
credentials are counted within ``server.auth_failure_window_s`` seconds, every attempt from that
address is refused (429, ``Retry-After`` the seconds left) until the window ends. A refused
attempt is not evaluated and does not count. A correct credential is never delayed: the check
before it is one Redis round trip, and a success leaves the counter as it is (it resets nobody
else's guesses behind the same address).

Redis not answering raises ``ThrottleUnavailable``: the callers refuse the attempt (503) rather
than let guesses through unchecked.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.requests import Request

from app.domain.netaddr import IPAddress, request_client
from app.errors import DependencyDown
from app.settings import ServerConfig

_PREFIX = "hl:authfail:"

# KEYS[1] the address's counter; ARGV[1] the window in seconds. The TTL is set by the failure
# that finds none, so the window starts at the first failure and a later one never extends it.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class ThrottleUnavailable(DependencyDown):
    """Redis did not answer, so failures can be neither checked nor counted."""


@dataclass(frozen=True, slots=True)
class Throttle:
    """Failed-credential counting for one client address (``who``)."""

    redis: aioredis.Redis
    who: str
    limit: int
    window_s: int

    async def retry_after(self) -> int | None:
        """Seconds until this address may try again, or ``None`` while it is under the limit.
        Raises ``ThrottleUnavailable``."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(self._name)
                pipe.pttl(self._name)
                count, pttl = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise ThrottleUnavailable(str(exc)) from exc
        left_ms = int(pttl)
        if count is None or int(count) < self.limit or left_ms <= 0:
            return None  # a count without a TTL does not last: the next failure sets one
        return max(1, math.ceil(left_ms / 1000))

    async def failed(self) -> int:
        """Count one wrong credential; return the failures in the current window. Raises
        ``ThrottleUnavailable``."""
        try:
            counted = await self.redis.eval(_COUNT, 1, self._name, str(self.window_s))
        except (RedisError, OSError) as exc:
            raise ThrottleUnavailable(str(exc)) from exc
        return int(counted)

    @property
    def _name(self) -> str:
        return _PREFIX + self.who


def throttle_for(request: Request) -> Throttle:
    """The throttle of ``request``'s client address, under the app's ``server`` settings."""
    server: ServerConfig = request.app.state.settings.server
    client: aioredis.Redis = request.app.state.aioredis
    return Throttle(
        redis=client,
        who=_who(request, server),
        limit=server.auth_failure_limit,
        window_s=server.auth_failure_window_s,
    )


def _who(request: Request, server: ServerConfig) -> str:
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return _counted_as(request_client(peer, forwarded, server.trusted_proxies))


def _counted_as(address: IPAddress | None) -> str:
    if address is None:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
