"""Messages a person understands, through the CLI (in process and as a real process with a real
pipe), the accountants' API, the admin API and the console, on SQLite and PostgreSQL.

- Dates typed as dates come back as typed (or as ISO 8601), never as converted Unix seconds.
- A Unix time of the wrong unit (milliseconds for seconds, seconds for the accountants' API's
  milliseconds, a date written ``YYYYMMDD``) is named as such, with what to send instead.
- ``--source`` or ``--target`` naming nothing is an error that lists the known names.
- ``events list`` says on stderr when it cut the list, and how to see more.
- Output cut short by a closed pipe ends quietly.
- No message carries Python internals (class names, tracebacks, codec hints) or a doubled word.
"""

from __future__ import annotations

import ast
import html
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from app.cli import main as cli
from app.domain.signing import hmac_sha256_hex
from tests.canary import remember_signature
from tests.console.helpers import login
from tests.support import ADMIN_TOKEN, HTX_SECRET, api_get, htx_update, post_htx, run_jobs

ROOT = Path(__file__).resolve().parents[2]
SOURCES = "htx-main, htx-ts, open, pp, restricted, trx"
_DOUBLED = re.compile(r"\b(\w+) \1\b")  # case counts: "--source SOURCE" is no doubling
_INTERNALS = re.compile(
    r"Traceback|Exception ignored|[A-Z][A-Za-z]*(Error|Exception)\b|utf-8-sig|decode using|``"
)


def plain(message: str) -> str:
    """``message``, once it is checked for Python internals and doubled words."""
    assert not _INTERNALS.search(message), f"internals in: {message!r}"
    assert not _DOUBLED.search(message), f"a doubled word in: {message!r}"
    return message


