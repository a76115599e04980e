"""The ``hookledger`` command.

    hookledger up            start web, worker and sweeper on embedded defaults
    hookledger web           the HTTP edge (uvicorn)
    hookledger worker        one RQ worker on the events queue
    hookledger sweeper       the periodic sweep that re-queues unfinished events
    hookledger metrics       serve this host's process metrics (for hosts without web)
    hookledger reconcile     one sweep now, reporting what it re-queued
    hookledger check-config  validate the configuration and exit
    hookledger db upgrade|current|check|history   the database schema's revision
    hookledger init-db       the same as ``db upgrade``
    hookledger sample        print a signed sample request for a source
    hookledger ledger export --from DATE --to DATE [--account A] [--format csv|json]
    hookledger ledger verify check every ledger invariant; exit 1 on any breach
    hookledger events list|show|prune   the event log
    hookledger dlq list|replay|discard  dead letters (events and sig_N signals)
    hookledger signals list|show|pause|resume   follow-up signals and the kill switch
    hookledger gaps          what should have happened and has not, per source
    hookledger pull          ask counterparts' APIs about gaps now

Exit codes: 0 success, 1 the work failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from redis import Redis

    from app.runtime import Runtime

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
    from app.cli import db

    return db.run(_settings(), argparse.Namespace(db_command="upgrade", to="head"))


def _install_runtime(settings: Settings) -> Runtime:
    """Build this process's runtime and make it the one jobs use (worker, sweeper)."""
    from app.runtime import build_runtime, set_runtime

    runtime = build_runtime(settings)
    set_runtime(runtime)
    return runtime


def cmd_web(args: argparse.Namespace) -> int:
    _share_metrics()
    import uvicorn

    settings = _settings()  # fail fast, with the key named, before uvicorn imports the app
    _refuse_another_schema(settings)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,  # X-Forwarded-For is judged by server.trusted_proxies, not uvicorn
        access_log=False,
        log_config=None,
        # On SIGTERM, requests under way get 5 s to finish before they are cancelled (a
        # receipt cancelled unanswered is retried by its sender; what it stored stands), so a
        # client stalling its body cannot hold the stop for all of server.body_timeout_s.
        timeout_graceful_shutdown=5,
    )
    return 0


