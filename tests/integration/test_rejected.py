"""Rejected callbacks are kept: a body that passed its source's authentication but not parsing
or the schema is answered 400/422 as ever, stored as ``rejected`` (one row per distinct body,
within the source's bounds), never queued, listed, shown, replayed once the cause is fixed, and
expired by retention. What fails before authentication is never stored.
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from sqlmodel import Session, col

from app.kinds.htx import Htx
from app.kinds.htx.tables import OrderEvent
from app.services import retention
from app.settings import RetentionConfig
from app.store.db import utcnow
from app.store.models import EventAction, InboundEvent, JournalEntry, LedgerPosting
from tests.integration.test_ledger_worked_examples import assert_ledger_verifies
from tests.support import (
    ADMIN_TOKEN,
    HTX_SECRET,
    TEST_CONFIG,
    TRX_TOKEN,
    count,
    event,
    fixture_json,
    hookledger,
    htx_headers,
    htx_update,
    post_htx,
    run_jobs,
)

# A token source configured with the wrong kind (the counterpart sends trx-energy pushes), and
# an HTX source that keeps at most two rejected bodies.
EXTRA = f"""
[sources.misfiled]
kind = "htx"
account_id = "3003"
auth = "token"
secrets = ["{TRX_TOKEN}"]
rejected_per_minute = 3

[sources.capped]
kind = "htx"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["{HTX_SECRET}"]
rejected_max = 2
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "hookledger.toml"
    path.write_text(textwrap.dedent(TEST_CONFIG) + textwrap.dedent(EXTRA))
    return path


def _renamed(order: int, cash: str = "1260") -> dict[str, Any]:
    """An HTX fill whose counterpart began sending ``created-at`` as ISO 8601 text instead of
    milliseconds: the schema refuses it (422) until a release accepts the new form."""
    return htx_update(order, "filled", "0.03", cash, "0.00006", **{"created-at": _ISO})


_ISO = "2024-01-05T07:43:29Z"


