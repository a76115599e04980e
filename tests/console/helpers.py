"""Helpers of the console tests: logging in through the form, reading forms back, and making
dead letters the way production does (every attempt fails until the cause is fixed)."""

from __future__ import annotations

import html
import re
from typing import Any

from sqlalchemy import Engine, text

from app.runtime import Runtime
from tests.support import ADMIN_TOKEN, run_jobs
from workers.sweeper import sweep_once

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on ``page``."""
    match = _CSRF.search(page)
    assert match, "no CSRF field on the page"
    return html.unescape(match.group(1))


def login(
    client: Any, *, name: str = "alice", token: str = ADMIN_TOKEN, next_path: str = ""
) -> Any:
    """Log in through the form as a person would; return the POST's answer (not followed)."""
    form = client.get("/console/login")
    data = {"csrf": csrf_of(form.text), "token": token, "name": name}
    if next_path:
        data["next"] = next_path
    return client.post("/console/login", data=data, follow_redirects=False)


def post_form(client: Any, path: str, data: dict[str, str], *, page: str) -> Any:
    """POST a console form with the CSRF token of ``page`` (a page of the same session)."""
    return client.post(path, data={"csrf": csrf_of(page), **data}, follow_redirects=False)


def break_orders(engine: Engine) -> None:
    """Make every insert into ``orders`` fail: a poison condition until ``heal``."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER hl_fail BEFORE INSERT ON orders "
                    "BEGIN SELECT RAISE(ABORT, 'orders are broken'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION hl_fail() RETURNS trigger AS $$ "
                    "BEGIN RAISE EXCEPTION 'orders are broken'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER hl_fail BEFORE INSERT ON orders "
                    "FOR EACH ROW EXECUTE FUNCTION hl_fail()"
                )
            )


def heal(engine: Engine) -> None:
    with engine.begin() as conn:
        suffix = "" if engine.dialect.name == "sqlite" else " ON orders"
        conn.execute(text("DROP TRIGGER IF EXISTS hl_fail" + suffix))


def work_until_dead(runtime: Runtime, rounds: int = 4) -> None:
    """Run the jobs and the sweep (which schedules the retries) until the retries run out."""
    for _ in range(rounds):
        run_jobs(runtime)
        sweep_once(runtime)
