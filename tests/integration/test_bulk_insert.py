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
from app.store.models import InboundEvent, create_all, table_of


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
    }
    row.update(changes)
    return row


def test_rows_read_back_through_the_orm_as_written(database_url: str) -> None:
    engine = make_engine(database_url)
    create_all(engine)
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
    create_all(engine)
    with Session(engine) as session, session.begin():
        event_store.insert_many(session, [_row("evt_a", "k1")])
    with Session(engine) as session, session.begin():
        again = event_store.insert_many(session, [_row("evt_a", "k1"), _row("evt_b", "k2")])
    assert again[("htx-main", "k1")] == event_store.Receipt("evt_a", created=True)
    assert again[("htx-main", "k2")] == event_store.Receipt("evt_b", created=True)
    with Session(engine) as session, session.begin():
        other = event_store.insert_many(session, [_row("evt_c", "k1")])
    assert other[("htx-main", "k1")] == event_store.Receipt("evt_a", created=False)
    engine.dispose()


def test_an_over_long_value_is_refused_not_cut(pg_url: str) -> None:
    """PostgreSQL only (SQLite does not enforce VARCHAR lengths): the unnest arrays are cast to
    bare types, so the column's own length refuses the value instead of a cast cutting it."""
    engine = make_engine(pg_url)
    create_all(engine)
    with (
        pytest.raises(DBAPIError, match="too long"),
        Session(engine) as session,
        session.begin(),
    ):
        event_store.insert_many(session, [_row("evt_long", "k-long", source_kind="x" * 17)])
    engine.dispose()


def test_driver_errors_arrive_as_sqlalchemy_errors(database_url: str) -> None:
    engine = make_engine(database_url)
    create_all(engine)
    table = table_of(InboundEvent)
    bulk = BulkInsert.of(engine.dialect, table, tuple(column.name for column in table.columns))
    with Session(engine) as session, session.begin():
        bulk.execute(session, [_row("evt_x", "k1")])
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        bulk.execute(session, [_row("evt_x", "k9")])  # the same primary key, no ON CONFLICT
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
