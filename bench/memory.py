"""Memory benchmark: resident size of the web and worker processes across a long run.

    python -m bench.memory [--events 1000000] [--rate 1000] [--workers 2] [--db postgresql]

Starts ``hookledger web --workers 2`` and ``--workers`` ``hookledger worker`` processes on a
fresh database, sends ``--events`` unique signed HTX fills at ``--rate`` per second, and samples
every process's resident set size (``VmRSS`` from ``/proc``) every 5 s until every event is
applied. ``ANALYZE`` runs as autovacuum's defaults would (``bench.e2e.Analyzer``; this
machine's PostgreSQL has autovacuum off). Prints RSS after warm-up (the first 10% of events),
at the end, and the growth in between, per process. The baseline is each process's own warm-up
size: the claim is "no growth after warm-up", so the number to read is the growth column.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session, col

from app.store.db import make_engine
from app.store.models import InboundEvent
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
from bench.e2e import Analyzer, wait_applied
from bench.load import htx_bodies, run_load


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    pids = [int(p) for p in text.split()]
    # uvicorn's worker processes (not multiprocessing's resource tracker)
    return [p for p in pids if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


class Sampler(threading.Thread):
    def __init__(self, named: dict[str, int], engine: object, interval_s: float = 5) -> None:
        super().__init__(daemon=True)
        self.named = named
        self.engine = engine
        self.interval = interval_s
        self.samples: list[tuple[float, int, dict[str, int]]] = []  # (t, applied, name -> KiB)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            with Session(self.engine) as session:  # type: ignore[call-overload]
                applied = session.execute(
                    select(func.count())
                    .select_from(InboundEvent)
                    .where(col(InboundEvent.processed_at).is_not(None))
                ).scalar_one()
            sizes = {name: rss_kib(pid) or 0 for name, pid in self.named.items()}
            self.samples.append((time.monotonic(), int(applied), sizes))
            print(
                f"  {int(applied):>9} applied  "
                + "  ".join(f"{n} {s / 1024:.0f} MiB" for n, s in sizes.items()),
                flush=True,
            )
            self.stopping.wait(self.interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default="postgresql", choices=("postgresql", "sqlite"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = fresh_database(args.db, workdir)
        flush_redis()
        env = environment(url, workdir)
        port = free_port()
        web = start([PYTHON, "-m", "app.cli", "web", "--port", str(port), "--workers", "2"], env)
        workers = [start([PYTHON, "-m", "app.cli", "worker"], env) for _ in range(args.workers)]
        engine = make_engine(url)
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz")
            time.sleep(1)
            named = {f"web{i + 1}": pid for i, pid in enumerate(children(web.pid))}
            named.update({f"worker{i + 1}": w.pid for i, w in enumerate(workers)})
            sampler = Sampler(named, engine)
            sampler.start()
            analyzer = Analyzer(engine)
            analyzer.start()
            started = time.monotonic()
            load = asyncio.run(
                run_load(
                    "127.0.0.1",
                    port,
                    "/hooks/htx-bench",
                    htx_bodies(),
                    rate=args.rate,
                    count=args.events,
                )
            )
            unapplied = wait_applied(engine, 600)
            sampler.stopping.set()
            sampler.join()
            analyzer.stopping.set()
            analyzer.join()
            elapsed = time.monotonic() - started
        finally:
            for proc in [web, *workers]:
                stop(proc)
            engine.dispose()
    errors = sum(1 for s in load.sent if s.status != 200)
    warm = next(s for s in sampler.samples if s[1] >= args.events // 10)
    last = sampler.samples[-1]
    print(
        f"\n{args.events} events at {args.rate:.0f}/s ({elapsed:.0f} s), {args.db}, "
        f"{errors} non-2xx, {unapplied} not applied; RSS sampled every 5 s"
    )
    print("| process | RSS after warm-up (10% of events) | RSS at the end | growth |")
    print("| --- | --- | --- | --- |")
    for name in named:
        before, after = warm[2][name] / 1024, last[2][name] / 1024
        print(f"| {name} | {before:.1f} MiB | {after:.1f} MiB | {after - before:+.1f} MiB |")


if __name__ == "__main__":
    os.environ.setdefault("HOOKLEDGER_LOG_LEVEL", "WARNING")
    main()
