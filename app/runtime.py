"""The wiring: one process's settings, engine, Redis client and event queue, built on first
use and never at import. The worker, the sweeper and the command line build a ``Runtime``
(``build_runtime``); the web process builds a ``WebRuntime`` in its lifespan
(``build_web_runtime``): the same parts, and what receipts need besides. Both refuse a
database that is not at the code's schema revision (``SchemaMismatch``).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis import Redis
from redis import asyncio as aioredis
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

import app.kinds  # noqa: F401 - every source kind's tables, on the metadata
from app.settings import DEFAULT_REDIS_URL, Settings, load_settings
from app.store.db import make_engine
from app.store.queue import EventQueue
from app.store.redis_conn import async_redis_client, redis_client
from app.store.schema import require_current


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: Engine
    redis: Redis
    events: EventQueue

    def close(self) -> None:
        """Close pooled database connections and the Redis client."""
        self.engine.dispose()
        self.redis.close()


@dataclass(frozen=True, slots=True)
class WebRuntime:
    """A web process's parts: its ``Runtime``, the asyncio Redis client of the request path,
    and the engine receipts are stored through."""

    runtime: Runtime
    aioredis: aioredis.Redis
    receipts: Engine

    async def aclose(self) -> None:
        await self.aioredis.aclose()
        if self.receipts is not self.runtime.engine:
            self.receipts.dispose()
        self.runtime.close()


log = structlog.get_logger(__name__)
_runtime: Runtime | None = None


def build_runtime(settings: Settings) -> Runtime:
    """Open the engine and the Redis client for ``settings``. Raises ``SchemaMismatch`` when
    the database is not at the code's schema revision (``hookledger db upgrade``)."""
    engine = make_engine(settings.database_url)
    try:
        require_current(engine)
    except BaseException:
        engine.dispose()
        raise
    redis = redis_client(settings.redis_url or DEFAULT_REDIS_URL, socket_timeout=10)
    events = EventQueue(redis, settings.processing)
    return Runtime(settings=settings, engine=engine, redis=redis, events=events)


def build_web_runtime(settings: Settings) -> WebRuntime:
    """The web process's parts. An unreachable database does not stop it (``/readyz`` says so
    and receipts answer 503 until it is back); a database at another schema revision does."""
    engine = make_engine(settings.database_url, pool_size=10)
    try:
        require_current(engine)
    except SQLAlchemyError as exc:
        log.error("web.database_unavailable", error=type(exc).__name__)
    except BaseException:
        engine.dispose()
        raise
    url = settings.redis_url or DEFAULT_REDIS_URL
    sync_client = redis_client(url, socket_timeout=2, connect_timeout=2)
    # Receipts get their own pool with no pre-ping: the store retries a dropped connection
    # itself, and a ping would be one more round trip for every micro-batch.
    receipts = (
        make_engine(settings.database_url, pool_size=4, pre_ping=False)
        if engine.dialect.name == "postgresql"
        else engine
    )
    runtime = Runtime(
        settings=settings,
        engine=engine,
        redis=sync_client,
        events=EventQueue(sync_client, settings.processing),
    )
    return WebRuntime(
        runtime=runtime,
        aioredis=async_redis_client(url, socket_timeout=2, connect_timeout=2),
        receipts=receipts,
    )


def get_runtime() -> Runtime:
    """Return this process's runtime, building it from the environment the first time."""
    global _runtime  # noqa: PLW0603 - one runtime per process
    if _runtime is None:
        _runtime = build_runtime(load_settings())
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or, with ``None``, drop) the process runtime; used by entry points and tests."""
    global _runtime  # noqa: PLW0603
    if _runtime is not None and _runtime is not runtime:
        _runtime.close()
    _runtime = runtime


def current_runtime() -> Runtime | None:
    """This process's runtime if one was built, else None (nothing is built)."""
    return _runtime
