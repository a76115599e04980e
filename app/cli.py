"""The ``hookledger`` command.

    hookledger up            start web, worker and sweeper on embedded defaults
    hookledger web           the HTTP edge (uvicorn)
    hookledger worker        one RQ worker on the events queue
    hookledger sweeper       the periodic sweep that re-queues unfinished events
    hookledger metrics       serve this host's process metrics (for hosts without web)
    hookledger reconcile     one sweep now, reporting what it re-queued
    hookledger check-config  validate the configuration and exit
    hookledger init-db       create missing tables
    hookledger sample        print a signed sample request for a source
    hookledger ledger export --from DATE --to DATE [--account A] [--format csv|json]
    hookledger ledger verify check every ledger invariant; exit 1 on any breach
    hookledger events list|show|prune   the event log
    hookledger dlq list|replay|discard  dead letters (events and sig_N signals)
    hookledger signals list|show|pause|resume   follow-up signals and the kill switch

Exit codes: 0 success, 1 the work failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from redis import Redis

    from workers.runtime import Runtime

VAR_DIR = Path("var")


def _share_metrics(*, wipe: bool = False) -> None:
    """Have this process and the ones it starts write their metrics to one directory
    (``PROMETHEUS_MULTIPROC_DIR``, default ``./var/metrics``), so ``GET /metrics`` on a web
    process reports the whole host. ``wipe`` empties it first (``hookledger up`` owns every
    process writing there). Runs before anything imports prometheus_client, which reads the
    variable once."""
    directory = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or VAR_DIR / "metrics").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if wipe:
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"hookledger: configuration error\n{exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def cmd_check_config(_args: argparse.Namespace) -> int:
    settings = _settings()
    print(f"config OK: {settings.config_path}")
    for name, source in sorted(settings.sources.items()):
        print(f"  source {name}: kind={source.kind} auth={source.auth} account={source.account_id}")
    print(f"  database: {_redact_url(settings.database_url)}")
    redis = _redact_url(settings.redis_url) if settings.redis_url else "(resolved at start)"
    print(f"  redis: {redis}")
    return 0


def _redact_url(url: str) -> str:
    from sqlalchemy.engine.url import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - best effort for display only
        return "(unparseable url)"


def cmd_init_db(_args: argparse.Namespace) -> int:
    from app.store.db import make_engine
    from app.store.models import create_all

    settings = _settings()
    create_all(make_engine(settings.database_url))
    print(f"tables ready in {_redact_url(settings.database_url)}")
    return 0


def _install_runtime(settings: Settings) -> Runtime:
    """Build this process's runtime and make it the one jobs use (worker, sweeper)."""
    from workers.runtime import build_runtime, set_runtime

    runtime = build_runtime(settings)
    set_runtime(runtime)
    return runtime


def cmd_web(args: argparse.Namespace) -> int:
    _share_metrics()
    import uvicorn

    _settings()  # fail fast, with the key named, before uvicorn imports the app
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,  # X-Forwarded-For is judged by server.trusted_proxies, not uvicorn
        access_log=False,
        log_config=None,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _share_metrics()
    import structlog
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from rq.serializers import JSONSerializer

    from app.logging import configure_logging
    from workers.runtime import ForkingWorker, InProcessWorker

    log = structlog.get_logger("hookledger.worker")

    configure_logging()
    runtime = _install_runtime(_settings())
    queue = runtime.events.queue
    worker_class = ForkingWorker if args.fork else InProcessWorker
    level = os.environ.get("HOOKLEDGER_LOG_LEVEL", "INFO")
    import workers.delivery  # the job modules: imported before the heap settles
    import workers.jobs  # noqa: F401
    from app.gctune import WORKER_GEN0_THRESHOLD, settle_heap

    settle_heap(WORKER_GEN0_THRESHOLD)
    while True:
        worker = worker_class([queue], connection=runtime.redis, serializer=JSONSerializer)
        try:
            # No RQ scheduler here: it forks a child that outlives a killed worker. The
            # sweeper moves RQ's scheduled retries back into the queue instead.
            worker.work(burst=args.burst, logging_level=level)
            return 0
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # RQ gives up when Redis goes away mid-job (a restart, a failover). What the job
            # committed is in SQL; what it could not report, the sweep re-queues. Wait for
            # Redis and work on as a new worker, instead of leaving it to a supervisor.
            if args.burst:
                raise
            log.warning("worker.redis_lost", error=str(exc))
            _wait_for_redis(runtime.redis)


def _wait_for_redis(redis: Redis, *, max_delay_s: float = 5.0) -> None:
    """Sleep until ``redis`` answers a PING, backing off up to ``max_delay_s``."""
    import structlog
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    delay = 0.25
    while True:
        time.sleep(delay)
        try:
            redis.ping()
        except (RedisConnectionError, RedisTimeoutError):
            delay = min(delay * 2, max_delay_s)
            continue
        structlog.get_logger("hookledger.worker").info("worker.redis_back")
        return


