"""Gap query benchmark: open HTX orders among a million, on PostgreSQL.

    python -m bench.gaps [--orders 1000000] [--open-every 1000]

A fresh database (``hookledger_bench``) gets ``--orders`` HTX orders, one in ``--open-every``
still ``partial-filled`` and the rest ``filled``, all last changed two days ago, then ANALYZE.
Prints how long the htx kind's ``gaps()`` takes for 1,000 gaps (cold, then warm) and the
query plan: it must read the partial index ``ix_orders_open``, so its cost follows the open
orders, not all of them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session

from app import kinds
from app.store.db import make_engine
from bench.common import fresh_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--open-every", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(fresh_database("postgresql", Path(tmp)))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orders (source, order_id, account_id, symbol, side, order_type,"
                " state, filled_amount, filled_cash_amount, filled_fees, updated_at,"
                " last_event_id) SELECT 'htx-main', n::text, '1001', 'btcusdt', 'buy',"
                " 'buy-limit', CASE WHEN n % :every = 0 THEN 'partial-filled' ELSE 'filled' END,"
                " '1', '1', '0', now() - interval '2 days' + (n || ' ms')::interval, 'evt'"
                " FROM generate_series(1, :orders) AS n"
            ),
            {"every": args.open_every, "orders": args.orders},
        )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE orders")
    htx = kinds.get("htx")
    took = []
    with Session(engine) as session:
        for _ in range(2):
            started = time.perf_counter()
            found = htx.gaps(
                session, "htx-main", gap_after_s=3600, now=datetime.now(UTC), limit=1000
            )
            took.append((time.perf_counter() - started) * 1000)
    with engine.connect() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN SELECT * FROM orders WHERE source = 'htx-main' AND orders.state NOT IN"
                " ('filled', 'canceled', 'partial-canceled', 'rejected') AND updated_at <= now()"
                " ORDER BY updated_at, id LIMIT 1000"
            )
        ).scalars()
        print("\n".join(plan))
    engine.dispose()
    print(
        f"\n{len(found)} gaps among {args.orders:,} orders "
        f"({args.orders // args.open_every:,} open): {took[0]:.1f} ms cold, {took[1]:.1f} ms warm"
    )


if __name__ == "__main__":
    main()
