"""End-to-end benchmark: receipt to ledger commit at a steady rate, on the Procfile's processes.

    python -m bench.e2e [--rate 500] [--duration 30] [--warmup 5] [--workers 2] [--db postgresql]

Starts ``hookledger web --workers 2`` (``--web-workers``) and ``--workers`` ``hookledger
worker`` processes on a fresh database, sends unique signed HTX fills at ``--rate`` per second
(open loop, 32 keep-alive connections), then waits until every accepted event is applied.
Reports the HTTP answer latency (from the moment each request was due, client side) and the
receipt-to-commit latency from the database's own timestamps: ``received_at`` (the web process
read the body) to ``processed_at`` (stamped by the worker after the ledger write, just before
COMMIT), p50/p99/max, over the events received after ``--warmup`` seconds. Also reports the
CPU each process group (web, workers, PostgreSQL, Redis, the load generator) spent per event,
from ``/proc``, and how busy the cores were: with the cores near 100% busy, the latency is a
backlog's. ``ANALYZE`` runs on each table that autovacuum's default rule would analyze
(autovacuum is off on this machine).

Baseline, same run: the same load with ``processing.batch_size = 1`` (one event per receipt
flush and per job, the earlier design's granularity) for ``--baseline-duration`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path
from statistics import quantiles
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlmodel import Session, col

from app.store.db import make_engine
from app.store.models import InboundEvent
from bench.common import (
    PYTHON,
    CpuMeter,
    environment,
    flush_redis,
    free_port,
    fresh_database,
    start,
    stop,
    wait_http,
)
from bench.load import htx_bodies, run_load


def pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return quantiles(values, n=100, method="inclusive")[p - 1]


def run(args: argparse.Namespace, *, batch_size: int, duration: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = fresh_database(args.db, workdir)
        flush_redis()
        env = environment(url, workdir, batch_size=batch_size, linger_ms=args.linger_ms)
        port = free_port()
        web = ["web", "--port", str(port), "--workers", str(args.web_workers)]
        procs = [start([PYTHON, "-m", "app.cli", *web], env)]
        procs += [start([PYTHON, "-m", "app.cli", "worker"], env) for _ in range(args.workers)]
        meter = CpuMeter({"web": [procs[0].pid], "workers": [p.pid for p in procs[1:]]})
        engine = make_engine(url)
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz")
            time.sleep(1)
            analyzer = Analyzer(engine)
            analyzer.start()
            meter.start()
            load = asyncio.run(
                run_load(
                    "127.0.0.1",
                    port,
                    "/hooks/htx-bench",
                    htx_bodies(),
                    rate=args.rate,
                    count=int(args.rate * duration),
                )
            )
            unapplied = wait_applied(engine, args.drain_timeout)
            meter.stop()  # the load and the drain: all the work these events took
            analyzer.stopping.set()
            analyzer.join()
            with Session(engine) as session:
                rows = session.execute(
                    select(col(InboundEvent.received_at), col(InboundEvent.processed_at)).where(
                        col(InboundEvent.processed_at).is_not(None)
                    )
                ).all()
        finally:
            for proc in procs:
                stop(proc)
            engine.dispose()
    t0 = min(s.due for s in load.sent)
    http = [(s.done - s.due) * 1000 for s in load.sent if s.due >= t0 + args.warmup]
    first = min(received for received, _ in rows)
    commit = [
        (done - received).total_seconds() * 1000
        for received, done in rows
        if (received - first).total_seconds() >= args.warmup
    ]
    errors = sum(1 for s in load.sent if s.status != 200)
    per_event = {group: 1e6 * sec / len(load.sent) for group, sec in meter.seconds.items()}
    return {
        "cpu_us": per_event,
        "cores_busy": meter.busy_s / meter.wall_s,
        "sent": len(load.sent),
        "errors": errors,
        "unapplied": unapplied,
        "http_p50": pct(http, 50),
        "http_p99": pct(http, 99),
        "commit_p50": pct(commit, 50),
        "commit_p99": pct(commit, 99),
        "commit_max": max(commit) if commit else float("nan"),
    }


class Analyzer(threading.Thread):
    """Stands in for autovacuum's ANALYZE, which this machine's PostgreSQL has turned off:
    without statistics the planner treats the fresh, fast-growing tables as empty. Every
    ``interval_s`` it looks for tables whose changes since their last analysis pass
    autovacuum's default trigger (``autovacuum_analyze_threshold`` 50 +
    ``autovacuum_analyze_scale_factor`` 0.1 x its rows) and analyzes them, as autovacuum
    would; like autovacuum (``autovacuum_naptime`` 60 s) it visits a table at most once per
    ``naptime_s``. The first visit of each table is not held back, since a database this fresh
    has no statistics at all. Analyzing too often is not free: ANALYZE of ``postings`` at
    120,000 rows takes about 0.3 s of a core, and checking every second would
    spend a sixth of a 2-core machine's CPU on it and show as latency spikes."""

    QUERY = text(
        "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
        "WHERE s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)"
    )

    def __init__(self, engine: Engine, interval_s: float = 1, naptime_s: float = 60) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.interval = interval_s
        self.naptime = naptime_s
        self.visited: dict[str, float] = {}  # table -> when last analyzed (monotonic)
        self.stopping = threading.Event()

    def run(self) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        while not self.stopping.wait(self.interval):
            with self.engine.connect() as conn:
                for (table,) in conn.execute(self.QUERY).all():
                    last = self.visited.get(table)
                    if last is not None and time.monotonic() - last < self.naptime:
                        continue
                    conn.execute(text(f'ANALYZE "{table}"'))
                    self.visited[table] = time.monotonic()
                conn.commit()


