"""Per-process resources of a worker: settings, engine, Redis. Built on first use, not at import.

RQ jobs carry only ids; a job asks ``get_runtime()`` for what it needs. ``SimpleWorker`` (the
default) runs jobs in the worker process itself, so the engine's pool is reused from job to job;
``ForkingWorker`` (``hookledger worker --fork``) runs each in a forked work horse.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis import Redis
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.worker import BaseWorker
from sqlalchemy import Engine

from app.settings import DEFAULT_REDIS_URL, Settings, load_settings
from app.store.db import make_engine
from app.store.models import create_all
from app.store.queue import EventQueue
from app.store.redis_conn import redis_client


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
    """Open the engine (creating missing tables) and the Redis client for ``settings``."""
    engine = make_engine(settings.database_url)
    create_all(engine)
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


class _BindsJobId(BaseWorker):
    """Every log line written while a job runs (ours and RQ's own) carries its ``job_id``."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        with structlog.contextvars.bound_contextvars(job_id=job.id):
            super().execute_job(job, queue)


class InProcessWorker(_BindsJobId, SimpleWorker):
    """RQ's ``SimpleWorker`` (jobs in the worker process: the pool is reused from job to job)."""


class ForkingWorker(_BindsJobId, Worker):
    """RQ's forking worker, safe for the runtime's connection pool.

    A forked work horse must not use the database connections it inherited: they belong to the
    parent (and to the next horse). ``dispose(close=False)`` gives the horse a pool of its own
    without closing the parent's sockets. redis-py resets its pool in a new process by itself.
    """

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        if _runtime is not None:
            _runtime.engine.dispose(close=False)
        super().main_work_horse(job, queue)