def _refuse_another_schema(settings: Settings) -> None:
    """Raise ``SchemaMismatch`` (exit 2) when the database answers and is not at the code's
    revision. An unreachable database is not refused: the web edge starts, reports it on
    /readyz and answers 503 until it is back."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.store.db import make_engine
    from app.store.schema import require_current

    engine = make_engine(settings.database_url)
    try:
        require_current(engine)
    except SQLAlchemyError:
        pass
    finally:
        engine.dispose()


def cmd_worker(args: argparse.Namespace) -> int:
    _share_metrics()
    import structlog
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from rq.serializers import JSONSerializer

    from app.logconfig import configure_logging
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
            # Redis and work on as a new worker, instead of leaving it to a supervisor; but a
            # worker told to stop stops (its last words to Redis were what failed).
            if args.burst:
                raise
            if worker.stop_requested:
                log.warning("worker.stopped_without_redis", error=str(exc))
                return 0
            log.warning("worker.redis_lost", error=str(exc))
            if not _wait_for_redis(runtime.redis):
                return 0


def _wait_for_redis(redis: Redis, *, max_delay_s: float = 5.0) -> bool:
    """Wait until ``redis`` answers a PING, backing off up to ``max_delay_s``. Returns True
    then, or False once a SIGTERM or SIGINT asks the worker to stop (after the PING under way,
    if any: a few seconds at most with redis-py's retries against a refused connection)."""
    import structlog
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from workers.runtime import stop_on_signals

    log = structlog.get_logger("hookledger.worker")
    delay = 0.25
    with stop_on_signals() as stop:
        while not stop.wait(delay):
            try:
                redis.ping()
            except (RedisConnectionError, RedisTimeoutError):
                delay = min(delay * 2, max_delay_s)
                continue
            if stop.is_set():
                break
            log.info("worker.redis_back")
            return True
    log.info("worker.stopped_without_redis")
    return False


def cmd_sweeper(args: argparse.Namespace) -> int:
    _share_metrics()
    from app.gctune import WORKER_GEN0_THRESHOLD, settle_heap
    from app.logconfig import configure_logging
    from workers.runtime import stop_on_signals
    from workers.sweeper import run_forever

    configure_logging()
    runtime = _install_runtime(_settings())
    settle_heap(WORKER_GEN0_THRESHOLD)
    # SIGTERM or SIGINT: the sweep under way finishes, then the sweeper exits with status 0.
    with stop_on_signals() as stop:
        run_forever(runtime, interval_s=args.interval, stop=stop)
    runtime.close()
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    """Serve this host's process metrics (a worker host has no web process to do it) until
    SIGTERM or Ctrl-C, then exit 0."""
    _share_metrics()
    from prometheus_client import start_http_server

    from app.metrics import host_registry
    from workers.runtime import stop_on_signals

    server, _thread = start_http_server(args.port, addr=args.host, registry=host_registry())
    print(f"hookledger metrics on http://{args.host}:{args.port}/metrics", file=sys.stderr)
    with stop_on_signals() as stop:
        stop.wait()
    server.shutdown()
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from app.runtime import build_runtime
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
            known = ", ".join(sorted(settings.sources)) or "none are configured"
            print(f"hookledger: no source named {name!r}; known sources: {known}", file=sys.stderr)
            return 2
        print(f"# {name} ({source.kind}, auth {source.auth})")
        print(sample_curl(name, source, args.url))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from app import firstrun, supervisor
    from app.redis_embedded import answers, resolve

    settings = _settings()
    problem = supervisor.why_port_is_taken(args.host, args.port)
    if problem:
        print(
            f"hookledger up: cannot listen on {args.host}:{args.port}: {problem} "
            "(another process has it; choose another with --port)",
            file=sys.stderr,
        )
        return 1
    VAR_DIR.mkdir(exist_ok=True)
    _share_metrics(wipe=True)  # every process writing there is started here
    credentials = firstrun.ensure_credentials(settings, VAR_DIR)
    redis_url, redis_proc = resolve(settings.redis_url, VAR_DIR)
    boss: supervisor.Supervisor | None = None
    try:
        if not answers(redis_url, timeout_s=2):
            supervisor.fail(f"Redis does not answer at {_redact_url(redis_url)}")
        instance = supervisor.new_instance_id()
        env = supervisor.default_env(
            {
                "HOOKLEDGER_REDIS_URL": redis_url,
                "HOOKLEDGER_INSTANCE_ID": instance,
                **firstrun.child_environment(credentials),
            }
        )
        if sys.stderr.isatty():  # children write to a pipe; their lines reach a person
            env.setdefault("HOOKLEDGER_LOG_FORMAT", "console")
        supervisor.run_db_upgrade(env)
        argv = supervisor.hookledger_argv
        web = ["web", "--host", args.host, "--port", str(args.port)]
        children = [
            supervisor.Child("web", argv(*web)),
            *(supervisor.Child(f"worker-{n}", argv("worker")) for n in range(1, args.workers + 1)),
            supervisor.Child("sweeper", argv("sweeper")),
        ]
        boss = supervisor.Supervisor(children, env, sys.stderr)
        stopping = supervisor.install_stop_handlers()
        for child in children:
            boss.start(child)
        host = f"[{args.host}]" if ":" in args.host else args.host
        base = f"http://{host}:{args.port}"
        supervisor.wait_until_started(boss, lambda: supervisor.own_web_answers(base, instance))
        print(
            firstrun.welcome(
                settings,
                credentials,
                base_url=base,
                redis_url=_redact_url(redis_url),
                private_redis=redis_proc is not None,
                workers=args.workers,
                database=_redact_url(settings.database_url),
            ),
            flush=True,
        )
        code = supervisor.supervise(boss, stopping)
    except supervisor.StartFailed as exc:
        print(f"hookledger up: {exc}", file=sys.stderr)
        code = 1
    finally:
        if boss is not None:
            boss.stop_all()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=15)
    return code


def cmd_ledger(args: argparse.Namespace) -> int:
    from app.cli import ledger as ledger_cli

    settings = _settings()
    if args.ledger_func == "verify":
        return ledger_cli.run_verify(settings, sys.stdout)
    if args.output == "-":
        return ledger_cli.export(settings, args, sys.stdout)
    with open(args.output, "w", encoding="utf-8", newline="") as out:
        return ledger_cli.export(settings, args, out)


def cmd_ops(args: argparse.Namespace) -> int:
    from app.cli import ops as ops_cli

    return ops_cli.run(_settings(), args)


def cmd_gaps(args: argparse.Namespace) -> int:
    from app.cli import gaps as gaps_cli

    return gaps_cli.run_gaps(_settings(), args)


def cmd_pull(args: argparse.Namespace) -> int:
    from app.cli import gaps as gaps_cli

    return gaps_cli.run_pull(_settings(), args)


