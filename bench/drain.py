"""Drain benchmark: a backlog of mixed-source events applied to the ledger by the Procfile's
workers (``hookledger worker``), events per second.

    python bench/drain.py [--events 50000] [--workers 2] [--db postgresql]

The backlog is written straight into ``inbound_events`` (as receipts would have stored it) and
one RQ job per event is queued in one Redis pipeline; then ``--workers`` worker processes run
in burst mode until the queue is empty. Mix: 60% HTX fills (three partial callbacks per order),
20% PingPong settlements, 20% TRON deposits. Today's design, one RQ job and one ORM
transaction per event, is the issue's baseline; a batched design is measured against it.
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

from app.domain.sources import JSON, parse_event
from app.settings import load_settings
from app.store.db import make_engine
from app.store.events import new_event_id
from app.store.models import InboundEvent, create_all, table_of
from app.store.queue import EventQueue
from bench.common import PYTHON, REDIS_URL, environment, flush_redis, fresh_database, start

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


def seed(url: str, env: dict[str, str], count: int) -> list[str]:
    engine = make_engine(url)
    create_all(engine)
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
    with redis.pipeline() as pipe:
        for row in rows:
            events.queue.enqueue_call(
                "workers.jobs.process_event",
                args=(row["id"],),
                job_id=f"hl-{row['id']}",
                result_ttl=0,
                pipeline=pipe,
            )
        pipe.execute()
    redis.close()
    return [r["id"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--db", default="postgresql", choices=("postgresql", "sqlite"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = fresh_database(args.db, workdir)
        flush_redis()
        env = environment(url, workdir)
        seed(url, env, args.events)
        engine = make_engine(url)
        started = time.monotonic()
        procs = [
            start([PYTHON, "-m", "app.cli", "worker", "--burst"], env) for _ in range(args.workers)
        ]
        for proc in procs:
            proc.wait()
        elapsed = time.monotonic() - started
        with Session(engine) as session:
            done = session.execute(
                select(func.count())
                .select_from(InboundEvent)
                .where(col(InboundEvent.status).in_(["processed", "unhandled"]))
            ).scalar_one()
        engine.dispose()
    print(
        f"\n{args.events} events, {args.workers} worker process(es), {args.db}, one RQ job per event"
    )
    print("| design | events applied | seconds | events/s |")
    print("| --- | --- | --- | --- |")
    print(
        f"| one job + one transaction per event (baseline) | {done} | {elapsed:.1f} | {done / elapsed:.0f} |"
    )
    if done != args.events:
        raise SystemExit(f"only {done} of {args.events} events were applied")


if __name__ == "__main__":
    os.environ.setdefault("HOOKLEDGER_LOG_LEVEL", "WARNING")
    main()
