"""PostgreSQL receipts: one autocommit statement per micro-batch from a pool that does not
ping, so a connection the server dropped must be replaced by the store itself."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support import event, htx_update, post_htx

# PostgreSQL only: SQLite has no server to drop connections, and no receipt pool.
pytestmark = pytest.mark.postgresql_only


def _drop_every_other_connection(engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def test_a_receipt_after_the_server_dropped_its_connections_is_accepted(client, runtime):
    """As after a PostgreSQL restart: the batch goes again on a new connection instead of
    answering 503."""
    assert post_htx(client, htx_update(51, "filled", "1", "1", "0")).status_code == 200
    assert _drop_every_other_connection(runtime.engine) >= 1

    second = post_htx(client, htx_update(52, "filled", "1", "1", "0"))

    assert second.status_code == 200, second.text
    assert second.json()["status"] == "accepted"
    assert event(runtime.engine, second.json()["event_id"]).status == "received"


def test_a_redelivery_after_a_dropped_connection_is_still_a_duplicate(
    client, runtime, redis_client
):
    """SQL decides (Redis forgot): the conflicting insert and the lookup of the stored id run
    on the new connection."""
    first = post_htx(client, htx_update(53, "filled", "1", "1", "0")).json()["event_id"]
    redis_client.flushdb()
    _drop_every_other_connection(runtime.engine)

    again = post_htx(client, htx_update(53, "filled", "1", "1", "0"))

    assert again.json() == {"status": "duplicate", "event_id": first}