@pytest.fixture
def cli_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's configuration in the process environment, for ``app.cli.main``."""
    for key, value in env.items():
        if key.startswith(("HOOKLEDGER_", "TEST_")):
            monkeypatch.setenv(key, value)
    return env


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``hookledger ARGV`` in this process: exit code, stdout, stderr (usage errors included)."""
    try:
        code = cli(argv)
    except SystemExit as exc:  # argparse's usage errors and --help
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def three_events(client: TestClient, runtime) -> list[str]:
    ids = [
        post_htx(client, htx_update(n, "filled", "0.1", "4200", "0")).json()["event_id"]
        for n in (1, 2, 3)
    ]
    run_jobs(runtime)
    return ids


# --- dates: echoed as typed, wrong units named ---------------------------------------------------


def test_a_reversed_export_range_is_echoed_as_typed(cli_env, client, capsys):
    code, _, err = run(["ledger", "export", "--from", "2024-02-01", "--to", "2024-01-01"], capsys)
    assert code == 2
    assert "hookledger: --from 2024-02-01 is after --to 2024-01-01" in plain(err)
    assert "1706745600" not in err  # the converted Unix seconds are not what was typed


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--from", "1704067200000", "--to", "2024-01-02"],
            "argument --from: 1704067200000 looks like milliseconds; this takes Unix seconds "
            "(1704067200 is 2024-01-01T00:00:00Z)",
        ),
        (
            ["--from", "2024-01-01", "--to", "20240102"],
            "argument --to: 20240102 looks like a date: write it 2024-01-02 (or as Unix "
            "seconds, 1704153600)",
        ),
        (
            ["--from", "last week", "--to", "2024-01-02"],
            "argument --from: 'last week' is neither a date (YYYY-MM-DD, UTC) nor Unix seconds",
        ),
        (
            ["--from", "2024-02-30", "--to", "2024-03-01"],
            "argument --from: '2024-02-30' is not a day of the calendar",
        ),
    ],
)
def test_export_dates_of_the_wrong_kind_say_what_to_type(cli_env, capsys, args, expected):
    code, _, err = run(["ledger", "export", *args], capsys)
    assert code == 2
    assert expected in plain(err)


def test_event_filters_name_milliseconds_and_a_reversed_window(cli_env, client, capsys):
    code, _, err = run(["events", "list", "--since", "1704067200000"], capsys)
    assert code == 2
    assert "--since: 1704067200000 looks like milliseconds" in plain(err)
    code, _, err = run(
        ["events", "list", "--since", "2026-11-21", "--until", "2026-11-20T12:00:00+08:00"], capsys
    )
    assert code == 2
    assert (
        "hookledger: --since 2026-11-21T00:00:00Z is after --until 2026-11-20T04:00:00Z"
        in plain(err)
    )
    code, _, err = run(["dlq", "list", "--until", "soon"], capsys)
    assert code == 2
    assert "'soon' is not a time we can use: an ISO 8601 date or time" in plain(err)


TX = "/account/v1/transactions"


@pytest.mark.parametrize(
    ("query", "details"),
    [
        (
            "from_date=2024-02-01&to_date=2024-01-01",
            "from_date takes Unix seconds, not a date: for 2024-02-01 send 1706745600 "
            "(2024-02-01T00:00:00Z)",
        ),
        (
            "to_date=2024-01-31",
            "to_date takes Unix seconds, not a date: for 2024-01-31 send 1706745599 "
            "(2024-01-31T23:59:59Z)",
        ),
        (
            "from_date=1706745600&to_date=1704067200",
            "from_date 1706745600 (2024-02-01T00:00:00Z) is after "
            "to_date 1704067200 (2024-01-01T00:00:00Z)",
        ),
        (
            "from_date=1704067200000",
            "from_date 1704067200000 looks like milliseconds; this takes Unix seconds "
            "(1704067200 is 2024-01-01T00:00:00Z)",
        ),
        (
            "to_date=20240101",
            "to_date 20240101 looks like a date; this takes Unix seconds (2024-01-01 is "
            "1704067200)",
        ),
        (
            "from_date=yesterday",
            "from_date 'yesterday' is not Unix seconds (e.g. 1704067200 is 2024-01-01)",
        ),
    ],
)
def test_accountants_api_dates_are_explained(client, query, details):
    answer = api_get(client, f"{TX}?{query}")
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == 40001
    assert plain(body["details"]) == details


def test_accountants_api_as_of_in_milliseconds_is_named(client):
    answer = api_get(client, "/account/v1/balances?as_of=1704067200000")
    assert answer.status_code == 400
    assert "as_of 1704067200000 looks like milliseconds" in plain(answer.json()["details"])


def test_an_api_timestamp_in_seconds_says_milliseconds_are_expected(client):
    seconds = int(time.time())
    answer = api_get(client, f"{TX}?page=1", stamp_ms=seconds)
    assert answer.status_code == 401
    body = answer.json()
    assert (body["code"], body["message"]) == (40103, "timestamp in seconds")
    assert plain(body["details"]).startswith(f"X-API-Timestamp {seconds} looks like seconds (")
    assert f"send milliseconds since the epoch ({seconds * 1000})" in body["details"]
    micro = int(time.time() * 1_000_000)
    answer = api_get(client, f"{TX}?page=1", stamp_ms=micro)
    assert answer.status_code == 401
    assert "looks like microseconds" in plain(answer.json()["details"])


def test_a_stale_api_timestamp_says_when_it_is(client):
    answer = api_get(client, f"{TX}?page=1", stamp_ms=1704067200000)
    assert answer.status_code == 401
    details = plain(answer.json()["details"])
    assert details.startswith("X-API-Timestamp 1704067200000 is 2024-01-01T00:00:00Z, ")
    assert details.endswith("it must be within 300 s")
    answer = api_get(client, f"{TX}?page=1", stamp_ms=int(time.time() * 1000))
    assert answer.status_code == 200, answer.text


def test_a_hook_timestamp_in_milliseconds_says_seconds_are_expected(client):
    body = b'{"order-id": 1}'
    stamp = str(int(time.time() * 1000))
    signature = hmac_sha256_hex(HTX_SECRET.encode(), f"{stamp}.".encode() + body)
    remember_signature(signature)  # the canary scan fails the session if a log shows it
    answer = client.post(
        "/hooks/htx-ts",
        content=body,
        headers={
            "content-type": "application/json",
            "x-timestamp": stamp,
            "x-signature": signature,
        },
    )
    assert answer.status_code == 401
    assert plain(answer.json()["message"]) == (
        "X-Timestamp looks like milliseconds; it must be Unix seconds"
    )


def test_admin_api_times_are_explained(admin_client):
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    answer = admin_client.get("/admin/events?since=1704067200000", headers=auth)
    assert answer.status_code == 400
    assert plain(answer.json()["message"]).startswith(
        "since 1704067200000 looks like milliseconds; this takes Unix seconds"
    )
    answer = admin_client.get("/admin/events?until=next+tuesday", headers=auth)
    assert answer.status_code == 400
    assert plain(answer.json()["message"]).startswith(
        "until 'next tuesday' is not a time we can use: an ISO 8601 date or time"
    )
    answer = admin_client.post("/admin/dead-letters/replay", json={"since": 5}, headers=auth)
    assert answer.status_code == 400
    assert plain(answer.json()["message"]).startswith("since must be a string: an ISO 8601")


def _console_error(page: str) -> str:
    found = re.search(r'id="error-message">(.*?)</p>', page, re.S)
    assert found, page[:300]
    return plain(html.unescape(found.group(1)))


def test_console_filters_echo_dates_as_typed(admin_client):
    assert login(admin_client, name="dates").status_code == 303
    page = admin_client.get("/console/events?since=2026-11-21&until=2026-11-20")
    assert page.status_code == 400
    assert (
        _console_error(page.text) == "since 2026-11-21 is after until 2026-11-20: nothing is both."
    )
    page = admin_client.get("/console/ledger/transactions?from=2026-02-01&to=2026-01-01")
    assert page.status_code == 400
    assert _console_error(page.text) == "from 2026-02-01 is after to 2026-01-01."
    page = admin_client.get("/console/dead-letters?since=1704067200000")
    assert page.status_code == 400
    assert _console_error(page.text).startswith("since 1704067200000 looks like milliseconds")
    page = admin_client.get("/console/ledger/balances?as_of=20240101")
    assert page.status_code == 400
    assert _console_error(page.text) == (
        "as_of 20240101 looks like a date: write it 2024-01-01 (or as Unix seconds, 1704067200)."
    )
    page = admin_client.get("/console/events?source=nope")
    assert page.status_code == 200
    assert 'No source named <span class="mono">nope</span> is configured' in page.text


# --- names that name nothing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["events", "list", "--source", "nope"],
        ["dlq", "list", "--source", "nope"],
        ["dlq", "replay", "--all", "--source", "nope", "--dry-run"],
        ["sample", "--source", "nope"],
    ],
)
def test_an_unknown_source_is_an_error_naming_the_known_ones(cli_env, client, capsys, argv):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert f"hookledger: no source named 'nope'; known sources: {SOURCES}" in plain(err)


def test_unknown_statuses_and_targets_are_errors_naming_the_known_ones(cli_env, client, capsys):
    code, _, err = run(["events", "list", "--status", "lost"], capsys)
    assert code == 2
    assert "invalid choice: 'lost' (choose from 'received', 'processed'" in err
    code, _, err = run(["signals", "list", "--target", "nope"], capsys)
    assert code == 2
    assert "hookledger: no target named 'nope'; known targets: none are configured" in plain(err)
    code, _, err = run(["signals", "pause", "nope"], capsys)
    assert code == 2
    assert "no target named 'nope'" in err


def test_a_source_no_longer_configured_is_known_by_its_events(
    cli_env, runtime, three_events, capsys
):
    with runtime.engine.begin() as conn:
        conn.execute(
            text("UPDATE inbound_events SET source = 'retired' WHERE id = :id"),
            {"id": three_events[0]},
        )
    code, out, err = run(["events", "list", "--source", "retired", "--json"], capsys)
    assert (code, err) == (0, "")
    assert [e["event_id"] for e in json.loads(out)] == [three_events[0]]


# --- events list says when it cut the list -------------------------------------------------------


def test_events_list_says_when_it_cut_the_list(cli_env, three_events, capsys):
    code, out, err = run(["events", "list", "--limit", "2"], capsys)
    assert code == 0
    assert "(2 events)" in out
    assert three_events[2] in out and three_events[0] not in out  # the newest two
    assert plain(err).startswith(
        "hookledger: showing the newest 2 events; there are more. See more with --limit N "
        "(up to 100000), or narrow the list with --source, --status, --since or --until "
        "(e.g. --until "
    )
    code, out, err = run(["events", "list", "--limit", "2", "--json"], capsys)
    assert [e["event_id"] for e in json.loads(out)] == three_events[:0:-1]  # stdout stays JSON
    assert "there are more" in err
    code, out, err = run(["events", "list", "--limit", "3"], capsys)
    assert (code, err) == (0, "")
    assert "(3 events)" in out


# --- a closed pipe ends quietly ------------------------------------------------------------------


def _with_closed_pipe(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``hookledger ARGS`` with its stdout a pipe whose reader has gone; exit code, stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first byte is written
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_writing_to_a_closed_pipe_ends_quietly(env, runtime, three_events):
    for args, exit_code in (
        (("events", "list"), 1),
        (("ledger", "export", "--from", "2000-01-01", "--to", "2999-12-31"), 1),
        (("--help",), 0),  # argparse drops what it cannot write, and exits 0
    ):
        code, err = _with_closed_pipe(env, *args)
        logs = [line for line in err.splitlines() if not line.startswith("{")]
        assert logs == [], f"{args}: {err}"
        assert code == exit_code, args
    shell = subprocess.run(
        [
            "sh",
            "-c",
            f"{sys.executable} -m app.cli ledger export --from 2000-01-01 "
            "--to 2999-12-31 --format json | head -c 1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shell.stdout == "["
    assert "Traceback" not in shell.stderr and "Exception ignored" not in shell.stderr


# --- no internals, no doubled words, anywhere ----------------------------------------------------


def _literals(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_message_in_the_code_doubles_a_word_or_hints_at_python():
    """Every string literal of app/ and workers/ (the JSON parser's messages aside, and
    multi-line program text such as Lua scripts), and the text of every console template."""
    found = []
    files = [
        p
        for p in [*(ROOT / "app").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]
        if p.name != "jsonparse.py"
    ]
    for path in files:
        for line, value in _literals(path):
            if "\n" in value.strip() or value.startswith("redis.call"):
                continue  # docstrings and scripts: not messages
            if _DOUBLED.search(value) or re.search(r"utf-8-sig|decode using", value):
                found.append(f"{path.relative_to(ROOT)}:{line}: {value[:80]!r}")
    for path in (ROOT / "app" / "console" / "templates").glob("*.html"):
        words = re.sub(r"<[^>]+>|\{[{%#].*?[}%#]\}", " ", path.read_text(encoding="utf-8"))
        if match := _DOUBLED.search(words):
            found.append(f"{path.relative_to(ROOT)}: {match.group(0)!r}")
    assert found == []
