"""Conflicts: a callback with a stored event's idempotency key but another body is answered
``duplicate`` as ever and recorded on the first event, one row per distinct body, with the
fields that differ; counted in ``hookledger_conflicts_total``; shown by ``events show`` and
``GET /admin/events/{id}``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlmodel import Session, col

from app.kinds.htx.tables import OrderEvent
from app.store.models import EventConflict
from tests.support import (
    ADMIN_TOKEN,
    count,
    hookledger,
    htx_headers,
    htx_update,
    post_htx,
    run_jobs,
)


def _fill(order: int, cash: str = "1260", **extra: Any) -> dict[str, Any]:
    """Every variant has the same key (order-id, state, filled-amount); ``cash`` varies."""
    return htx_update(order, "filled", "0.03", cash, "0.00006", **extra)


def _conflicts(engine: Any, event_id: str, *, expect: int, timeout_s: float = 5) -> list[Any]:
    """The conflicts of ``event_id`` once there are ``expect`` sends recorded (they are
    written after the answers go out)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with Session(engine) as session:
            rows = list(
                session.execute(
                    select(EventConflict)
                    .where(col(EventConflict.event_id) == event_id)
                    .order_by(col(EventConflict.id))
                ).scalars()
            )
            session.expunge_all()
        if sum(r.count for r in rows) >= expect or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def _counted(source: str) -> float:
    return REGISTRY.get_sample_value("hookledger_conflicts_total", {"source": source}) or 0.0


def test_a_conflicting_body_is_answered_duplicate_and_recorded_with_a_diff(
    admin_client, runtime, env
):
    before = _counted("htx-main")
    first = post_htx(admin_client, _fill(601)).json()
    other = _fill(601, cash="1261", **{"err-msg": "late"})

    answers = [post_htx(admin_client, other).json() for _ in range(2)]
    resent = post_htx(admin_client, _fill(601)).json()  # the same body: no conflict

    assert answers == [{"status": "duplicate", "event_id": first["event_id"]}] * 2
    assert resent == {"status": "duplicate", "event_id": first["event_id"]}
    [conflict] = _conflicts(runtime.engine, first["event_id"], expect=2)
    assert conflict.count == 2
    assert conflict.source == "htx-main"
    assert conflict.first_at <= conflict.last_at
    assert json.loads(conflict.headers)["x-signature"] == "[redacted]"
    assert json.loads(conflict.diff) == {
        "fields": [
            {"field": "err-msg", "old": None, "new": '"late"'},
            {"field": "filled-cash-amount", "old": '"1260"', "new": '"1261"'},
        ]
    }
    assert _counted("htx-main") == before + 2
    run_jobs(runtime)
    assert count(runtime.engine, OrderEvent) == 1  # the conflicting bodies changed nothing

    shown = admin_client.get(
        f"/admin/events/{first['event_id']}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()
    [listed] = shown["conflicts"]
    assert listed["count"] == 2
    assert listed["body_sha256"] == conflict.body_sha256
    assert listed["diff"]["fields"][1]["field"] == "filled-cash-amount"
    text = hookledger(env, "events", "show", first["event_id"])
    assert "conflicts:" in text.stdout
    assert 'filled-cash-amount: "1260" -> "1261"' in text.stdout
    as_json = json.loads(hookledger(env, "events", "show", first["event_id"], "--json").stdout)
    assert as_json["conflicts"] == shown["conflicts"]


def test_a_conflict_is_found_when_redis_forgot_the_key(client, runtime, redis_client):
    first = post_htx(client, _fill(602)).json()
    redis_client.flushdb()  # the SQL unique key finds the duplicate, with the stored hash

    answer = post_htx(client, _fill(602, cash="1262")).json()

    assert answer == {"status": "duplicate", "event_id": first["event_id"]}
    [conflict] = _conflicts(runtime.engine, first["event_id"], expect=1)
    assert json.loads(conflict.diff)["fields"] == [
        {"field": "filled-cash-amount", "old": '"1260"', "new": '"1262"'}
    ]


def test_bodies_that_differ_only_in_their_bytes_are_a_conflict_with_a_note(client, runtime):
    first = post_htx(client, _fill(603)).json()
    spaced = orjson.dumps(_fill(603), option=orjson.OPT_INDENT_2)

    answer = client.post("/hooks/htx-main", content=spaced, headers=htx_headers(spaced))

    assert answer.json()["status"] == "duplicate"
    [conflict] = _conflicts(runtime.engine, first["event_id"], expect=1)
    diff = json.loads(conflict.diff)
    assert diff["fields"] == []
    assert "only in their bytes" in diff["note"]


_order = iter(range(10_000, 100_000))


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sends=st.lists(st.sampled_from(["1260", "1261", "1262"]), min_size=1, max_size=6))
def test_any_order_of_sends_keeps_one_row_per_distinct_other_body(client, runtime, sends):
    order = next(_order)
    answers = [post_htx(client, _fill(order, cash=cash)).json() for cash in sends]

    first_id = answers[0]["event_id"]
    assert answers[0]["status"] == "accepted"
    assert all(a == {"status": "duplicate", "event_id": first_id} for a in answers[1:])
    others = [cash for cash in sends if cash != sends[0]]
    rows = _conflicts(runtime.engine, first_id, expect=len(others))
    by_cash = {json.loads(r.diff)["fields"][0]["new"]: r.count for r in rows}
    assert by_cash == {f'"{cash}"': others.count(cash) for cash in set(others)}
