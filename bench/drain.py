"""Drain benchmark: a backlog of mixed-source events applied to the ledger by the Procfile's
workers (``hookledger worker``), events per second, against the baseline design in the same run.

    python -m bench.drain [--events 50000] [--baseline-events 3000] [--workers 2] [--db postgresql]

The backlog is written straight into ``inbound_events`` (as receipts would have stored it),
its jobs are queued in one Redis pipeline, then ``--workers`` worker processes run in burst
mode until the queue is empty. Mix: 60% HTX fills (three partial callbacks per order), 20%
PingPong settlements, 20% TRON deposits. Two designs, each on a fresh database:

- baseline: one RQ job (``process_event``) and one transaction per event;
- batched: what receipts and the sweep queue, one ``process_events`` job per
  ``processing.batch_size`` events, one transaction with a savepoint per event.

The baseline runs on a smaller backlog by default (it is slow; a rate is a rate). ``ANALYZE``
runs during both as autovacuum's default rule would (autovacuum is off on this machine): without
it, plans cached while the tables were empty scan them whole for every event.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from redis import Redis
from sqlalchemy import func, select
from sqlmodel import Session, col

from app.domain.payloads import JSON
from app.kinds import parse_event
from app.settings import load_settings
from app.store.db import make_engine
from app.store.events import new_event_id
from app.store.models import InboundEvent, table_of
from app.store.queue import PROCESS_EVENT, EventQueue, batch_job_id, job_id
from bench.common import PYTHON, REDIS_URL, environment, flush_redis, fresh_database, start
from bench.e2e import Analyzer

SOURCES = {"htx": "htx-bench", "pingpong": "pp-bench", "trx-energy": "trx-bench"}


def bodies(count: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    n = 0
    while len(out) < count:
        n += 1
        if n % 5 in (1, 2, 3):
            for step, state in ((1, "partial-filled"), (2, "partial-filled"), (3, "filled")):
                out.append(
                    (
                        "htx",
                        orjson.dumps(
                            {
                                "order-id": n,
                                "account-id": 1001,
                                "symbol": "btcusdt",
                                "type": "buy-limit",
                                "filled-amount": f"0.0{step}",
                                "filled-cash-amount": f"{420 * step}.5",
                                "filled-fees": f"0.0000{step}",
                                "state": state,
                            }
                        ),
                    )
                )
        elif n % 5 == 4:
            out.append(
                (
                    "pingpong",
                    orjson.dumps(
                        {
                            "event_type": "positionSettle",
                            "msg_id": f"M{n}",
                            "payload": {
                                "position_id": f"P{n}",
                                "buy_currency": "CNH",
                                "buy_amount": "3645.95",
                                "sell_currency": "MXN",
                                "sell_amount": "8667.49",
                                "price": "2.37729",
                                "value_date": "2024-01-05",
                                "trade_channel": "api",
                                "source_type": "spot",
                            },
                        }
                    ),
                )
            )
        else:
            out.append(
                (
                    "trx-energy",
                    orjson.dumps(
                        {
                            "type": "deposit",
                            "id": n,
                            "address": "T9z6yrJXuiJpfWhis3Ae9nHK7k65yM5AHP",
                            "fromAddress": "TE9eC5EiHx9zD5bWfzyPhtQ94s7QMqv2CQ",
                            "amount": 1_000_000 + n,
                            "txHash": f"{n:064x}",
                            "createdAt": "2025-10-08 16:49:17",
                        }
                    ),
                )
            )
    return out[:count]


def seed(url: str, env: dict[str, str], count: int, *, batched: bool) -> list[str]:
    engine = make_engine(url)
    now = datetime.now(UTC)
    rows = []
    for kind, body in bodies(count):
        parsed = parse_event(kind, body, JSON)
        rows.append(
            {
                "id": new_event_id(),
                "source": SOURCES[kind],
                "source_kind": kind,
                "idempotency_key": parsed.idempotency_key,
                "raw_type": parsed.raw_type,
                "event_type": parsed.event,
                "status": "received",
                "content_type": JSON,
                "body": body,
                "body_sha256": "0" * 64,
                "headers": "{}",
                "client_ip": "127.0.0.1",
                "received_at": now,
                "attempts": 0,
                "retry_base": 0,
            }
        )
    with engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(table_of(InboundEvent).insert(), rows[i : i + 5000])
    engine.dispose()
    settings = load_settings(env)
    redis = Redis.from_url(REDIS_URL)
    events = EventQueue(redis, settings.processing)
    ids = [str(r["id"]) for r in rows]
    size = settings.processing.batch_size
    with redis.pipeline() as pipe:
        if batched:
            for i in range(0, len(ids), size):
                events.enqueue_batch(ids[i : i + size], batch_job_id(ids[i]), pipeline=pipe)
                pipe.execute()
        else:
            for event_id in ids:
                events.queue.enqueue_call(
                    PROCESS_EVENT,
                    args=(event_id,),
                    job_id=job_id(event_id),
                    result_ttl=0,
                    pipeline=pipe,
                )
            pipe.execute()
    redis.close()
    return ids


def drain(db: str, count: int, workers: int, *, batched: bool) -> tuple[int, float]:
    """Seed ``count`` events on a fresh database, drain them; return (applied, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = fresh_database(db, workdir)
        flush_redis()
        env = environment(url, workdir)
        seed(url, env, count, batched=batched)
        engine = make_engine(url)
        analyzer = Analyzer(engine)  # autovacuum's ANALYZE, as in bench.e2e
        started = time.monotonic()
        analyzer.start()
        procs = [start([PYTHON, "-m", "app.cli", "worker", "--burst"], env) for _ in range(workers)]
        for proc in procs:
            proc.wait()
        elapsed = time.monotonic() - started
        analyzer.stopping.set()
        analyzer.join()
        with Session(engine) as session:
            done = session.execute(
                select(func.count())
                .select_from(InboundEvent)
                .where(col(InboundEvent.status).in_(["processed", "unhandled"]))
            ).scalar_one()
        engine.dispose()
    if done != count:
        raise SystemExit(f"only {done} of {count} events were applied")
    return done, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--baseline-events", type=int, default=3_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default="postgresql", choices=("postgresql", "sqlite"))
    args = parser.parse_args()
    base_done, base_s = drain(args.db, args.baseline_events, args.workers, batched=False)
    done, secs = drain(args.db, args.events, args.workers, batched=True)
    base_rate, rate = base_done / base_s, done / secs
    print(f"\n{args.workers} worker process(es) (hookledger worker), {args.db}")
    print("| design | events applied | seconds | events/s | vs baseline |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| one job + one transaction per event (baseline) | {base_done} | {base_s:.1f} "
        f"| {base_rate:.0f} | 1.00x |"
    )
    print(
        f"| batch jobs, one transaction per batch | {done} | {secs:.1f} "
        f"| {rate:.0f} | {rate / base_rate:.2f}x |"
    )


if __name__ == "__main__":
    os.environ.setdefault("HOOKLEDGER_LOG_LEVEL", "WARNING")
    main()
