"""The web console at /console, through Starlette's TestClient, on SQLite and PostgreSQL with a
real Redis: the login gate, CSRF, the event log and its search, replay and discard of dead
letters, the transactions CSV against ``hookledger ledger export``, exact balances, escaping."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select, text
from sqlmodel import Session, col
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from app.console.session import COOKIE
from app.main import create_app
from app.store.models import EventAction
from tests.console.helpers import csrf_of, heal, login, post_form, work_until_dead
from tests.support import (
    ADMIN_TOKEN,
    HTX_SECRET,
    api_get,
    body_of,
    event,
    fixture_json,
    hookledger,
    htx_headers,
    htx_update,
    post_htx,
    post_pp,
    post_trx,
    run_jobs,
)

PAGES = [
    "/console/",
    "/console/events",
    "/console/events?status=dead",
    "/console/events/evt_0123abcd",
    "/console/dead-letters",
    "/console/gaps",
    "/console/ledger/transactions",
    "/console/ledger/transactions.csv",
    "/console/ledger/balances",
    "/console/no-such-page",
]


def _rows(page: str, table_id: str) -> list[list[str]]:
    """The text of each body row's cells in the table with ``table_id``."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert table, f"no table {table_id}"
    rows = []
    body = re.sub(r"<thead>.*?</thead>", "", table.group(1), flags=re.S)
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


# --- the login gate ---------------------------------------------------------------------------


def _get_as(client, path, cookie):
    """GET with exactly this session cookie (whatever the client's jar holds)."""
    return client.get(path, headers={"cookie": f"{COOKIE}={cookie}"}, follow_redirects=False)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_redirects_to_login_without_a_session(console, path):
    answers = [console.get(path, follow_redirects=False)]
    answers += [_get_as(console, path, c) for c in ("garbage", "eyJjc3JmIjoieCJ9.forged")]
    for answer in answers:
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")
    assert console.post("/console/events/evt_01/replay", follow_redirects=False).status_code == 303


def _console_routes(app) -> list[tuple[str, str]]:
    """(method, concrete path) of every route mounted under /console in the real app."""
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/console")
    found = []
    for route in mount.routes:
        if isinstance(route, Route):
            path = "/console" + re.sub(r"\{(\w+)(:\w+)?\}", "evt_0123abcd", route.path)
            found += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def test_every_console_route_but_login_needs_a_session(console):
    routes = _console_routes(console.app)
    assert ("POST", "/console/events/evt_0123abcd/discard") in routes
    assert len(routes) >= 12
    for method, path in routes:
        if path == "/console/login":
            continue  # the one public page
        answer = console.request(method, path, follow_redirects=False)
        assert answer.status_code == 303, (method, path)
        assert answer.headers["location"].startswith("/console/login"), (method, path)
    css = console.get("/console/static/console.css")  # public, and no secret in it
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def test_rotating_the_admin_token_logs_everyone_out(admin_settings, runtime):
    before = create_app(admin_settings.model_copy(update={"admin_token": "the-previous-token"}))
    with TestClient(before) as old:
        assert login(old, token="the-previous-token").status_code == 303
        cookie = old.cookies[COOKIE]
        assert _get_as(old, "/console/events", cookie).status_code == 200
    with TestClient(create_app(admin_settings)) as rotated:
        answer = _get_as(rotated, "/console/events", cookie)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")
        # The current token's cookie works; tampered with, it does not.
        assert login(rotated).status_code == 303
        good = rotated.cookies[COOKIE]
        assert _get_as(rotated, "/console/events", good).status_code == 200
        tampered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
        assert _get_as(rotated, "/console/events", tampered).status_code == 303


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(console):
    page = console.get("/console/login")
    assert page.status_code == 200
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none'
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"

    answer = login(console, name="alice", next_path="/console/events?status=dead")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/events?status=dead"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie
    assert ADMIN_TOKEN.lower() not in cookie  # the cookie is signed, and holds no token

    landing = console.get("/console/events?status=dead")
    assert landing.status_code == 200
    assert "console:alice" in landing.text
    assert "Logged in" in landing.text  # the flash, shown once
    assert "Logged in" not in console.get("/console/events").text

    out = post_form(console, "/console/logout", {}, page=landing.text)
    assert out.status_code == 303
    assert out.headers["location"] == "/console/login"
    assert console.get("/console/events", follow_redirects=False).status_code == 303


