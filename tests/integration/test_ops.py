"""Ops: the event log, dead letters and replay, through the CLI and the admin API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlmodel import Session, col

from app.kinds import verify_ledger
from app.store.models import EventAction, InboundEvent, JournalEntry
from tests.support import ADMIN_TOKEN, count, event, hookledger, htx_update, post_htx, run_jobs
from workers.sweeper import sweep_once

ADMIN = ADMIN_TOKEN


@pytest.fixture
def broken_orders(runtime) -> Iterator[None]:
    """Every insert into ``orders`` fails: a poison condition until it is healed."""
    engine = runtime.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER hl_fail BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'orders are broken'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION hl_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'orders are broken'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER hl_fail BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION hl_fail()"
                )
            )
    yield
    heal(runtime)


def heal(runtime) -> None:
    with runtime.engine.begin() as conn:
        drop = "DROP TRIGGER IF EXISTS hl_fail" + (
            "" if runtime.engine.dialect.name == "sqlite" else " ON orders"
        )
        conn.execute(text(drop))


def kill_until_dead(runtime, rounds: int = 4) -> None:
    for _ in range(rounds):
        run_jobs(runtime)
        sweep_once(runtime)


def entries(runtime) -> int:
    return count(runtime.engine, JournalEntry)


def test_poison_message_one_dead_letter_then_one_replay_applies_it_once(
    client, runtime, env, broken_orders
):
    event_id = post_htx(client, htx_update(1, "filled", "1", "100", "0.1")).json()["event_id"]
    kill_until_dead(runtime)

    listed = hookledger(env, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    dead = json.loads(listed.stdout)
    assert [d["event_id"] for d in dead] == [event_id]  # one dead letter, not one per attempt
    assert dead[0]["attempts"] == 3
    assert "orders are broken" in dead[0]["last_error"]

    heal(runtime)
    first = hookledger(env, "dlq", "replay", event_id, "--reason", "orders table fixed")
    assert first.returncode == 0, first.stderr
    assert f"{event_id}  requeued" in first.stdout
    run_jobs(runtime)
    assert event(runtime.engine, event_id).status == "processed"
    assert entries(runtime) == 1

    second = hookledger(env, "dlq", "replay", event_id)
    assert second.returncode == 0
    assert f"{event_id}  already_applied" in second.stdout
    run_jobs(runtime)
    assert entries(runtime) == 1

    shown = hookledger(env, "events", "show", event_id)
    assert shown.returncode == 0
    assert "replay -> requeued by ops-test: orders table fixed" in shown.stdout
    assert "replay -> already_applied by ops-test" in shown.stdout
    assert "#4" in shown.stdout and "processed" in shown.stdout
    with Session(runtime.engine) as session:
        assert verify_ledger(session, runtime.settings.file.ledger.quote_currencies).ok


def test_dry_run_lists_effects_and_changes_nothing(client, runtime, env, broken_orders):
    ids = [
        post_htx(client, htx_update(n, "filled", "2", "84000", "0.002")).json()["event_id"]
        for n in (1, 2)
    ]
    kill_until_dead(runtime)
    heal(runtime)

    preview = hookledger(env, "dlq", "replay", "--all", "--source", "htx-main", "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "would replay 2 of 2" in preview.stdout
    assert "1001 BTC 2 [trade]" in preview.stdout
    assert "1001 USDT -84000 [trade]" in preview.stdout
    assert {event(runtime.engine, i).status for i in ids} == {"dead"}
    assert entries(runtime) == 0

    none = hookledger(env, "dlq", "replay", "--all", "--source", "no-such-source")
    assert none.returncode == 2  # a typo is not an empty selection
    assert "no source named 'no-such-source'; known sources: htx-main" in none.stderr
    everything = hookledger(env, "dlq", "replay", "--all", "--json")
    assert [r["outcome"] for r in json.loads(everything.stdout)] == ["requeued", "requeued"]
    run_jobs(runtime)
    assert {event(runtime.engine, i).status for i in ids} == {"processed"}
    assert entries(runtime) == 2


def test_discard_needs_a_reason_and_is_recorded(client, runtime, env, broken_orders):
    event_id = post_htx(client, htx_update(5, "filled", "1", "1", "0")).json()["event_id"]
    kill_until_dead(runtime)
    assert hookledger(env, "dlq", "discard", event_id).returncode == 2  # --reason is required
    done = hookledger(env, "dlq", "discard", event_id, "--reason", "test order, never real")
    assert done.returncode == 0
    assert event(runtime.engine, event_id).status == "discarded"
    with Session(runtime.engine) as session:
        action = session.execute(
            select(EventAction).where(col(EventAction.event_id) == event_id)
        ).scalar_one()
    assert (action.action, action.actor, action.reason) == (
        "discard",
        "ops-test",
        "test order, never real",
    )


def test_applied_events_cannot_be_discarded_and_unknown_ids_fail(client, runtime, env):
    event_id = post_htx(client, htx_update(6, "filled", "1", "1", "0")).json()["event_id"]
    run_jobs(runtime)
    refused = hookledger(env, "dlq", "discard", event_id, "--reason", "oops")
    assert refused.returncode == 1
    assert "nothing to discard" in refused.stderr
    assert hookledger(env, "events", "show", "evt_nope").returncode == 1
    assert hookledger(env, "dlq", "replay", "evt_nope").returncode == 1


def test_events_list_filters_and_table(client, runtime, env):
    for n in range(3):
        post_htx(client, htx_update(n, "submitted", "0", "0", "0"))
    run_jobs(runtime)
    as_json = json.loads(
        hookledger(env, "events", "list", "--status", "processed", "--json").stdout
    )
    assert len(as_json) == 3
    assert as_json[0]["event_id"] > as_json[-1]["event_id"]  # newest first
    assert (
        json.loads(
            hookledger(env, "events", "list", "--since", "1h", "--source", "pp", "--json").stdout
        )
        == []
    )
    table = hookledger(env, "events", "list").stdout
    assert table.splitlines()[0].startswith("EVENT_ID")
    assert "(3 events)" in table
    bad = hookledger(env, "events", "list", "--since", "last tuesday")
    assert bad.returncode == 2
    assert "is not a time" in bad.stderr


def test_prune_drops_bodies_but_keeps_provenance(client, runtime, env):
    event_id = post_htx(client, htx_update(8, "filled", "1", "1", "0")).json()["event_id"]
    run_jobs(runtime)
    before = event(runtime.engine, event_id)
    time.sleep(1.0)  # 0.00001 days is under a second
    assert (
        "would prune the raw bodies of 1"
        in hookledger(env, "events", "prune", "--older-than", "0.00001", "--dry-run").stdout
    )
    assert (
        "pruned the raw bodies of 1"
        in hookledger(env, "events", "prune", "--older-than", "0.00001").stdout
    )
    after = event(runtime.engine, event_id)
    assert after.body == b""
    assert (after.body_sha256, after.received_at) == (before.body_sha256, before.received_at)
    shown = json.loads(hookledger(env, "events", "show", event_id, "--json").stdout)
    assert shown["body"]["sha256"] == before.body_sha256
    assert "pruned_at" in shown["body"]
    assert f"{event_id}  already_applied" in hookledger(env, "dlq", "replay", event_id).stdout


# --- the admin API ---------------------------------------------------------------------------


def auth(actor: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if actor:
        headers["X-Actor"] = actor
    return headers


def test_admin_api_refuses_missing_wrong_and_unconfigured_tokens(client, admin_client):
    assert admin_client.get("/admin/events").status_code == 401
    assert (
        admin_client.get("/admin/events", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert admin_client.get("/admin/events", headers={"Authorization": ADMIN}).status_code == 401
    disabled = client.get("/admin/events", headers=auth())  # the app without a token
    assert disabled.status_code == 401
    assert "disabled" in disabled.json()["message"]


def test_admin_event_log_with_cursor_paging(admin_client, runtime):
    ids = [
        post_htx(admin_client, htx_update(n, "submitted", "0", "0", "0")).json()["event_id"]
        for n in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        url = "/admin/events?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = admin_client.get(url, headers=auth()).json()
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    detail = admin_client.get(f"/admin/events/{ids[0]}", headers=auth()).json()
    assert detail["headers"]["x-signature"] == "[redacted]"
    assert detail["body"]["text"].startswith("{")
    assert admin_client.get("/admin/events/evt_missing", headers=auth()).status_code == 404
    assert admin_client.get("/admin/events?status=lost", headers=auth()).status_code == 400
    assert admin_client.get("/admin/events?limit=0", headers=auth()).status_code == 400
    backwards = admin_client.get("/admin/events?since=2026-02-01&until=2026-01-01", headers=auth())
    assert backwards.status_code == 400
    assert "is after until" in backwards.json()["message"]


def test_admin_replay_discard_and_bulk_dead_letters(admin_client, runtime, broken_orders):
    ids = [
        post_htx(admin_client, htx_update(n, "filled", "1", "10", "0")).json()["event_id"]
        for n in range(3)
    ]
    kill_until_dead(runtime)
    heal(runtime)

    discarded = admin_client.post(
        f"/admin/events/{ids[0]}/discard", json={"reason": "duplicate order"}, headers=auth("alice")
    )
    assert discarded.json() == {"event_id": ids[0], "outcome": "discarded"}
    assert (
        admin_client.post(f"/admin/events/{ids[1]}/discard", json={}, headers=auth()).status_code
        == 400
    )

    preview = admin_client.post(
        "/admin/dead-letters/replay", json={"dry_run": True}, headers=auth()
    ).json()
    assert (preview["replayed"], preview["dry_run"]) == (2, True)
    assert {e["currency"] for e in preview["effects"][ids[1]]} == {"BTC", "USDT"}

    real = admin_client.post(
        "/admin/dead-letters/replay", json={"source": "htx-main"}, headers=auth("bob")
    ).json()
    assert sorted(real["event_ids"]) == sorted(ids[1:])
    run_jobs(runtime)
    assert [event(runtime.engine, i).status for i in ids] == ["discarded", "processed", "processed"]
    again = admin_client.post(f"/admin/events/{ids[1]}/replay", headers=auth()).json()
    assert again["outcome"] == "already_applied"
    log = admin_client.get(f"/admin/events/{ids[0]}", headers=auth()).json()["actions"]
    assert [(a["action"], a["actor"], a["reason"]) for a in log] == [
        ("discard", "admin-api:alice", "duplicate order")
    ]


# --- a database outage that outlasts the retries -----------------------------------------------


def test_database_outage_outlasting_retries_makes_dead_letters_then_replay_applies_once(
    client, runtime, env, pg_url
):
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("a network outage needs a database server")
    from sqlalchemy.engine.url import make_url

    from app.runtime import build_runtime, set_runtime
    from tests.tcpproxy import TcpProxy

    url = make_url(runtime.settings.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    through_proxy = runtime.settings.model_copy(
        update={
            "database_url": url.set(host="127.0.0.1", port=proxy.port).render_as_string(
                hide_password=False
            )
        }
    )
    worker_side = build_runtime(through_proxy)
    set_runtime(worker_side)  # the worker's jobs reach the database only through the proxy
    try:
        ids = [
            post_htx(client, htx_update(n, "filled", "0.5", "21000", "0.0005")).json()["event_id"]
            for n in range(4)
        ]
        proxy.cut()
        run_jobs(worker_side)  # every attempt fails; RQ retries twice more, then gives up
        assert {event(runtime.engine, i).status for i in ids} == {
            "received"
        }  # nothing to write with

        result = sweep_once(runtime)  # the database is reachable again for the sweeper
        assert sorted(result.dead) == sorted(ids)
        assert len(runtime.events.failed.get_job_ids()) == 0  # SQL holds the dead letters now
        dead = event(runtime.engine, ids[0])
        assert dead.status == "dead"
        assert "database unreachable through 3 attempt(s)" in (dead.last_error or "")

        proxy.start()
        replay = hookledger(env, "dlq", "replay", "--all", "--reason", "database back")
        assert "replayed 4 of 4" in replay.stdout
        run_jobs(worker_side)
        run_jobs(worker_side)
    finally:
        set_runtime(runtime)
        worker_side.close()
        proxy.cut()
    assert {event(runtime.engine, i).status for i in ids} == {"processed"}
    assert entries(runtime) == 4
    with Session(runtime.engine) as session:
        report = verify_ledger(session, runtime.settings.file.ledger.quote_currencies)
    assert report.ok, report.breaches
    assert count(runtime.engine, InboundEvent, InboundEvent.status == "dead") == 0


def test_refusals_are_recorded_too(client, runtime, env):
    event_id = post_htx(client, htx_update(9, "filled", "1", "1", "0")).json()["event_id"]
    run_jobs(runtime)
    assert hookledger(env, "dlq", "discard", event_id, "--reason", "wrong account").returncode == 1
    with Session(runtime.engine) as session:
        action = session.execute(
            select(EventAction).where(col(EventAction.event_id) == event_id)
        ).scalar_one()
    assert (action.action, action.outcome, action.actor) == ("discard", "refused", "ops-test")
    assert "wrong account" in (action.reason or "")
    assert "nothing to discard" in (action.reason or "")


@pytest.mark.parametrize(
    "body",
    [
        {"source": 5},
        {"since": 1700000000},
        {"dry_run": "yes"},
        {"reason": ["x"]},
        {"colour": "red"},
        [1, 2],
    ],
)
def test_admin_bulk_replay_refuses_wrong_types(admin_client, body):
    response = admin_client.post("/admin/dead-letters/replay", json=body, headers=auth())
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"


def test_admin_replay_refuses_bad_json(admin_client):
    response = admin_client.post("/admin/events/evt_x/replay", content=b"{nope", headers=auth())
    assert response.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/admin/events?limit=%C2%B2",
        "/admin/events?since=99999999999d",
        "/admin/events?since=0001-01-01T00:00:00%2B01:00",
        "/admin/events?cursor=evt_%00x",
    ],
)
def test_admin_listing_refuses_odd_input_without_5xx(admin_client, url):
    assert admin_client.get(url, headers=auth()).status_code == 400


def test_admin_replay_and_show_refuse_odd_ids_and_reasons(admin_client):
    assert admin_client.get("/admin/events/evt_%00", headers=auth()).status_code == 404
    assert (
        admin_client.post(
            "/admin/events/evt_0/replay", json={"reason": {"a": 1}}, headers=auth()
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    "args",
    [
        ["events", "prune", "--older-than", "-1"],
        ["events", "prune", "--older-than", "nan"],
        ["events", "list", "--since", "99999999999d"],
        ["signals", "list", "--limit", "-1"],
    ],
)
def test_cli_refuses_odd_arguments_with_usage_errors(env, args):
    result = hookledger(env, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_cli_names_an_unreachable_database(env):
    result = hookledger(
        {**env, "HOOKLEDGER_DATABASE_URL": "postgresql+psycopg://root@127.0.0.1:1/x"},
        "events",
        "list",
    )
    assert result.returncode == 1
    assert "the database is unreachable" in result.stderr
    assert "Traceback" not in result.stderr
