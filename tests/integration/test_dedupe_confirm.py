"""A key Redis remembers is answered ``duplicate`` only once SQL confirms it holds that key.

The database can lose a commit Redis remembers (a restore of an older backup, a failover to a
replica that lagged). Here that loss is made by deleting a receipt's row before any worker ran;
``tests/integration/test_restore.py`` makes it with a real backup and restore.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.engine.url import make_url
from sqlmodel import col
from starlette.testclient import TestClient

from app.kinds.htx.tables import OrderEvent
from app.main import create_app
from app.store import events as event_store
from app.store.dedupe import Dedupe
from app.store.models import InboundEvent, LedgerPosting
from tests.integration.test_ledger_worked_examples import assert_ledger_verifies
from tests.support import count, event, htx_update, post_htx, run_jobs
from tests.tcpproxy import TcpProxy


def _fill(order: int) -> dict[str, object]:
    return htx_update(order, "filled", "0.03", "1260", "0.00006")


def _lose(engine: Engine, event_id: str) -> None:
    """The database loses a receipt (no worker has applied it yet); Redis still remembers it."""
    with engine.begin() as conn:
        conn.execute(delete(InboundEvent).where(col(InboundEvent.id) == event_id))


def test_a_key_redis_remembers_but_the_database_lost_is_stored_as_new_and_applied_once(
    client, runtime
):
    lost = post_htx(client, _fill(42)).json()["event_id"]
    _lose(runtime.engine, lost)

    again = post_htx(client, _fill(42))

    assert again.status_code == 200
    assert again.json()["status"] == "accepted"
    stored = again.json()["event_id"]
    assert stored != lost
    assert count(runtime.engine, InboundEvent) == 1
    # Redis remembers the new receipt: the next redelivery is a duplicate of it.
    assert post_htx(client, _fill(42)).json() == {"status": "duplicate", "event_id": stored}

    run_jobs(runtime)  # the lost receipt's job finds no event; the new one's applies it

    assert event(runtime.engine, stored).status == "processed"
    assert count(runtime.engine, OrderEvent) == 1
    assert count(runtime.engine, LedgerPosting, col(LedgerPosting.event_id) == stored) > 0
    assert count(runtime.engine, LedgerPosting, col(LedgerPosting.event_id) == lost) == 0
    assert_ledger_verifies(runtime)


def test_only_a_batch_with_keys_redis_knew_looks_them_up(client, runtime, monkeypatch):
    """A new receipt costs an insert and no lookup; a redelivery one lookup and no insert."""
    calls: list[str] = []
    for name in ("stored", "insert_many"):
        original = getattr(event_store, name)

        def counted(*args, _name=name, _original=original):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(event_store, name, counted)

    first = post_htx(client, _fill(43)).json()
    new_receipt = list(calls)
    calls.clear()
    again = post_htx(client, _fill(43)).json()

    assert first["status"] == "accepted"
    assert new_receipt == ["insert_many"]
    assert again == {"status": "duplicate", "event_id": first["event_id"]}
    assert calls == ["stored"]


def test_a_batch_of_new_lost_and_duplicate_keys_answers_each_exactly(client, runtime):
    held = {n: post_htx(client, _fill(n)).json()["event_id"] for n in range(100, 110)}
    lost = {n: post_htx(client, _fill(n)).json()["event_id"] for n in range(200, 210)}
    for event_id in lost.values():
        _lose(runtime.engine, event_id)
    new = list(range(300, 310))
    # Every lost and every new key twice: two requests for one key in flight together.
    orders = [*held, *lost, *lost, *new, *new]
    with ThreadPoolExecutor(max_workers=16) as pool:  # requests share flushes, one loop
        answers = list(pool.map(lambda n: (n, post_htx(client, _fill(n))), orders))

    by_order: dict[int, list[dict[str, str]]] = {}
    for n, response in answers:
        assert response.status_code == 200, response.text
        by_order.setdefault(n, []).append(response.json())
    for n, event_id in held.items():
        assert by_order[n] == [{"status": "duplicate", "event_id": event_id}]
    for n in [*lost, *new]:
        replies = by_order[n]
        assert sorted(r["status"] for r in replies) == ["accepted", "duplicate"]
        assert len({r["event_id"] for r in replies}) == 1
        assert replies[0]["event_id"] != lost.get(n)
    assert count(runtime.engine, InboundEvent) == 30

    run_jobs(runtime)

    assert count(runtime.engine, InboundEvent, col(InboundEvent.status) == "processed") == 30
    assert count(runtime.engine, OrderEvent) == 30
    assert_ledger_verifies(runtime)


def test_two_web_processes_receiving_a_lost_key_at_once_store_it_once(settings, runtime):
    app_a, app_b = create_app(settings), create_app(settings)
    with (
        TestClient(app_a, client=("127.0.0.1", 1)) as web_a,
        TestClient(app_b, client=("127.0.0.1", 2)) as web_b,
    ):
        orders = range(400, 420)
        for n in orders:
            _lose(runtime.engine, post_htx(web_a, _fill(n)).json()["event_id"])

        def both(n: int) -> list[dict[str, str]]:
            start = threading.Barrier(2)

            def send(web: TestClient) -> dict[str, str]:
                start.wait()
                response = post_htx(web, _fill(n))
                assert response.status_code == 200, response.text
                return dict(response.json())

            with ThreadPoolExecutor(max_workers=2) as pool:
                return list(pool.map(send, (web_a, web_b)))

        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(both, orders))

    for replies in answers:
        assert sorted(r["status"] for r in replies) == ["accepted", "duplicate"]
        assert len({r["event_id"] for r in replies}) == 1
    assert count(runtime.engine, InboundEvent) == len(orders)
    run_jobs(runtime)
    assert count(runtime.engine, OrderEvent) == len(orders)
    assert_ledger_verifies(runtime)


@pytest.mark.parametrize("moment", ["after the claim", "after the lookup"])
def test_a_lost_key_another_web_process_stores_first_is_a_duplicate_of_its_receipt(
    settings, runtime, redis_client, monkeypatch, moment
):
    """Web A finds a key Redis remembers; before A stores it, the key expires in Redis and web
    B claims, stores and answers it. The insert's unique key decides: A answers ``duplicate``
    with B's event id, and one receipt is stored."""
    payload = _fill(500)
    web_b_answers: list[dict[str, str]] = []
    with (
        TestClient(create_app(settings), client=("127.0.0.1", 1)) as web_a,
        TestClient(create_app(settings), client=("127.0.0.1", 2)) as web_b,
    ):
        lost = post_htx(web_a, payload).json()["event_id"]
        _lose(runtime.engine, lost)
        armed = [True]

        def web_b_takes_it() -> None:
            if not armed:  # once: web B's own receipt comes through here too
                return
            armed.clear()
            redis_client.delete(*redis_client.keys("hl:dd:*"))  # the key's TTL ends
            web_b_answers.append(post_htx(web_b, payload).json())

        if moment == "after the claim":
            claim_many = Dedupe.claim_many

            async def claim_then_b(self, items):
                claims = await claim_many(self, items)
                web_b_takes_it()  # web B runs its whole receipt now (its own loop)
                return claims

            monkeypatch.setattr(Dedupe, "claim_many", claim_then_b)
        else:
            stored = event_store.stored

            def lookup_then_b(session, keys):
                found = stored(session, keys)
                web_b_takes_it()
                return found

            monkeypatch.setattr(event_store, "stored", lookup_then_b)

        answer_a = post_htx(web_a, payload).json()

    [answer_b] = web_b_answers
    assert answer_b["status"] == "accepted"
    assert answer_b["event_id"] != lost
    assert answer_a == {"status": "duplicate", "event_id": answer_b["event_id"]}
    assert count(runtime.engine, InboundEvent) == 1
    remembered = {redis_client.get(key) for key in redis_client.keys("hl:dd:*")}
    assert remembered == {answer_b["event_id"].encode()}


@pytest.mark.postgresql_only
def test_a_redelivery_the_database_cannot_confirm_is_503_not_duplicate(settings, runtime):
    """A duplicate answer says the event is stored; with the database unreachable that cannot
    be checked, so the sender is told to retry, and the retry is a duplicate."""
    url = make_url(settings.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    through_proxy = settings.model_copy(
        update={
            "database_url": url.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False
            )
        }
    )
    try:
        with TestClient(create_app(through_proxy), client=("127.0.0.1", 1)) as web:
            first = post_htx(web, _fill(44)).json()
            proxy.cut()
            cut_off = post_htx(web, _fill(44))
            proxy.start()
            retried = post_htx(web, _fill(44))
    finally:
        proxy.cut()

    assert first["status"] == "accepted"
    assert cut_off.status_code == 503
    assert cut_off.json()["error"] == "unavailable"
    assert retried.json() == {"status": "duplicate", "event_id": first["event_id"]}
    assert count(runtime.engine, InboundEvent) == 1
