"""Prometheus metrics, shared by every process of a host through prometheus-client's
multiprocess mode.

Set ``PROMETHEUS_MULTIPROC_DIR`` (``hookledger`` sets ``./var/metrics`` when it is unset) to a
directory every web, worker and sweeper process of the host can write, emptied at boot (a
tmpfs such as ``/run/hookledger/metrics``). Each process then writes its counters and
histograms to its own files, and ``GET /metrics`` on any web process adds them all up, so a
worker's counts show up without a port of its own. Without the variable (tests that build the
app in-process) each process counts for itself.

The state of the system (queue depth, pending events, dead letters) is not counted by anyone:
``StateCollector`` reads it from Redis and SQL at scrape time, so every replica reports the same
truth; so are the gaps per source (``hookledger_gaps``). Names and labels are documented in the
README (Observability).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from redis import Redis
    from sqlalchemy import Engine

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = "_unknown"  # the label of anything not configured: bounded label sets

# Latency buckets from a millisecond (a receipt) to minutes (a retried event).
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

HTTP_REQUESTS = Counter(
    "hookledger_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "hookledger_http_request_duration_seconds",
    "Time from request to the end of the response, by route template.",
    ["route"],
    buckets=_FAST,
)
EVENTS_RECEIVED = Counter(
    "hookledger_events_received",
    "Callbacks by source and outcome: accepted, duplicate, rejected (any 4xx), unavailable "
    "(503: not stored, the sender retries).",
    ["source", "outcome"],
)
REJECTIONS = Counter(
    "hookledger_rejections",
    "Rejected callbacks by source and reason (unauthorized, forbidden, bad_request, schema, "
    "too_large, unsupported_media_type, unknown_source).",
    ["source", "reason"],
)
REJECTED_KEPT = Counter(
    "hookledger_rejected_kept",
    "Authenticated callbacks refused by the parser or the schema, by source, reason "
    "(bad_request, schema) and what became of the body: stored, already_kept (that body is "
    "kept already), over_per_minute, over_max (a bound of the source was reached), "
    "unavailable (the database or Redis did not answer).",
    ["source", "reason", "outcome"],
)
CONFLICTS = Counter(
    "hookledger_conflicts",
    "Callbacks answered duplicate whose body differs from the stored event's, by source.",
    ["source"],
)
EVENTS_PROCESSED = Counter(
    "hookledger_events_processed",
    "Events a worker finished an attempt on, by source and resulting status (processed, "
    "unhandled, retrying, dead).",
    ["source", "status"],
)
PROCESSING_LATENCY = Histogram(
    "hookledger_processing_latency_seconds",
    "Receipt to ledger commit of events that ended processed or unhandled, by source.",
    ["source"],
    buckets=_SLOW,
)
SIGNAL_DELIVERIES = Counter(
    "hookledger_signal_deliveries",
    "Follow-up signal send attempts by target and outcome (delivered, retrying, dead, refused).",
    ["target", "outcome"],
)
AUTH_THROTTLED = Counter(
    "hookledger_auth_throttled",
    "Console logins and admin API calls refused with 429 because their client address sent too "
    "many wrong admin tokens, by surface (console, admin).",
    ["surface"],
)
RETENTION_REMOVED = Counter(
    "hookledger_retention_removed",
    "What the sweeper's retention removed: raw bodies of applied events (bodies), event "
    "attempts (attempts), signal delivery log rows (deliveries) and rejected callbacks "
    "(rejected).",
    ["what"],
)

_REASONS = {"validation_failed": "schema"}


# Read once, as prometheus_client does when it is imported: the mode cannot change later.
MULTIPROC_DIR = os.environ.get(MULTIPROC_ENV) or None


_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered. ``labels()`` checks and locks on every call
    (a few microseconds); the receipt path asks for the same few label sets every time, and
    every label set here is bounded (route templates, configured sources, status codes)."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def rejection_reason(code: str) -> str:
    return _REASONS.get(code, code)


def observe_events(done: Iterable[tuple[str, datetime | None, str]]) -> None:
    """Count events a worker committed an attempt on: ``(source, received_at, status)``; the
    latency of those that reached the ledger (processed, unhandled) is receipt to now."""
    now = datetime.now(UTC)
    for source, received_at, status in done:
        EVENTS_PROCESSED.labels(source, status).inc()
        if received_at is not None and status in ("processed", "unhandled"):
            PROCESSING_LATENCY.labels(source).observe(age_seconds(received_at, now))


def age_seconds(since: datetime, now: datetime | None = None) -> float:
    stamp = since if since.tzinfo else since.replace(tzinfo=UTC)
    return max(0.0, ((now or datetime.now(UTC)) - stamp).total_seconds())


class StateCollector(Collector):
    """Gauges read at scrape time: queue depth from Redis; pending, oldest pending and dead
    events and dead signals from SQL. A source that does not answer yields no sample (and
    ``hookledger_state_up{store}`` 0) instead of failing the scrape."""

    def __init__(
        self,
        engine: Engine,
        redis: Redis,
        queue_keys: Callable[[], Iterable[str]],
        *,
        gaps: Callable[[], Mapping[str, int]] | None = None,
    ):
        self._engine = engine
        self._redis = redis
        self._queue_keys = queue_keys
        self._gaps = gaps  # per configured source: bounded labels

    def collect(self) -> Iterable[Metric]:
        from redis.exceptions import RedisError
        from sqlalchemy.exc import SQLAlchemyError

        from app.store.db import read_only
        from app.store.events import pending_summary

        up = GaugeMetricFamily(
            "hookledger_state_up",
            "1 when the store the state gauges read (redis, database) answered this scrape.",
            labels=["store"],
        )
        try:
            depth = sum(int(self._redis.llen(key)) for key in self._queue_keys())
        except (RedisError, OSError):
            up.add_metric(["redis"], 0)
        else:
            up.add_metric(["redis"], 1)
            yield GaugeMetricFamily(
                "hookledger_queue_depth", "Jobs waiting in the RQ queue.", value=depth
            )
        try:
            summary = pending_summary(read_only(self._engine))
        except SQLAlchemyError:
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield GaugeMetricFamily(
                "hookledger_events_pending",
                "Events stored and not final (received or retrying).",
                value=summary.pending,
            )
            oldest = age_seconds(summary.oldest_pending) if summary.oldest_pending else 0.0
            yield GaugeMetricFamily(
                "hookledger_oldest_pending_event_age_seconds",
                "Age of the oldest event not yet final (0 when none is pending).",
                value=oldest,
            )
            yield GaugeMetricFamily(
                "hookledger_dead_letters", "Events with status dead.", value=summary.dead
            )
            yield GaugeMetricFamily(
                "hookledger_dead_signals",
                "Follow-up signals with status dead.",
                value=summary.dead_signals,
            )
        if self._gaps is not None:
            try:
                per_source = self._gaps()
            except SQLAlchemyError:
                pass  # hookledger_state_up{store="database"} says so when the database is down
            else:
                family = GaugeMetricFamily(
                    "hookledger_gaps",
                    "What should have happened and has not (an order not final long after its "
                    "last event, a contract past its value date, a rental order still created "
                    "past its term), per configured source; counted up to 10000.",
                    labels=["source"],
                )
                for source, count in sorted(per_source.items()):
                    family.add_metric([source], count)
                yield family
        yield up


def host_registry() -> CollectorRegistry:
    """Every process of the host (multiprocess mode), or this process's own registry."""
    if not MULTIPROC_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)  # type: ignore[no-untyped-call]
    return registry


def render(state: Collector | None) -> tuple[bytes, str]:
    """The exposition text of every process of the host (or of this one) plus ``state``."""
    extra = CollectorRegistry()
    if state is not None:
        extra.register(state)
    return generate_latest(host_registry()) + generate_latest(extra), CONTENT_TYPE_LATEST