def _accept_renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release that accepts ``created-at`` as ISO 8601 text as well."""
    parse = Htx.parse

    def release(self: Htx, data: dict[str, Any]) -> Any:
        if data.get("created-at") == _ISO:
            data = {**data, "created-at": 1704440609000}
        return parse(self, data)

    monkeypatch.setattr(Htx, "parse", release)


def _rejected(engine: Any, source: str | None = None) -> list[InboundEvent]:
    where = [col(InboundEvent.status) == "rejected"]
    if source is not None:
        where.append(col(InboundEvent.source) == source)
    with Session(engine) as session:
        stmt = select(InboundEvent).where(*where).order_by(col(InboundEvent.id))
        found = list(session.execute(stmt).scalars())
        session.expunge_all()
        return found


def _kept(source: str, reason: str, outcome: str) -> float:
    labels = {"source": source, "reason": reason, "outcome": outcome}
    return REGISTRY.get_sample_value("hookledger_rejected_kept_total", labels) or 0.0


def _admin(client: Any, method: str, path: str, **kw: Any) -> Any:
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "x-actor": "ops"}
    return client.request(method, path, headers=headers, **kw)


def test_a_schema_change_is_kept_then_replayed_after_a_release_and_posted_once(
    admin_client, runtime, monkeypatch
):
    answer = post_htx(admin_client, _renamed(501))

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "created-at"]
    [kept] = _rejected(runtime.engine)
    assert kept.source == "htx-main" and kept.source_kind == "htx"
    assert kept.body == orjson.dumps(_renamed(501))
    assert kept.idempotency_key == f"rejected:{kept.body_sha256}"
    assert kept.last_error is not None and kept.last_error.startswith("422 ")
    assert "created-at" in kept.last_error
    assert json.loads(kept.headers)["x-signature"] == "[redacted]"
    assert kept.content_type == "application/json"
    run_jobs(runtime)  # nothing was queued for it
    assert event(runtime.engine, kept.id).status == "rejected"
    assert count(runtime.engine, OrderEvent) == 0

    listed = _admin(admin_client, "GET", "/admin/events?status=rejected").json()["events"]
    assert [e["event_id"] for e in listed] == [kept.id]
    refused = _admin(admin_client, "POST", f"/admin/events/{kept.id}/replay", json={})
    assert refused.status_code == 409
    assert "still refused: 422" in refused.json()["message"]

    _accept_renamed(monkeypatch)
    replayed = _admin(admin_client, "POST", f"/admin/events/{kept.id}/replay", json={})
    assert replayed.json() == {"event_id": kept.id, "outcome": "requeued"}
    run_jobs(runtime)

    done = event(runtime.engine, kept.id)
    assert done.status == "processed"
    assert done.received_at == kept.received_at  # its original receipt time
    assert done.idempotency_key != kept.idempotency_key
    assert done.event_type == "order.filled"
    assert count(runtime.engine, JournalEntry, col(JournalEntry.event_id) == kept.id) == 1
    assert count(runtime.engine, OrderEvent) == 1
    # The counterpart resending it now is a duplicate of the replayed event.
    body = orjson.dumps(_renamed(501))
    again = admin_client.post("/hooks/htx-main", content=body, headers=htx_headers(body))
    assert again.json() == {"status": "duplicate", "event_id": kept.id}
    detail = _admin(admin_client, "GET", f"/admin/events/{kept.id}").json()
    assert [(a["action"], a["outcome"]) for a in detail["actions"]] == [
        ("replay", "refused"),
        ("replay", "requeued"),
    ]
    assert_ledger_verifies(runtime)


def test_a_config_fix_then_a_cli_replay_applies_it(client, runtime, env, config_path):
    deposit = fixture_json("trx_deposit.json")
    url = f"/hooks/misfiled/{TRX_TOKEN}"
    answer = client.post(
        url, content=orjson.dumps(deposit), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    [kept] = _rejected(runtime.engine)

    listed = hookledger(env, "events", "list", "--status", "rejected", "--json")
    assert [e["event_id"] for e in json.loads(listed.stdout)] == [kept.id]
    shown = hookledger(env, "events", "show", kept.id)
    assert "rejected" in shown.stdout and "422" in shown.stdout
    still = hookledger(env, "dlq", "replay", kept.id, "--reason", "try")
    assert still.returncode == 1
    assert "still refused" in still.stdout

    config_path.write_text(
        config_path.read_text().replace(
            '[sources.misfiled]\nkind = "htx"', '[sources.misfiled]\nkind = "trx-energy"'
        )
    )
    dry = hookledger(env, "dlq", "replay", "--all", "--status", "rejected", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"{kept.id}  would_replay" in dry.stdout
    replayed = hookledger(env, "dlq", "replay", kept.id, "--reason", "kind fixed")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"{kept.id}  requeued" in replayed.stdout
    run_jobs(runtime)

    done = event(runtime.engine, kept.id)
    assert done.status == "processed"
    assert done.source_kind == "trx-energy"
    assert done.received_at == kept.received_at
    assert count(runtime.engine, LedgerPosting, col(LedgerPosting.event_id) == kept.id) > 0


def test_a_rejected_body_whose_valid_version_arrived_since_is_resolved_as_its_duplicate(
    admin_client, runtime, monkeypatch
):
    post_htx(admin_client, _renamed(502))
    [kept] = _rejected(runtime.engine)
    valid = post_htx(admin_client, htx_update(502, "filled", "0.03", "1260", "0.00006")).json()
    assert valid["status"] == "accepted"
    run_jobs(runtime)

    _accept_renamed(monkeypatch)
    answer = _admin(admin_client, "POST", f"/admin/events/{kept.id}/replay", json={})

    assert answer.json()["outcome"] == "duplicate"
    assert valid["event_id"] in answer.json()["message"]
    run_jobs(runtime)
    assert event(runtime.engine, kept.id).status == "discarded"
    assert count(runtime.engine, OrderEvent) == 1  # applied once
    assert count(runtime.engine, JournalEntry) == 1
    detail = _admin(admin_client, "GET", f"/admin/events/{kept.id}").json()
    assert detail["actions"][-1]["outcome"] == "duplicate"
    assert valid["event_id"] in detail["actions"][-1]["reason"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "bad_request"),
        (b'{"order-id": 1, "order-id": 2}', 400, "bad_request"),
        (orjson.dumps({"order-id": 7}), 422, "schema"),
    ],
)
def test_parse_and_schema_refusals_are_kept_once_per_body(client, runtime, body, status, reason):
    before = _kept("htx-main", reason, "stored")
    first = client.post("/hooks/htx-main", content=body, headers=htx_headers(body))
    again = client.post("/hooks/htx-main", content=body, headers=htx_headers(body))

    assert first.status_code == again.status_code == status
    assert first.json() == again.json()  # answered exactly as ever
    [kept] = _rejected(runtime.engine)
    assert kept.last_error is not None and kept.last_error.startswith(f"{status} ")
    assert _kept("htx-main", reason, "stored") == before + 1
    assert _kept("htx-main", reason, "already_kept") >= 1
    other = body + b" "
    client.post("/hooks/htx-main", content=other, headers=htx_headers(other))
    assert len(_rejected(runtime.engine)) == 2


def test_what_fails_before_or_at_authentication_is_never_stored(client, runtime):
    bad = b"{not json"
    refusals = [
        client.post("/hooks/htx-main", content=bad, headers=htx_headers(bad, "wrong-secret")),
        client.post("/hooks/htx-main", content=bad, headers={"content-type": "application/json"}),
        client.post("/hooks/nosuch", content=bad, headers=htx_headers(bad)),
        client.post("/hooks/restricted", content=bad, headers=htx_headers(bad)),
        client.post(
            "/hooks/htx-main",
            content=bad,
            headers=htx_headers(bad, **{"content-type": "text/plain"}),
        ),
        client.post("/hooks/htx-main", content=b"{" * 70_000, headers=htx_headers(b"{" * 70_000)),
        client.post(
            f"/hooks/trx/{TRX_TOKEN}x", content=bad, headers={"content-type": "application/json"}
        ),
    ]
    assert [r.status_code for r in refusals] == [401, 401, 404, 403, 415, 413, 401]
    assert count(runtime.engine, InboundEvent) == 0


def _minute_to_spare() -> None:
    """Start a per-minute test with at least 10 s of its minute left."""
    left = 60 - time.time() % 60
    if left < 10:
        time.sleep(left + 0.1)


def test_past_the_per_minute_bound_bodies_are_answered_but_not_stored(client, runtime):
    _minute_to_spare()
    before = _kept("misfiled", "schema", "over_per_minute")
    answers = [
        client.post(
            f"/hooks/misfiled/{TRX_TOKEN}",
            content=orjson.dumps({"order-id": n}),
            headers={"content-type": "application/json"},
        )
        for n in range(5)
    ]
    assert [a.status_code for a in answers] == [422] * 5
    assert len(_rejected(runtime.engine, "misfiled")) == 3
    assert _kept("misfiled", "schema", "over_per_minute") == before + 2


def test_past_the_total_bound_bodies_are_answered_but_not_stored(client, runtime):
    before = _kept("capped", "bad_request", "over_max")
    for n in range(4):
        body = b"{not json %d" % n
        answer = client.post("/hooks/capped", content=body, headers=htx_headers(body))
        assert answer.status_code == 400
    assert len(_rejected(runtime.engine, "capped")) == 2
    assert _kept("capped", "bad_request", "over_max") == before + 2
    # Another source's budget is its own.
    body = b"{not json"
    client.post("/hooks/htx-main", content=body, headers=htx_headers(body))
    assert len(_rejected(runtime.engine, "htx-main")) == 1


def test_retention_deletes_old_rejected_events_with_their_actions(admin_client, runtime):
    for n in range(3):
        body = b"{bad %d" % n
        admin_client.post("/hooks/htx-main", content=body, headers=htx_headers(body))
    old, older, young = (r.id for r in _rejected(runtime.engine))
    _admin(admin_client, "POST", f"/admin/events/{old}/replay", json={})  # refused, recorded
    applied = post_htx(admin_client, htx_update(503, "filled", "0.03", "1260", "0.00006"))
    run_jobs(runtime)
    with runtime.engine.begin() as conn:
        conn.execute(
            update(InboundEvent)
            .where(col(InboundEvent.id).in_([old, older, applied.json()["event_id"]]))
            .values(received_at=utcnow() - timedelta(days=3))
        )
    cfg = RetentionConfig(body_days=0, attempts_days=0, rejected_days=2, batch_size=1, pause_ms=0)

    removed = retention.run_pass(runtime.engine, cfg)

    assert removed.rejected == 2
    assert [r.id for r in _rejected(runtime.engine)] == [young]
    assert count(runtime.engine, EventAction) == 0
    assert event(runtime.engine, applied.json()["event_id"]).status == "processed"
    assert retention.run_pass(runtime.engine, cfg).rejected == 0


def test_bulk_replay_takes_rejected_events_only_when_asked(admin_client, runtime, monkeypatch):
    post_htx(admin_client, _renamed(504))
    [kept] = _rejected(runtime.engine)

    dead_only = _admin(admin_client, "POST", "/admin/dead-letters/replay", json={}).json()
    assert dead_only["event_ids"] == []
    still = _admin(
        admin_client, "POST", "/admin/dead-letters/replay", json={"status": "rejected"}
    ).json()
    assert still["replayed"] == 0
    assert [e["event_id"] for e in still["errors"]] == [kept.id]
    assert "still refused" in still["errors"][0]["message"]
    bad = _admin(admin_client, "POST", "/admin/dead-letters/replay", json={"status": "lost"})
    assert bad.status_code == 400

    _accept_renamed(monkeypatch)
    done = _admin(
        admin_client, "POST", "/admin/dead-letters/replay", json={"status": "rejected"}
    ).json()
    assert done["event_ids"] == [kept.id]
    run_jobs(runtime)
    assert event(runtime.engine, kept.id).status == "processed"
