"""Redis clients from ``HOOKLEDGER_REDIS_URL``, including a master found through Sentinel.

Besides redis-py's own URLs (``redis://``, ``rediss://``, ``unix://``) this accepts

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]

(26379 when a port is left out). The client asks the sentinels which server is the master of
``service`` and asks again after a failover; ``password`` is the master's,
``sentinel_password`` the sentinels' own, when they have one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote

from redis import Redis
from redis import asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None


def parse_sentinel_url(url: str) -> SentinelTarget | None:
    """The parts of a ``redis+sentinel://`` URL; ``None`` for any other URL. Raises
    ``ValueError`` naming what is wrong with a malformed one."""
    if not url.startswith(SENTINEL_SCHEME):
        return None
    rest, _, query = url[len(SENTINEL_SCHEME) :].partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hostlist = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    hosts = []
    for item in filter(None, hostlist.split(",")):
        if item.startswith("["):  # [IPv6]:port
            host, _, port = item[1:].partition("]")
            port = port.removeprefix(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:
            host, port = item, ""
        if not host or (port and not port.isdigit()):
            raise ValueError(f"sentinel address {item!r} is not host:port")
        hosts.append((host, int(port) if port else SENTINEL_PORT))
    if not hosts:
        raise ValueError("a redis+sentinel URL needs at least one sentinel host:port")
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("a redis+sentinel URL needs /service or /service/db after the hosts")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"database {parts[1]!r} is not a number")
    options = parse_qs(query)
    return SentinelTarget(
        hosts=tuple(hosts),
        service=parts[0],
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=options.get("sentinel_password", [None])[0],
    )


def _timeouts(socket_timeout: float, connect_timeout: float | None) -> dict[str, Any]:
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout if connect_timeout is not None else 5,
    }


def _master(sentinel_class: Any, target: SentinelTarget, timeouts: dict[str, Any]) -> Any:
    """The master of ``target.service`` through a ``sentinel_class`` (sync or asyncio)."""
    sentinel = sentinel_class(
        list(target.hosts),
        sentinel_kwargs={"password": target.sentinel_password, **timeouts},
        **timeouts,
    )
    return sentinel.master_for(
        target.service, db=target.db, username=target.username, password=target.password
    )


def redis_client(url: str, *, socket_timeout: float, connect_timeout: float | None = None) -> Redis:
    """A synchronous client for ``url`` (a Sentinel-managed master for ``redis+sentinel``)."""
    timeouts = _timeouts(socket_timeout, connect_timeout)
    target = parse_sentinel_url(url)
    if target is None:
        return Redis.from_url(url, **timeouts)
    return cast(Redis, _master(Sentinel, target, timeouts))


def async_redis_client(
    url: str, *, socket_timeout: float, connect_timeout: float | None = None
) -> aioredis.Redis:
    """An asyncio client for ``url`` (a Sentinel-managed master for ``redis+sentinel``)."""
    timeouts = _timeouts(socket_timeout, connect_timeout)
    target = parse_sentinel_url(url)
    if target is None:
        return aioredis.Redis.from_url(url, **timeouts)
    return cast(aioredis.Redis, _master(AsyncSentinel, target, timeouts))