def test_a_wrong_token_is_refused(console):
    wrong = login(console, token="not-the-token")
    assert wrong.status_code == 401
    assert "Wrong admin token" in wrong.text
    assert "not-the-token" not in wrong.text  # what was typed is not echoed
    assert console.get("/console/events", follow_redirects=False).status_code == 303
    # The form is still usable afterwards (same pre-login session), and the right token works.
    assert login(console).status_code == 303


def test_without_an_admin_token_nobody_logs_in(client):
    page = client.get("/console/login")
    assert page.status_code == 503
    assert "HOOKLEDGER_ADMIN_TOKEN is not set" in page.text
    assert 'name="token"' not in page.text
    refused = client.post("/console/login", data={"csrf": "x", "token": ADMIN_TOKEN})
    assert refused.status_code == 503
    assert client.get("/console/events", follow_redirects=False).status_code == 303


def test_next_never_leaves_the_console(console):
    for target in ("//evil.example/x", "https://evil.example/", "/admin/events", "/console\\x"):
        answer = login(console, next_path=target)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/", target
        console.cookies.clear()


# --- CSRF ------------------------------------------------------------------------------------


def test_every_post_needs_the_sessions_csrf_token(ops, admin_settings, runtime, broken_orders):
    event_id = post_htx(ops, htx_update(1, "filled", "1", "10", "0")).json()["event_id"]
    work_until_dead(runtime)
    heal(runtime.engine)

    replay = f"/console/events/{event_id}/replay"
    missing = ops.post(replay, data={"reason": "x"}, follow_redirects=False)
    wrong = ops.post(replay, data={"csrf": "A" * 43}, follow_redirects=False)
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert "This form has expired" in wrong.text
    # Another person's valid token (from another web process of the same token) is no good.
    with TestClient(create_app(admin_settings), client=("127.0.0.1", 50002)) as bob:
        assert login(bob, name="bob").status_code == 303
        bobs = csrf_of(bob.get("/console/dead-letters").text)
    assert ops.post(replay, data={"csrf": bobs}, follow_redirects=False).status_code == 403
    discard = ops.post(
        f"/console/events/{event_id}/discard",
        data={"csrf": bobs, "reason": "forged"},
        follow_redirects=False,
    )
    assert discard.status_code == 403
    logout = ops.post("/console/logout", data={}, follow_redirects=False)
    assert logout.status_code == 403
    # A JSON or multipart body is no form of ours.
    assert ops.post(replay, json={"csrf": "x"}, follow_redirects=False).status_code == 415

    assert event(runtime.engine, event_id).status == "dead"  # nothing happened
    with Session(runtime.engine) as session:
        assert session.execute(select(EventAction)).first() is None
    # The login form is a POST form too.
    stale = ops.post("/console/login", data={"csrf": "nope", "token": ADMIN_TOKEN})
    assert stale.status_code == 403
    assert "expired" in stale.text


# --- the event log ---------------------------------------------------------------------------


