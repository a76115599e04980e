"""The wiring: one process's settings, engine, Redis client and event queue, built on first
use and never at import. The worker, the sweeper and the command line build a ``Runtime`` here;
the web process builds one in its lifespan with the same parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from sqlalchemy import Engine

import app.kinds  # noqa: F401 - every source kind's tables, on the metadata
from app.settings import DEFAULT_REDIS_URL, Settings, load_settings
from app.store.db import make_engine
from app.store.queue import EventQueue
from app.store.redis_conn import redis_client
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
