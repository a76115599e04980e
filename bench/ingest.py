"""Ingest benchmark: POST /hooks/{source} against a bare Starlette endpoint, same run.

    python bench/ingest.py [--duration 10] [--connections 64] [--db sqlite,postgresql]

Signed HTX callbacks, unique keys with 5% duplicates, are pre-generated and replayed by wrk
(Debian's) with 2 threads; both servers run uvicorn with 2 worker processes on this machine,
sharing its 2 cores with the database, Redis and wrk. Workers are not running: this measures
receipt only (verify, parse, durable store, dedupe, enqueue). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from bench.common import (
    PYTHON,
    ROOT,
    environment,
    flush_redis,
    free_port,
    fresh_database,
    start,
    stop,
    wait_http,
)
from bench.load import htx_body, signature

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def write_requests(path: Path, count: int) -> int:
    """One ``signature<TAB>body`` line per request; every 20th repeats an earlier event."""
    unique = 0
    with path.open("w") as out:
        for n in range(count):
            order = unique if n % 20 else max(unique - 7, 0)  # 5% duplicates
            if n % 20:
                unique += 1
            body = htx_body(10_000_000 + order)
            out.write(f"{signature(body)}\t{body.decode()}\n")
    return unique


def run_wrk(url: str, requests: Path, *, duration: int, connections: int) -> dict[str, float]:
    env = {
        "BENCH_REQUESTS": str(requests),
        "BENCH_PATH": "/hooks/htx-bench",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "requests.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        result[f"p{pct}"] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def uvicorn_command(app: str, port: int) -> list[str]:
    """uvicorn serving ``app`` as the bare baseline is served: 2 workers, no access log."""
    return [
        PYTHON,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--workers",
        "2",
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-proxy-headers",
    ]


def bench_bare(requests: Path, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    proc = start(uvicorn_command("bench.bare_app:app", port), {})
    try:
        wait_http(f"http://127.0.0.1:{port}/hooks/x")
        run_wrk(
            f"http://127.0.0.1:{port}", requests, duration=2, connections=args.connections
        )  # warm-up
        return run_wrk(
            f"http://127.0.0.1:{port}",
            requests,
            duration=args.duration,
            connections=args.connections,
        )
    finally:
        stop(proc)


def bench_hookledger(
    kind: str, requests: Path, workdir: Path, args: argparse.Namespace
) -> dict[str, float]:
    url = fresh_database(kind, workdir)
    flush_redis()
    env = environment(url, workdir)
    port = free_port()
    proc = start([PYTHON, "-m", "app.cli", "web", "--port", str(port), "--workers", "2"], env)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        run_wrk(
            f"http://127.0.0.1:{port}", requests, duration=2, connections=args.connections
        )  # warm-up
        result = run_wrk(
            f"http://127.0.0.1:{port}",
            requests,
            duration=args.duration,
            connections=args.connections,
        )
    finally:
        stop(proc)
    from app.store.db import make_engine
    from app.store.models import InboundEvent

    engine = make_engine(url)
    with Session(engine) as session:
        result["stored"] = float(
            session.execute(select(func.count()).select_from(InboundEvent)).scalar_one()
        )
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=200_000, help="pre-generated requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        requests = workdir / "requests.tsv"
        write_requests(requests, args.events)
        rows = [("bare Starlette (baseline)", bench_bare(requests, args))]
        for kind in args.db.split(","):
            rows.append((f"hookledger, {kind}", bench_hookledger(kind, requests, workdir, args)))
    bare = rows[0][1]["rps"]
    print(
        f"\nwrk -t2 -c{args.connections} -d{args.duration}s, uvicorn --workers 2, signed HTX bodies, 5% duplicates\n"
    )
    print(
        "| server | rps | vs bare | p50 ms | p99 ms | non-2xx | events stored (incl. 2 s warm-up) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        stored = f"{int(r['stored'])}" if "stored" in r else "-"
        print(
            f"| {name} | {r['rps']:.0f} | {r['rps'] / bare:.2f} | {r['p50']:.1f} | {r['p99']:.1f} | {int(r['non2xx'])} | {stored} |"
        )


if __name__ == "__main__":
    main()