def test_search_by_source_status_time_and_id_with_cursor_paging(ops, runtime):
    htx = [
        post_htx(ops, htx_update(n, "submitted", "0", "0", "0")).json()["event_id"]
        for n in range(5)
    ]
    deposit = post_trx(ops, fixture_json("trx_deposit.json")).json()["event_id"]
    run_jobs(runtime)

    seen: list[str] = []
    url = "/console/events?source=htx-main&status=processed&limit=2"
    while url:
        page = ops.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<tr id="row-(evt_[0-9a-f]+)">', page.text)
        more = re.search(r'href="([^"]+)" id="next-page"', page.text)
        url = html.unescape(more.group(1)) if more else ""
    assert seen == sorted(htx, reverse=True)  # newest first, every one once, only htx-main

    trx = ops.get("/console/events?source=trx").text
    assert re.findall(r'<tr id="row-(evt_[0-9a-f]+)">', trx) == [deposit]
    assert "No events match." in ops.get("/console/events?status=dead").text
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert "No events match." in ops.get("/console/events", params={"since": future}).text
    recent = ops.get("/console/events", params={"since": "1h", "until": future}).text
    assert len(re.findall(r'<tr id="row-evt_', recent)) == 6

    found = ops.get("/console/events", params={"event_id": deposit}, follow_redirects=False)
    assert found.status_code == 303
    assert found.headers["location"] == f"/console/events/{deposit}"
    detail = ops.get(found.headers["location"]).text
    assert "deposit.received" in detail
    assert "3003" in detail and "TRX" in detail  # the ledger effect: 1000 TRX into 3003
    assert re.search(r"<td>3003</td><td>TRX</td><td[^>]*>1000</td>", detail)


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/console/events?since=last+tuesday", 400, "is not a time we can use"),
        ("/console/events?since=99999999999d", 400, "is not a time we can use"),
        ("/console/events?status=lost", 400, "status &#39;lost&#39; is not one of"),
        ("/console/events?colour=red", 400, "Unknown search field"),
        ("/console/events?limit=0", 400, "whole number from 1 to 500"),
        ("/console/events?limit=%C2%B2", 400, "whole number from 1 to 500"),
        ("/console/events?cursor=evt_%00x", 400, "control characters"),
        ("/console/events?cursor=nope", 400, "cursor must be"),
        ("/console/events?event_id=drop+table", 400, "is not an event id"),
        ("/console/events/evt_0123abcd", 404, "no event evt_0123abcd"),
        ("/console/events/evt_%00", 404, "No such event"),
        ("/console/events/sig_99999999999", 404, "No such event"),
        ("/console/events/sig_42", 404, "No signal sig_42"),
        ("/console/dead-letters?until=soon", 400, "is not a time we can use"),
        ("/console/ledger/transactions?from=yesterday", 400, "neither a date"),
        ("/console/ledger/transactions?from=%C2%B2", 400, "neither a date"),
        ("/console/ledger/transactions?to=99999999999999999999", 400, "out of range"),
        ("/console/ledger/transactions?from=2026-02-01&to=2026-01-01", 400, "is after to"),
        ("/console/ledger/transactions?business_type=bonds", 400, "is not one of"),
        ("/console/ledger/transactions?io_type=sideways", 400, "is not one of"),
        ("/console/ledger/transactions?page=0", 400, "whole number"),
        ("/console/ledger/transactions?as_of_id=-1", 400, "as_of_id"),
        ("/console/ledger/transactions.csv?from=1.5", 400, "neither a date"),
        ("/console/ledger/balances?as_of=2026-13-01", 400, "not a day of the calendar"),
        ("/console/ledger/balances?account=" + "9" * 65, 400, "longer than 64"),
        ("/console/nowhere", 404, "no such console page"),
    ],
)
def test_bad_input_is_a_page_that_says_why_never_a_500(ops, url, status, message):
    answer = ops.get(url, follow_redirects=False)
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"].startswith("text/html")
    assert message in answer.text


# --- dead letters: replay and discard ------------------------------------------------------------


