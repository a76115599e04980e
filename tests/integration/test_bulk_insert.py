"""``app.store.db.BulkInsert`` (the receipt and ledger hot path) against real SQLite and
PostgreSQL: values stored exactly as the ORM stores them, column limits enforced, and the
driver's errors arriving as SQLAlchemy's."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, select

from app.store import events as event_store
from app.store.db import BulkInsert, make_engine
from app.store.models import InboundEvent, table_of


def _row(event_id: str, key: str, **changes: object) -> dict[str, object]:
    body = b'{"order-id": 1}'
    row: dict[str, object] = {
        "id": event_id,
        "source": "htx-main",
        "source_kind": "htx",
        "idempotency_key": key,
        "raw_type": "filled",
        "event_type": "order.filled",
        "status": "received",
        "content_type": "application/json",
        "body": body,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "headers": "{}",
        "client_ip": None,
        "received_at": datetime(2026, 11, 21, 12, 30, 1, 250_000, tzinfo=UTC),
        "enqueued_at": None,
        "queued_job": "job-1",
        "next_attempt_at": None,
        "processed_at": None,
        "attempts": 0,
        "retry_base": 0,
        "last_error": None,
        "body_pruned_at": None,
        "origin": "push",
    }
    row.update(changes)
    return row


def test_rows_read_back_through_the_orm_as_written(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as session, session.begin():
        receipts = event_store.insert_many(
            session, [_row("evt_a", "k1"), _row("evt_b", "k2"), _row("evt_c", "k1")]
        )
    assert receipts[("htx-main", "k1")].event_id == "evt_a"
    assert receipts[("htx-main", "k1")].created
    assert receipts[("htx-main", "k2")].created
    with Session(engine) as session:
        stored = session.exec(select(InboundEvent).order_by(InboundEvent.id)).all()
        assert [e.id for e in stored] == ["evt_a", "evt_b"]
        first = stored[0]
        assert first.body == b'{"order-id": 1}'
        assert first.received_at.replace(tzinfo=UTC) == datetime(
            2026, 11, 21, 12, 30, 1, 250_000, tzinfo=UTC
        )
        assert first.enqueued_at is None and first.attempts == 0
    # A second batch with a stored key: the stored id comes back, not created by this call.
    with Session(engine) as session, session.begin():
        again = event_store.insert_many(session, [_row("evt_d", "k2")])
    assert again[("htx-main", "k2")].event_id == "evt_b"
    assert not again[("htx-main", "k2")].created
    engine.dispose()


def test_the_same_batch_sent_again_still_counts_as_stored_by_this_call(database_url: str) -> None:
    """A receipt batch is sent again when its connection dropped, which can happen after the
    first try committed: the rows then conflict with themselves. They are still this call's
    (the sender hears ``accepted`` and a job carries them); another row's key is not."""
    engine = make_engine(database_url)
    with Session(engine) as session, session.begin():
        event_store.insert_many(session, [_row("evt_a", "k1")])
    with Session(engine) as session, session.begin():
        again = event_store.insert_many(session, [_row("evt_a", "k1"), _row("evt_b", "k2")])
    assert again[("htx-main", "k1")] == event_store.Receipt("evt_a", created=True)
    assert again[("htx-main", "k2")] == event_store.Receipt("evt_b", created=True)
    with Session(engine) as session, session.begin():
        other = event_store.insert_many(session, [_row("evt_c", "k1")])
    assert other[("htx-main", "k1")] == event_store.Receipt(
        "evt_a", created=False, stored_sha256=_row("evt_a", "k1")["body_sha256"]
    )
    engine.dispose()


# PostgreSQL sends one row as VALUES and several as unnest arrays: both forms are checked.
ROWS = pytest.mark.parametrize("others", [0, 2], ids=["one row", "three rows"])


@ROWS
def test_an_over_long_value_is_refused_not_cut(pg_url: str, others: int) -> None:
    """PostgreSQL only (SQLite does not enforce VARCHAR lengths): the unnest arrays are cast to
    bare types, so the column's own length refuses the value instead of a cast cutting it."""
    engine = make_engine(pg_url)
    rows = [_row(f"evt_ok{n}", f"k-ok{n}") for n in range(others)]
    with (
        pytest.raises(DBAPIError, match="too long") as refused,
        Session(engine) as session,
        session.begin(),
    ):
        event_store.insert_many(session, [*rows, _row("evt_long", "k-long", source_kind="x" * 17)])
    assert refused.value.orig is not None  # the driver's error, wrapped
    with Session(engine) as session:
        assert session.get(InboundEvent, "evt_long") is None
        assert session.get(InboundEvent, "evt_ok0") is None
    engine.dispose()


@ROWS
def test_driver_errors_arrive_as_sqlalchemy_errors(database_url: str, others: int) -> None:
    engine = make_engine(database_url)
    table = table_of(InboundEvent)
    bulk = BulkInsert.of(engine.dialect, table, tuple(column.name for column in table.columns))
    with Session(engine) as session, session.begin():
        bulk.execute(session, [_row("evt_x", "k1")])
    rows = [_row(f"evt_{n}", f"k{n + 10}") for n in range(others)]
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        bulk.execute(session, [*rows, _row("evt_x", "k9")])  # a primary key again, no ON CONFLICT
    # The session's connection went back to the pool usable: the next insert is taken.
    with Session(engine) as session, session.begin():
        bulk.execute(session, [_row("evt_y", "k2")])
    with Session(engine) as session:
        ids = session.exec(select(InboundEvent.id).order_by(InboundEvent.id)).all()
    assert ids == ["evt_x", "evt_y"]
    engine.dispose()


def test_after_the_server_dropped_connections_the_receipt_retry_gets_a_new_one(
    pg_url: str,
) -> None:
    """As after a PostgreSQL restart, with two idle connections in the receipts pool (which
    does not ping): the first insert fails on a dead one, and its one retry must get a new
    connection, not the other dead one. So a disconnect invalidates the whole pool, as
    ``exec_driver_sql`` does, not only the connection it happened on."""
    from sqlalchemy import text

    from app.ingest import Ingestor

    engine = make_engine(pg_url, pool_size=4, pre_ping=False)
    with engine.connect() as first, engine.connect() as second:
        pids = [
            conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in (first, second)
        ]
    admin = make_engine(pg_url)
    with admin.connect() as conn:
        for pid in pids:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    ingestor = Ingestor(engine=engine, dedupe=None, queue=None)  # type: ignore[arg-type]
    receipts = ingestor._insert([_row("evt_dropped", "k-dropped")])
    assert receipts[("htx-main", "k-dropped")] == event_store.Receipt("evt_dropped", True)
    engine.dispose()


def test_amounts_must_be_decimal() -> None:
    """The ORM's converters run: ExactDecimal still refuses a float."""
    from app.store.models import LedgerPosting

    engine = make_engine("sqlite://")
    table = table_of(LedgerPosting)
    columns = tuple(column.name for column in table.columns)
    bulk = BulkInsert.of(engine.dialect, table, columns)
    at = bulk.columns.index("amount")
    with pytest.raises(TypeError, match="Decimal"):
        bulk._params(dict.fromkeys(columns) | {"amount": 1.5})
    assert bulk._params(dict.fromkeys(columns) | {"amount": Decimal("1.50")})[at] == "1.5"
    engine.dispose()