def wait_applied(engine: Engine, timeout_s: float) -> int:
    """Wait until no stored event is pending; return how many still are at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        with Session(engine) as session:
            pending = session.execute(
                select(func.count())
                .select_from(InboundEvent)
                .where(col(InboundEvent.processed_at).is_(None))
            ).scalar_one()
        if not pending or time.monotonic() > deadline:
            return int(pending)
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--baseline-duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="hookledger worker processes")
    parser.add_argument("--linger-ms", type=float, default=25, help="enqueue_linger_ms")
    parser.add_argument("--web-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--db", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--drain-timeout", type=float, default=120)
    args = parser.parse_args()
    rows = []
    if args.baseline_duration:
        rows.append(
            ("batch_size = 1 (baseline)", run(args, batch_size=1, duration=args.baseline_duration))
        )
    rows.append(("batch_size = 200 (default)", run(args, batch_size=200, duration=args.duration)))
    print(
        f"\n{args.rate:.0f} events/s, web --workers {args.web_workers} + {args.workers} worker(s), "
        f"{args.db}, "
        f"enqueue_linger_ms {args.linger_ms:.0f}, first {args.warmup:.0f} s excluded; "
        "commit = received_at to processed_at"
    )
    print(
        "| design | sent | non-2xx | not applied | HTTP p50 ms | HTTP p99 ms "
        "| commit p50 ms | commit p99 ms | commit max ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(
            f"| {name} | {r['sent']:.0f} | {r['errors']:.0f} | {r['unapplied']:.0f} "
            f"| {r['http_p50']:.1f} | {r['http_p99']:.1f} | {r['commit_p50']:.1f} "
            f"| {r['commit_p99']:.1f} | {r['commit_max']:.1f} |"
        )
    # Where the CPU went, per event sent (load and drain). Not a fixed cost: workers with CPU
    # to spare apply small batches at once (low latency, more CPU per event), and batches grow
    # as the rate does. Cores near 100% busy while latency grows is the machine's limit.
    groups = ("web", "workers", "postgres", "redis", "this process", "other")
    print(f"\nCPU per event sent, us (load and drain; {os.cpu_count()} cores)")
    print(f"| design | {' | '.join(groups)} | total | cores busy |")
    print("| --- " * (len(groups) + 3) + "|")
    for name, r in rows:
        cpu = r["cpu_us"]
        print(
            f"| {name} | "
            + " | ".join(f"{cpu.get(g, 0.0):.0f}" for g in groups)
            + f" | {sum(cpu.values()):.0f} | {r['cores_busy']:.2f} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("HOOKLEDGER_LOG_LEVEL", "WARNING")
    main()
