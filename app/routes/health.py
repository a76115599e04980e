"""``/healthz`` (the process is up), ``/readyz`` (database and Redis answer) and ``/metrics``."""

from __future__ import annotations

from anyio import to_thread
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from app import metrics as metrics_module
from app.responses import json_response
from app.services import gaps as gap_service
from app.store.db import read_only


async def healthz(request: Request) -> Response:
    """200 while the process runs. ``instance`` is ``HOOKLEDGER_INSTANCE_ID`` when set: the
    process supervisor (``hookledger up``) sets a random one, and knows by it that what
    answers on its port is its own web process and not another server."""
    instance: str | None = request.app.state.instance_id
    return json_response({"status": "ok", "instance": instance} if instance else {"status": "ok"})


async def readyz(request: Request) -> Response:
    checks: dict[str, str] = {}
    engine = read_only(request.app.state.engine)

    def ping_db() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await to_thread.run_sync(ping_db)
        checks["database"] = "ok"
    except SQLAlchemyError:
        checks["database"] = "error: the database did not answer"
    try:
        await request.app.state.aioredis.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError):
        checks["redis"] = "error: Redis did not answer"
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


async def metrics(request: Request) -> Response:
    """Prometheus text: this host's processes (multiprocess mode) and the state gauges."""
    runtime = request.app.state.runtime
    settings = request.app.state.settings
    state = metrics_module.StateCollector(
        runtime.engine,
        runtime.redis,
        lambda: [runtime.events.queue.key],
        gaps=lambda: gap_service.counts(runtime.engine, settings),
    )
    body, content_type = await to_thread.run_sync(metrics_module.render, state)
    return Response(body, media_type=content_type)
