"""structlog set-up, once per process: JSON lines, or a readable console on a terminal.

Context (event id, job id, source) is bound through contextvars. Nothing here ever logs a
request body, a header value, a secret or a signature: callers pass ids and error class names.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_configured = False


def configure_logging(*, level: str | None = None, json: bool | None = None) -> None:
    """Configure structlog and route the standard library's loggers (uvicorn, rq) through it."""
    global _configured  # noqa: PLW0603 - configure once per process
    if _configured:
        return
    level = (level or os.environ.get("HOOKLEDGER_LOG_LEVEL") or "INFO").upper()
    if json is None:
        json = (
            os.environ.get("HOOKLEDGER_LOG_FORMAT", "").lower() != "console"
            and not sys.stderr.isatty()
        )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # below the level: dropped before any work
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "rq.worker"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # uvicorn writes its access line whenever "uvicorn.access" has a handler, its ancestors'
    # included, whatever ``access_log`` says; the line names the request path, and a token
    # source's path carries its credential (/hooks/{source}/{token}). The receipt's own line
    # (hook.received) records each callback without it.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    # httpx logs every request's full URL at INFO, and a target's URL carries its credential
    # (seed 000's /webhook/{token}/order): the delivery job logs the outcome without it.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    _configured = True