def test_replay_of_a_dead_event_from_the_console_applies_it_once(ops, runtime, broken_orders):
    event_id = post_htx(ops, htx_update(7, "filled", "1", "100", "0.1")).json()["event_id"]
    work_until_dead(runtime)
    assert event(runtime.engine, event_id).status == "dead"

    dead = ops.get("/console/dead-letters")
    assert f'id="row-{event_id}"' in dead.text
    assert "orders are broken" in dead.text
    heal(runtime.engine)

    answer = post_form(
        ops, f"/console/events/{event_id}/replay", {"next": "/console/dead-letters"}, page=dead.text
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/dead-letters"
    back = ops.get("/console/dead-letters").text
    assert f"{event_id}: requeued" in back
    assert f'id="row-{event_id}"' not in back  # no longer dead
    run_jobs(runtime)
    assert event(runtime.engine, event_id).status == "processed"

    detail = ops.get(f"/console/events/{event_id}").text
    assert 'id="event-status">processed' in detail
    assert 'id="replay"' not in detail  # an applied event offers no replay or discard
    again = post_form(ops, f"/console/events/{event_id}/replay", {}, page=detail)
    assert again.status_code == 303
    assert (
        f"{event_id}: already applied; nothing changed" in ops.get(again.headers["location"]).text
    )
    actions = _rows(ops.get(f"/console/events/{event_id}").text, "actions")
    assert [(a[1], a[2], a[3]) for a in actions] == [
        ("replay", "requeued", "console:alice"),
        ("replay", "already_applied", "console:alice"),
    ]
    effects = _rows(ops.get(f"/console/events/{event_id}").text, "effects")
    assert ["1001", "BTC", "1", "1", "trade"] in effects  # applied once: one BTC in


def test_discard_needs_a_reason_and_records_it(ops, runtime, broken_orders):
    ids = [
        post_htx(ops, htx_update(n, "filled", "1", "10", "0")).json()["event_id"] for n in (1, 2)
    ]
    work_until_dead(runtime)
    page = ops.get("/console/dead-letters").text

    blank = post_form(ops, f"/console/events/{ids[0]}/discard", {"reason": "  "}, page=page)
    assert blank.status_code == 400
    assert "A discard needs a reason" in blank.text
    assert event(runtime.engine, ids[0]).status == "dead"

    done = post_form(
        ops,
        f"/console/events/{ids[0]}/discard",
        {"reason": "test order <never real>", "next": "/console/dead-letters"},
        page=page,
    )
    assert done.status_code == 303
    assert f"{ids[0]}: discarded" in ops.get("/console/dead-letters").text
    assert event(runtime.engine, ids[0]).status == "discarded"
    with Session(runtime.engine) as session:
        action = session.execute(
            select(EventAction).where(col(EventAction.event_id) == ids[0])
        ).scalar_one()
    assert (action.action, action.outcome, action.actor, action.reason) == (
        "discard",
        "discarded",
        "console:alice",
        "test order <never real>",
    )
    shown = ops.get(f"/console/events/{ids[0]}").text
    assert "test order &lt;never real&gt;" in shown

    # An applied event cannot be discarded: a 409 page, and the refusal is recorded too.
    heal(runtime.engine)
    post_form(ops, f"/console/events/{ids[1]}/replay", {}, page=page)
    run_jobs(runtime)
    refused = post_form(ops, f"/console/events/{ids[1]}/discard", {"reason": "oops"}, page=page)
    assert refused.status_code == 409
    assert "nothing to discard" in refused.text
    assert event(runtime.engine, ids[1]).status == "processed"
    with Session(runtime.engine) as session:
        outcomes = session.execute(
            select(col(EventAction.outcome)).where(col(EventAction.event_id) == ids[1])
        ).scalars()
        assert list(outcomes) == ["requeued", "refused"]


def test_a_pruned_dead_event_cannot_be_replayed_and_the_page_says_so(ops, runtime, broken_orders):
    event_id = post_htx(ops, htx_update(3, "filled", "1", "10", "0")).json()["event_id"]
    work_until_dead(runtime)
    with runtime.engine.begin() as conn:  # as if its body had been pruned by an older release
        conn.execute(
            text("UPDATE inbound_events SET body_pruned_at = received_at WHERE id = :id"),
            {"id": event_id},
        )
    page = ops.get("/console/dead-letters").text
    answer = post_form(ops, f"/console/events/{event_id}/replay", {}, page=page)
    assert answer.status_code == 409
    assert "raw body was pruned" in answer.text


# --- the ledger -------------------------------------------------------------------------------


@pytest.fixture
def ledger(ops, runtime):
    """Two HTX fills for 1001, an FX settlement for 2002, a TRX deposit for 3003."""
    post_htx(ops, htx_update(1, "partial-filled", "0.01", "420", "0.00002"))
    post_htx(ops, htx_update(1, "filled", "0.03", "1260.7", "0.00006"))
    post_pp(ops, fixture_json("pingpong_position_settle.json"))
    post_trx(ops, fixture_json("trx_deposit.json"))
    run_jobs(runtime)
    return ops


def test_csv_download_is_byte_for_byte_the_cli_export(ledger, env):
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for account in ("1001", None):
        params = {"from": today, "to": today, **({"account": account} if account else {})}
        download = ledger.get("/console/ledger/transactions.csv", params=params)
        assert download.status_code == 200
        assert download.headers["content-type"] == "text/csv; charset=utf-8"
        assert download.headers["content-disposition"].startswith("attachment;")
        args = ["ledger", "export", "--from", today, "--to", today]
        exported = hookledger(env, *args, *(["--account", account] if account else []))
        assert exported.returncode == 0, exported.stderr
        assert download.text == exported.stdout
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert len(rows) == 9  # 6 HTX (1001), 2 FX (2002), 1 deposit (3003): customer side
    # The transactions page links to exactly that download, filters kept.
    page = ledger.get("/console/ledger/transactions", params={"from": today, "account": "1001"})
    link = html.unescape(re.search(r'id="csv" href="([^"]+)"', page.text).group(1))
    path, _, query = link.partition("?")
    assert (path, parse_qs(query)) == (
        "/console/ledger/transactions.csv",
        {"from": [today], "account": ["1001"]},
    )


def test_transactions_page_filters_and_pages(ledger):
    deposits = ledger.get("/console/ledger/transactions?business_type=deposit").text
    assert "1 transaction(s)" in deposits
    assert "1000" in deposits and "TRX" in deposits
    outs = ledger.get("/console/ledger/transactions?io_type=out&account=1001").text
    assert "4 transaction(s)" in outs  # USDT and the BTC fee, for each of the two fills
    first = ledger.get("/console/ledger/transactions?page_size=4")
    assert "9 transaction(s); page 1 of 3" in first.text
    more = html.unescape(re.search(r'href="([^"]+)" id="next-page"', first.text).group(1))
    assert "as_of_id=" in more  # later postings do not shift the pages
    assert "page 2 of 3" in ledger.get(more).text


def test_balances_are_exact_and_match_the_accountants_api(ledger):
    page = ledger.get("/console/ledger/balances").text
    shown = {(r[0], r[1]): r[2] for r in _rows(page, "customer-balances")}
    api = api_get(ledger, "/account/v1/balances", key="ak_auditor").json()["data"]["balances"]
    expected = {(str(b["account_id"]), b["currency"]): str(b["balance"]) for b in api}
    assert shown == expected
    assert shown[("1001", "USDT")] == "-1260.7"
    assert shown[("1001", "BTC")] == "0.02994"
    assert shown[("3003", "TRX")] == "1000"
    for table in ("customer-balances", "all-balances"):  # exact text: no exponent, no float
        for row in _rows(page, table):
            assert re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", row[2]), row
    totals = [r for r in _rows(page, "all-balances") if r[0] == "Sum over every account"]
    assert {r[1] for r in totals} == {"BTC", "USDT", "CNH", "MXN", "TRX"}
    assert all(r[2] == "0" and r[3] == "balanced" for r in totals)
    one = ledger.get("/console/ledger/balances?account=2002").text
    assert {r[0] for r in _rows(one, "customer-balances")} == {"2002"}
    past = ledger.get("/console/ledger/balances?as_of=2000-01-01").text
    assert "No postings." in past


# --- what the console shows -------------------------------------------------------------------


XSS = "<script>alert(1)</script><img src=x onerror=alert(1)>"


def test_stored_markup_is_escaped_everywhere_it_shows(ops, runtime):
    payload = htx_update(11, "rejected", "0", "0", "0", **{"err-msg": XSS, "client-order-id": XSS})
    event_id = post_htx(ops, payload).json()["event_id"]
    run_jobs(runtime)
    pages = [
        ops.get(f"/console/events/{event_id}").text,
        ops.get("/console/events", params={"source": XSS}).text,  # reflected in the form
        ops.get("/console/ledger/transactions", params={"account": XSS[:64]}).text,
    ]
    for page in pages:
        assert "<script>" not in page
        assert "<img" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'id="raw-body"' in pages[0]


def test_no_secret_or_signature_on_any_page(ops, runtime):
    body = body_of(htx_update(21, "filled", "1", "10", "0"))
    headers = htx_headers(body)
    signed = ops.post("/hooks/htx-main", content=body, headers=headers).json()["event_id"]
    post_pp(ops, fixture_json("pingpong_position_settle.json"))
    post_trx(ops, fixture_json("trx_deposit.json"))
    # A sender that put a configured secret in its body: shown as [redacted].
    leaky = post_htx(
        ops,
        htx_update(22, "submitted", "0", "0", "0", **{"client-order-id": HTX_SECRET}),
        source="open",
    ).json()["event_id"]
    run_jobs(runtime)
    ids = re.findall(r'<tr id="row-(evt_[0-9a-f]+)">', ops.get("/console/events").text)
    assert signed in ids and leaky in ids and len(ids) == 4
    pages = [ops.get(path).text for path in PAGES[:3] + PAGES[4:-1]]
    pages += [ops.get(f"/console/events/{i}").text for i in ids]
    for page in pages:
        assert "CANARY" not in page
        assert headers["x-signature"] not in page
        assert ADMIN_TOKEN not in page
    detail = ops.get(f"/console/events/{signed}").text
    assert re.search(r"x-signature</th><td[^>]*>\[redacted\]", detail)
    assert "[redacted]" in ops.get(f"/console/events/{leaky}").text


def test_the_dashboard_counts_events_by_status(ops, runtime, broken_orders):
    post_htx(ops, htx_update(31, "filled", "1", "1", "0"))
    work_until_dead(runtime)
    heal(runtime.engine)
    post_htx(ops, htx_update(32, "submitted", "0", "0", "0"))
    run_jobs(runtime)
    page = ops.get("/console/").text
    counts = dict(re.findall(r'status-(\w+)">\w+</span></a></td><td class="num">(\d+)</td>', page))
    assert (counts["dead"], counts["processed"], counts["received"]) == ("1", "1", "0")


def test_oversized_or_odd_forms_are_refused_before_anything_happens(ops, runtime, broken_orders):
    event_id = post_htx(ops, htx_update(41, "filled", "1", "1", "0")).json()["event_id"]
    work_until_dead(runtime)
    page = ops.get("/console/dead-letters").text
    discard = f"/console/events/{event_id}/discard"
    huge = post_form(ops, discard, {"reason": "x" * 20_000}, page=page)
    assert huge.status_code == 413
    twice = ops.post(
        discard,
        content=f"csrf={csrf_of(page)}&reason=a&reason=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert twice.status_code == 400
    assert "not a single text value" in twice.text
    nul = post_form(ops, discard, {"reason": "a\x00b"}, page=page)
    assert nul.status_code == 400
    assert event(runtime.engine, event_id).status == "dead"


def test_rejected_events_are_searchable_and_replayable_and_conflicts_are_shown(ops, runtime):
    bad = b'{"order-id": 1, "created-at": "yesterday"}'
    assert ops.post("/hooks/htx-main", content=bad, headers=htx_headers(bad)).status_code == 422
    first = post_htx(ops, htx_update(77, "filled", "0.03", "1260", "0.00006")).json()
    conflicting = htx_update(77, "filled", "0.03", "1261", "0.00006")
    assert post_htx(ops, conflicting).json()["status"] == "duplicate"

    listing = ops.get("/console/events?status=rejected")
    assert listing.status_code == 200
    assert '<option value="rejected" selected>' in listing.text
    [rejected_id] = re.findall(r"/console/events/(evt_[0-9a-f]+)", listing.text)
    page = ops.get(f"/console/events/{rejected_id}")
    assert "status-rejected" in page.text
    assert "created-at" in html.unescape(page.text)  # the schema's reason, in Last error
    assert f"/console/events/{rejected_id}/replay" in page.text
    refused = post_form(ops, f"/console/events/{rejected_id}/replay", {}, page=page.text)
    assert refused.status_code in (303, 409)
    assert event(runtime.engine, rejected_id).status == "rejected"

    for _ in range(100):  # the conflict is written once the duplicate answer is out
        shown = html.unescape(ops.get(f"/console/events/{first['event_id']}").text)
        if 'filled-cash-amount: "1260" → "1261"' in shown:
            break
        time.sleep(0.02)
    assert 'filled-cash-amount: "1260" → "1261"' in shown