def _listen_options(parser: argparse.ArgumentParser) -> None:
    """``--host`` and ``--port`` of the commands that serve HTTP."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (default 127.0.0.1)",
    )
    parser.add_argument(
        "--port", type=int, default=8000, metavar="PORT", help="port to listen on (default 8000)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookledger",
        description="Receive exchange callbacks, keep them in a double-entry ledger, and "
        "operate both: the HTTP edge, workers, the event log, dead letters and ledger exports.",
        epilog="Exit codes: 0 success, 1 the work failed, 2 bad configuration or usage. "
        "'hookledger COMMAND --help' describes each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "check-config",
        help="validate the configuration and exit",
        description="Load the configuration ($HOOKLEDGER_CONFIG, else ./hookledger.toml, else "
        "the demo config) and the environment, and say what is wrong or what was found.",
    ).set_defaults(func=cmd_check_config)
    from app.cli import db

    db.add_parser(sub, _settings)
    sub.add_parser(
        "init-db",
        help="the same as 'db upgrade'",
        description="Bring $HOOKLEDGER_DATABASE_URL to the code's schema ('db upgrade').",
    ).set_defaults(func=cmd_init_db)
    p = sub.add_parser("web", help="run the HTTP edge", description="Serve the HTTP edge.")
    _listen_options(p)
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="uvicorn worker processes (default 1)"
    )
    p.set_defaults(func=cmd_web)
    p = sub.add_parser(
        "worker", help="run one RQ worker", description="Run one worker on the events queue."
    )
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument(
        "--fork",
        action="store_true",
        help="run each job in a forked work horse (isolates a crashing job; costs a fork per job)",
    )
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser(
        "sweeper",
        help="re-queue unfinished events periodically",
        description="Re-queue unfinished events periodically and run scheduled retries.",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between sweeps (default: processing.sweep_interval_s of the config)",
    )
    p.set_defaults(func=cmd_sweeper)
    p = sub.add_parser(
        "metrics",
        help="serve this host's worker and sweeper metrics (hosts without web)",
        description="Serve this host's process metrics in Prometheus text format, for hosts "
        "that run workers but no web process.",
    )
    p.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104 - a scrape target listens
        metavar="ADDRESS",
        help="address to listen on (default 0.0.0.0)",
    )
    p.add_argument(
        "--port", type=int, default=9100, metavar="PORT", help="port to listen on (default 9100)"
    )
    p.set_defaults(func=cmd_metrics)
    p = sub.add_parser(
        "reconcile",
        help="re-queue unfinished events now",
        description="One sweep now: re-queue stored events that never finished, and say which.",
    )
    p.add_argument(
        "--older-than",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="only events last queued at least this long ago (default 0: all unfinished)",
    )
    p.set_defaults(func=cmd_reconcile)
    p = sub.add_parser(
        "sample",
        help="print a signed sample request for a source",
        description="Print a signed sample curl command per configured source.",
    )
    p.add_argument(
        "--source", default=None, metavar="SOURCE", help="only this source (default: every one)"
    )
    p.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        metavar="URL",
        help="where hookledger listens (default http://127.0.0.1:8000)",
    )
    p.set_defaults(func=cmd_sample)
    from app.cli import ledger as ledger_cli
    from app.cli import ops as ops_cli

    ledger_cli.add_parser(sub)
    sub.choices["ledger"].set_defaults(func=cmd_ledger)
    ops_cli.add_parsers(sub)
    sub.choices["events"].set_defaults(func=cmd_ops)
    sub.choices["dlq"].set_defaults(func=cmd_ops)
    sub.choices["signals"].set_defaults(func=cmd_ops)
    from app.cli import gaps as gaps_cli

    gaps_cli.add_parsers(sub)
    sub.choices["gaps"].set_defaults(func=cmd_gaps)
    sub.choices["pull"].set_defaults(func=cmd_pull)
    p = sub.add_parser(
        "up",
        help="start web, worker and sweeper on embedded defaults",
        description="Start the web process, workers and the sweeper on embedded defaults "
        "(SQLite under ./var, a local or private Redis), and print how to use them.",
    )
    _listen_options(p)
    p.add_argument(
        "--workers", type=int, default=2, metavar="N", help="worker processes (default 2)"
    )
    p.set_defaults(func=cmd_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``hookledger`` command; return its exit code. Output cut short by a closed
    pipe (``hookledger events list | head -1``) ends the command quietly, with exit code 1."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        # Python's documented recipe: whatever is still buffered for stdout goes nowhere, so
        # the interpreter's final flush neither fails nor prints "Exception ignored".
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _run(argv: Sequence[str] | None) -> int:
    from app.logconfig import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging()  # logs go to stderr, so stdout stays clean for --json and exports
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import InterfaceError, OperationalError

    from app.store.schema import SchemaMismatch

    try:
        return int(args.func(args))
    except SchemaMismatch as exc:
        print(f"hookledger: {exc}", file=sys.stderr)
        return 2
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
