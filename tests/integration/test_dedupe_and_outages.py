"""Redelivery is a duplicate at any time; outages never give a 2xx without a durable record."""

from __future__ import annotations

from starlette.testclient import TestClient

from app.kinds.htx.tables import OrderEvent
from app.main import create_app
from app.store.models import InboundEvent
from tests.support import (
    count,
    event,
    fixture_bytes,
    htx_update,
    post_htx,
    post_trx,
    run_jobs,
    upgrade_schema,
)
from workers.sweeper import sweep_once

FILLED = htx_update(42, "filled", "0.03", "1260", "0.00006")


def test_redelivery_is_a_duplicate_with_the_first_id(client, runtime):
    first = post_htx(client, FILLED)
    again = post_htx(client, FILLED)
    assert first.json()["status"] == "accepted"
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    assert count(runtime.engine, InboundEvent) == 1


def test_redelivery_after_redis_was_flushed_is_still_a_duplicate(client, runtime, redis_client):
    first = post_htx(client, FILLED).json()["event_id"]
    run_jobs(runtime)
    redis_client.flushdb()

    again = post_htx(client, FILLED)

    assert again.json() == {"status": "duplicate", "event_id": first}
    run_jobs(runtime)
    assert count(runtime.engine, InboundEvent) == 1
    assert count(runtime.engine, OrderEvent) == 1


def test_partial_fills_of_one_order_are_distinct_events(client, runtime):
    ids = {
        post_htx(client, htx_update(7, "partial-filled", filled, "1", "0")).json()["event_id"]
        for filled in ("0.01", "0.02", "0.010")  # 0.010 normalises to 0.01: a duplicate
    }
    assert len(ids) == 2
    assert count(runtime.engine, InboundEvent) == 2


def test_redis_down_still_stores_durably_and_dedupes_in_sql(settings, runtime):
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down), client=("127.0.0.1", 1)) as client:
        first = post_htx(client, FILLED)
        again = post_htx(client, FILLED)
    assert first.status_code == 200
    assert first.json()["status"] == "accepted"
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    event_id = first.json()["event_id"]
    assert event(runtime.engine, event_id).status == "received"

    # Redis is back: the sweep makes the job that could not be queued at receipt.
    result = sweep_once(runtime, stale_after_s=0)
    assert result.requeued == [event_id]
    run_jobs(runtime)
    assert event(runtime.engine, event_id).status == "processed"


def test_database_down_is_503_and_a_later_retry_is_accepted(settings, runtime, redis_client):
    down = settings.model_copy(
        update={"database_url": "postgresql+psycopg://root@127.0.0.1:1/nowhere"}
    )
    with TestClient(create_app(down), client=("127.0.0.1", 1)) as client:
        response = post_trx(client, fixture_bytes("trx_deposit.json"))
        ready = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("error")

    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as client:
        retried = post_trx(client, fixture_bytes("trx_deposit.json"))
        assert client.get("/readyz").status_code == 200
    # The failed attempt left no claim behind that could turn the retry into a "duplicate".
    assert retried.json()["status"] == "accepted"
    assert count(runtime.engine, InboundEvent) == 1


def test_a_new_database_does_not_trust_what_redis_remembers_of_another(settings, runtime, tmp_path):
    first = post_htx_via(settings, FILLED)
    assert first["status"] == "accepted"
    # Same Redis, a brand-new database (say ./var was deleted): nothing there is a duplicate.
    other = upgrade_schema(f"sqlite:///{tmp_path}/other.db")
    fresh = settings.model_copy(update={"database_url": other})
    again = post_htx_via(fresh, FILLED)
    assert again["status"] == "accepted"
    assert again["event_id"] != first["event_id"]
    # And within one database, Redis still answers duplicates.
    assert post_htx_via(fresh, FILLED) == {"status": "duplicate", "event_id": again["event_id"]}


def post_htx_via(settings, payload):
    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as client:
        return post_htx(client, payload).json()
