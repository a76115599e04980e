"""Retention benchmark: receipts at a steady rate while the sweeper prunes a million old events.

    python -m bench.prune [--events 1000000] [--rate 200] [--window 20] [--db postgresql]

A fresh database is seeded with ``--events`` applied events received 100 days ago, each with a
real HTX body and one attempt (plain SQL, not the pipeline: only their age and size matter).
``hookledger web`` then takes signed HTX callbacks at ``--rate`` per second (open loop: each
latency counts from when the request was due) in three phases, all in one run:

1. before: no sweeper (the baseline);
2. during: ``hookledger sweeper`` runs with ``[retention] body_days = 30, attempts_days = 30``
   and prunes every old body and attempt, in its batches; receipts go on until it is done;
3. after: the sweeper idle (nothing left to prune).

Prints receipt latency (p50, p99, max) and errors per phase, and how long the prune took.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlmodel import Session, col

from app.store.db import make_engine
from app.store.models import EventAttempt, InboundEvent
from bench.common import (
    PYTHON,
    environment,
    flush_redis,
    free_port,
    fresh_database,
    start,
    stop,
    wait_http,
)
from bench.load import htx_bodies, htx_body, run_load

RETENTION = "\n[retention]\nbody_days = 30\nattempts_days = 30\n"


def seed(engine: Engine, count: int) -> None:
    """``count`` applied events received 100 days ago, with an attempt each (PostgreSQL:
    generate_series in chunks; SQLite: executemany)."""
    body = htx_body(1)
    started = time.monotonic()
    chunk = 100_000
    with engine.begin() as conn:
        for first in range(0, count, chunk):
            last = min(first + chunk, count)
            if engine.dialect.name == "postgresql":
                conn.execute(
                    text(
                        "INSERT INTO inbound_events (id, source, source_kind, idempotency_key,"
                        " raw_type, event_type, status, content_type, body, body_sha256, headers,"
                        " received_at, processed_at, attempts, retry_base)"
                        " SELECT 'evt_old_' || n, 'htx-bench', 'htx', 'old:' || n, 'filled',"
                        " 'order.filled', 'processed', 'application/json', :body, md5(n::text),"
                        " '{}', now() - interval '100 days', now() - interval '100 days', 1, 0"
                        " FROM generate_series(:first, :last) AS n"
                    ),
                    {"body": body, "first": first, "last": last - 1},
                )
                conn.execute(
                    text(
                        "INSERT INTO event_attempts (event_id, attempt, started_at, finished_at,"
                        " outcome) SELECT 'evt_old_' || n, 1, now() - interval '100 days',"
                        " now() - interval '100 days', 'processed'"
                        " FROM generate_series(:first, :last) AS n"
                    ),
                    {"first": first, "last": last - 1},
                )
            else:
                at = (datetime.now(UTC) - timedelta(days=100)).strftime("%Y-%m-%d %H:%M:%S.%f")
                conn.exec_driver_sql(
                    "INSERT INTO inbound_events (id, source, source_kind, idempotency_key,"
                    " raw_type, event_type, status, content_type, body, body_sha256, headers,"
                    " received_at, processed_at, attempts, retry_base) VALUES (?, 'htx-bench',"
                    " 'htx', ?, 'filled', 'order.filled', 'processed', 'application/json', ?, ?,"
                    " '{}', ?, ?, 1, 0)",
                    [
                        (f"evt_old_{n}", f"old:{n}", body, f"{n:064x}", at, at)
                        for n in range(first, last)
                    ],
                )
                conn.exec_driver_sql(
                    "INSERT INTO event_attempts (event_id, attempt, started_at, finished_at,"
                    " outcome) VALUES (?, 1, ?, ?, 'processed')",
                    [(f"evt_old_{n}", at, at) for n in range(first, last)],
                )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    print(f"seeded {count:,} old events in {time.monotonic() - started:.0f} s", flush=True)


def unpruned(engine: Engine) -> int:
    """Old events that still hold a body (the receipts of this run are not old)."""
    old = datetime.now(UTC) - timedelta(days=30)
    with Session(engine) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(InboundEvent)
                .where(
                    col(InboundEvent.body_pruned_at).is_(None), col(InboundEvent.received_at) < old
                )
            ).scalar_one()
        )


def attempts_left(engine: Engine) -> int:
    """Attempts left (no worker runs here: every attempt is a seeded, old one)."""
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(EventAttempt)).scalar_one())


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def phase(port: int, bodies: Any, rate: float, seconds: float) -> list[tuple[float, int]]:
    load = asyncio.run(
        run_load(
            "127.0.0.1", port, "/hooks/htx-bench", bodies, rate=rate, count=int(rate * seconds)
        )
    )
    return [((s.done - s.due) * 1000, s.status) for s in load.sent]


def summary(name: str, sent: list[tuple[float, int]]) -> dict[str, Any]:
    latencies = [ms for ms, _ in sent]
    return {
        "phase": name,
        "requests": len(sent),
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "max": max(latencies),
        "errors": sum(1 for _, status in sent if status != 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--window", type=float, default=20, help="seconds per load chunk")
    parser.add_argument("--db", default="postgresql", choices=["postgresql", "sqlite"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = fresh_database(args.db, workdir)
        flush_redis()
        env = environment(url, workdir)
        config = Path(env["HOOKLEDGER_CONFIG"])
        config.write_text(config.read_text() + RETENTION)
        engine = make_engine(url)
        seed(engine, args.events)
        port = free_port()
        web = start([PYTHON, "-m", "app.cli", "web", "--port", str(port)], env)
        bodies = htx_bodies()
        sweeper = None
        results = []
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz")
            phase(port, bodies, args.rate, 3)  # warm-up
            results.append(
                summary("before (no sweeper)", phase(port, bodies, args.rate, args.window))
            )
            sweeper = start([PYTHON, "-m", "app.cli", "sweeper"], env)
            began = time.monotonic()
            during: list[tuple[float, int]] = []
            while unpruned(engine) > 0 or attempts_left(engine) > 0:
                during += phase(port, bodies, args.rate, args.window)
                if time.monotonic() - began > 3600:
                    raise RuntimeError("the prune did not finish within an hour")
            took = time.monotonic() - began
            results.append(summary("during the prune", during))
            results.append(
                summary("after (sweeper idle)", phase(port, bodies, args.rate, args.window))
            )
        finally:
            if sweeper is not None:
                stop(sweeper)
            stop(web)
            engine.dispose()
    print(
        f"\n{args.db}: {args.events:,} old events (bodies and attempts) pruned by the sweeper in "
        f"about {took:.0f} s (measured in {args.window:.0f} s load windows: an upper bound), "
        f"receipts at {args.rate:.0f}/s throughout\n"
    )
    print("| phase | requests | p50 ms | p99 ms | max ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['phase']} | {r['requests']:,} | {r['p50']:.1f} | {r['p99']:.1f} "
            f"| {r['max']:.1f} | {r['errors']} |"
        )


if __name__ == "__main__":
    main()
