"""Keeping rejected callbacks: bodies that passed their source's authentication but not the
parser (400) or the schema (422).

Each is stored with status ``rejected`` (``app.store.rejected``), one row per distinct body of
a source, so ops can see what a counterpart sent and replay it once the cause is fixed. The
answer does not change: the same 400 or 422, whether or not the body could be kept. A leaked
secret must not fill the disk, so each source keeps at most ``rejected_per_minute`` a minute
(counted in Redis per source and minute, shared by every web process; while Redis does not
answer, each process counts its own minute) and ``rejected_max`` in all (counted in SQL, only
for a body the minute's budget lets through, so a flood costs one Redis call per request).
Past either bound the body is not stored; ``hookledger_rejected_kept_total`` counts it and a
warning is logged at most once a minute per source and process.
"""

from __future__ import annotations

from typing import Any

import structlog
from anyio import to_thread
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from app import metrics
from app.store import rejected as rejected_store

log = structlog.get_logger(__name__)

_WINDOW_TTL_S = 120  # a minute's counter outlives its minute, then Redis drops it


class RejectedKeeper:
    """Stores rejected callbacks within their source's bounds. One per web process."""

    def __init__(self, *, engine: Engine, redis: Redis) -> None:
        self._engine = engine
        self._redis = redis
        self._local: dict[str, tuple[int, int]] = {}  # source -> (minute, count): Redis down
        self._warned: dict[str, int] = {}  # source -> the minute its bound was last logged

    async def keep(
        self, row: dict[str, Any], *, reason: str, per_minute: int, most: int, now: float
    ) -> str:
        """Store the rejected callback ``row`` (every ``inbound_events`` column) unless a bound
        of its source is reached; return the outcome: ``stored``, ``already_kept``,
        ``over_per_minute``, ``over_max`` or ``unavailable``. Never raises for an outage."""
        source = str(row["source"])
        minute = int(now // 60)
        used = await to_thread.run_sync(self._count_minute, source, minute)
        if used > per_minute:
            outcome = "over_per_minute"
        else:
            try:
                outcome = await to_thread.run_sync(self._store, row, most)
            except SQLAlchemyError as exc:
                log.warning("rejected.not_kept", error=type(exc).__name__)
                outcome = "unavailable"
        metrics.child(metrics.REJECTED_KEPT, source, reason, outcome).inc()
        if outcome.startswith("over_") and self._warned.get(source) != minute:
            self._warned[source] = minute
            log.warning(
                "rejected.bound_reached",
                bound=outcome.removeprefix("over_"),
                per_minute=per_minute,
                most=most,
            )
        elif outcome == "stored":
            log.info("rejected.kept", event_id=row["id"], reason=reason)
        return outcome

    def _count_minute(self, source: str, minute: int) -> int:
        """This request's number among the source's rejected callbacks of ``minute``."""
        key = f"hl:rj:{source}:{minute}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, _WINDOW_TTL_S)
            used, _ = pipe.execute()
            return int(used)
        except (RedisError, OSError) as exc:
            error = type(exc).__name__
        seen_minute, seen = self._local.get(source, (minute, 0))
        used = (seen if seen_minute == minute else 0) + 1
        self._local[source] = (minute, used)
        if used == 1:  # once a minute per source, not once per request of a flood
            log.warning("rejected.redis_unavailable", error=error)
        return used

    def _store(self, row: dict[str, Any], most: int) -> str:
        with Session(self._engine) as session, session.begin():
            if rejected_store.count(session, str(row["source"])) >= most:
                return "over_max"
            return "stored" if rejected_store.keep(session, row) else "already_kept"
