"""Where an ingest request's time goes: ``bench.ingest``'s load against the bare endpoint and
against hookledger with its later stages cut off, in one run.

    python -m bench.ingest_split [--duration 10] [--connections 64] [--db postgresql]

Rows: bare Starlette; hookledger answering right after the signature check (``edge``: routing,
middleware, metrics, reading and verifying the body); after parsing and validating too
(``no-store``); and whole (``full``: plus the micro-batched Redis claim, SQL insert, Redis
remember and job). The stages cut are answered ``accepted`` without storing anything, so this
is a diagnostic (``bench/split_app.py``), not a receiver. Also prints how busy the machine's
cores were (wrk, PostgreSQL and Redis included): a stage that leaves them idle is bound by
latency (64 connections, closed loop), not CPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import (
    environment,
    flush_redis,
    free_port,
    fresh_database,
    machine_jiffies,
    start,
    stop,
    wait_http,
)
from bench.ingest import bench_bare, run_wrk, uvicorn_command, write_requests

STAGES = ("edge", "no-store", "full")


def bench_stage(
    stage: str, kind: str, requests: Path, workdir: Path, args: argparse.Namespace
) -> dict[str, float]:
    url = fresh_database(kind, workdir)
    flush_redis()
    env = environment(url, workdir) | {
        "BENCH_SPLIT": stage,
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{stage}"),
    }
    (workdir / f"metrics-{stage}").mkdir()
    port = free_port()
    proc = start(uvicorn_command("bench.split_app:app", port), env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        run_wrk(base, requests, duration=2, connections=args.connections)  # warm-up
        total0, idle0 = machine_jiffies()
        result = run_wrk(base, requests, duration=args.duration, connections=args.connections)
        total1, idle1 = machine_jiffies()
    finally:
        stop(proc)
    result["busy"] = 100 * (1 - (idle1 - idle0) / max(total1 - total0, 1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--db", default="postgresql", choices=["postgresql", "sqlite"])
    parser.add_argument("--events", type=int, default=200_000, help="pre-generated requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        requests = workdir / "requests.tsv"
        write_requests(requests, args.events)
        rows = [("bare Starlette (baseline)", bench_bare(requests, args))]
        for stage in STAGES:
            rows.append((stage, bench_stage(stage, args.db, requests, workdir, args)))
    bare = rows[0][1]["rps"]
    print(f"\nwrk -t2 -c{args.connections} -d{args.duration}s, uvicorn --workers 2, {args.db}\n")
    print("| server | rps | vs bare | p50 ms | p99 ms | cores busy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        busy = f"{r['busy']:.0f}%" if "busy" in r else "-"
        print(
            f"| {name} | {r['rps']:.0f} | {r['rps'] / bare:.2f} | {r['p50']:.1f} | "
            f"{r['p99']:.1f} | {busy} |"
        )


if __name__ == "__main__":
    main()