def cmd_sweeper(args: argparse.Namespace) -> int:
    _share_metrics()
    from app.gctune import WORKER_GEN0_THRESHOLD, settle_heap
    from app.logging import configure_logging
    from workers.sweeper import run_forever

    configure_logging()
    runtime = _install_runtime(_settings())
    settle_heap(WORKER_GEN0_THRESHOLD)
    run_forever(runtime, interval_s=args.interval)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """Serve this host's process metrics (a worker host has no web process to do it)."""
    _share_metrics()
    from prometheus_client import start_http_server

    from app.metrics import host_registry

    start_http_server(args.port, addr=args.host, registry=host_registry())
    print(f"hookledger metrics on http://{args.host}:{args.port}/metrics", file=sys.stderr)
    while True:
        time.sleep(3600)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from workers.runtime import build_runtime
    from workers.sweeper import sweep_once

    runtime = build_runtime(_settings())
    try:
        result = sweep_once(runtime, stale_after_s=args.older_than)
    finally:
        runtime.close()
    print(
        f"reconcile: {result.due} unfinished event(s) due, {len(result.requeued)} re-queued, "
        f"{result.still_queued} already waiting in the queue"
    )
    for event_id in result.requeued:
        print(f"  re-queued {event_id}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from app.samples import sample_curl

    settings = _settings()
    names = [args.source] if args.source else sorted(settings.sources)
    for name in names:
        source = settings.sources.get(name)
        if source is None:
            print(f"hookledger: no source named {name!r}", file=sys.stderr)
            return 2
        print(f"# {name} ({source.kind}, auth {source.auth})")
        print(sample_curl(name, source, args.url))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from app.redis_embedded import resolve
    from app.samples import sample_curl

    settings = _settings()
    VAR_DIR.mkdir(exist_ok=True)
    _share_metrics(wipe=True)  # every process writing there is started here
    redis_url, redis_proc = resolve(settings.redis_url, VAR_DIR)
    env = {**os.environ, "HOOKLEDGER_REDIS_URL": redis_url}
    exe = [sys.executable, "-m", "app.cli"]
    procs: list[subprocess.Popen[bytes]] = []
    procs.append(subprocess.Popen([*exe, "init-db"], env=env))
    procs[0].wait()
    procs = [
        subprocess.Popen([*exe, "web", "--host", args.host, "--port", str(args.port)], env=env),
        *(subprocess.Popen([*exe, "worker"], env=env) for _ in range(args.workers)),
        subprocess.Popen([*exe, "sweeper"], env=env),
    ]
    base = f"http://{args.host}:{args.port}"
    _wait_http(f"{base}/healthz", 20)
    print(f"\nhookledger is up: {base}  (config: {settings.config_path})")
    print(f"  database: {_redact_url(settings.database_url)}")
    print(f"  redis:    {redis_url}{'  (private, data in var/redis)' if redis_proc else ''}")
    print(f"  {args.workers} worker(s) and the sweeper are running. Ctrl-C stops everything.\n")
    print("Try a signed sample callback (run it twice: the second answer is a duplicate):\n")
    for name, source in sorted(settings.sources.items()):
        if source.auth != "none":
            print(sample_curl(name, source, base))
            print()
            break
    stop = False

    def _stop(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stop and all(p.poll() is None for p in procs):
        time.sleep(0.5)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    if redis_proc is not None:
        redis_proc.terminate()
        redis_proc.wait(timeout=15)
    return 0


def _wait_http(url: str, timeout_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own loopback URL
                return
        except OSError:
            time.sleep(0.2)


def cmd_ledger(args: argparse.Namespace) -> int:
    from app import ledger_cli

    settings = _settings()
    if args.ledger_func == "verify":
        return ledger_cli.run_verify(settings, sys.stdout)
    if args.output == "-":
        return ledger_cli.export(settings, args, sys.stdout)
    with open(args.output, "w", encoding="utf-8", newline="") as out:
        return ledger_cli.export(settings, args, out)


def cmd_ops(args: argparse.Namespace) -> int:
    from app import ops_cli

    return ops_cli.run(_settings(), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookledger", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("check-config", help="validate the configuration").set_defaults(
        func=cmd_check_config
    )
    sub.add_parser("init-db", help="create missing tables").set_defaults(func=cmd_init_db)
    p = sub.add_parser("web", help="run the HTTP edge")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.set_defaults(func=cmd_web)
    p = sub.add_parser("worker", help="run one RQ worker")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument(
        "--fork",
        action="store_true",
        help="run each job in a forked work horse (isolates a crashing job; costs a fork per job)",
    )
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("sweeper", help="re-queue unfinished events periodically")
    p.add_argument("--interval", type=float, default=None, help="seconds between sweeps")
    p.set_defaults(func=cmd_sweeper)
    p = sub.add_parser(
        "metrics", help="serve this host's worker and sweeper metrics (hosts without web)"
    )
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a scrape target listens
    p.add_argument("--port", type=int, default=9100)
    p.set_defaults(func=cmd_metrics)
    p = sub.add_parser("reconcile", help="re-queue unfinished events now")
    p.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="only events last queued at least this long ago (default 0: all unfinished)",
    )
    p.set_defaults(func=cmd_reconcile)
    p = sub.add_parser("sample", help="print a signed sample request")
    p.add_argument("--source", default=None)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.set_defaults(func=cmd_sample)
    from app import ledger_cli, ops_cli

    ledger_cli.add_parser(sub)
    sub.choices["ledger"].set_defaults(func=cmd_ledger)
    ops_cli.add_parsers(sub)
    sub.choices["events"].set_defaults(func=cmd_ops)
    sub.choices["dlq"].set_defaults(func=cmd_ops)
    sub.choices["signals"].set_defaults(func=cmd_ops)
    p = sub.add_parser("up", help="start web, worker and sweeper on embedded defaults")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.set_defaults(func=cmd_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from app.logging import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging()  # logs go to stderr, so stdout stays clean for --json and exports
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        return int(args.func(args))
    except (OperationalError, InterfaceError) as exc:
        print(
            f"hookledger: the database is unreachable: {exc.orig or exc}".splitlines()[0],
            file=sys.stderr,
        )
        return 1
    except RedisConnectionError as exc:
        print(f"hookledger: Redis is unreachable: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
