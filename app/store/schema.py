"""The database schema's version: Alembic revisions in ``app/store/migrations/versions``.

Every schema change is a revision. ``upgrade`` brings a database to the code's revision (an
empty database gets the whole schema; a database made by release 0.1.0, which has the tables
but no revision, is adopted: it is exactly the baseline revision, so it is stamped with it and
upgraded from there). ``state`` compares a database with the code, and ``require_current``
refuses a database behind or ahead of it: the web, worker and sweeper processes call it at
start, so no process ever runs against a schema it was not written for.

One upgrader at a time: the upgrade runs in one transaction under a lock (an advisory lock on
PostgreSQL, SQLite's write lock), so processes started together on a fresh database
(``hookledger up``, a rolling deploy's first hosts) all succeed, and each revision is all or
nothing on PostgreSQL, whose DDL is transactional.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from app.errors import HookledgerError

BASELINE = "0001"
UPGRADE_HINT = "run `hookledger db upgrade`"
# The tables a database made by release 0.1.0 has (the baseline revision's tables).
RELEASE_0_1_0_TABLES = frozenset(
    {
        "account_balances",
        "contract_events",
        "contracts",
        "deposits",
        "event_actions",
        "event_attempts",
        "hookledger_meta",
        "inbound_events",
        "journal_entries",
        "order_events",
        "orders",
        "postings",
        "rental_orders",
        "signal_attempts",
        "signals",
        "target_states",
        "trades",
    }
)
_LOCK_ID = 7414001  # pg_advisory_xact_lock key for schema changes

Status = Literal["current", "behind", "ahead", "empty", "unversioned"]


class SchemaMismatch(HookledgerError):
    """The database's schema revision is not the code's (behind, ahead, or none)."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database stands against the code."""

    database: tuple[str, ...]  # the revisions stamped in the database (one, or none)
    code: tuple[str, ...]  # the code's head revision(s)
    status: Status

    def describe(self) -> str:
        """One line for people: what the database holds and what the code expects."""
        held = ", ".join(self.database) or "none"
        wanted = ", ".join(self.code)
        match self.status:
            case "current":
                return f"the database is at revision {held}, the code's"
            case "empty":
                return f"the database has no hookledger tables yet (the code is at {wanted})"
            case "unversioned":
                return (
                    "the database was made by release 0.1.0 and has no revision yet "
                    f"(the code is at {wanted})"
                )
            case "behind":
                return f"the database is at revision {held}, behind the code's {wanted}"
            case "ahead":
                return (
                    f"the database is at revision {held}, which this code does not know: it was "
                    f"upgraded by a newer release (this code is at {wanted})"
                )


@dataclass(frozen=True, slots=True)
class Revision:
    """One revision, for ``hookledger db history``."""

    revision: str
    down_revision: str | None
    message: str
    additive: bool  # safe while processes of the previous revision still run


def alembic_config(connection: Connection | None = None, **attributes: Any) -> Config:
    """Alembic's configuration, running its revisions on ``connection``."""
    config = Config()
    config.set_main_option("script_location", "app.store:migrations")
    config.attributes["connection"] = connection
    config.attributes.update(attributes)
    return config


def scripts() -> ScriptDirectory:
    """The revisions the code carries."""
    return ScriptDirectory.from_config(alembic_config())


def code_heads() -> tuple[str, ...]:
    """The code's head revision(s): what ``upgrade`` brings a database to."""
    return tuple(sorted(scripts().get_heads()))


def history() -> list[Revision]:
    """Every revision, oldest first."""
    revisions = list(scripts().walk_revisions())
    revisions.reverse()
    return [
        Revision(
            revision=r.revision,
            down_revision=r.down_revision if isinstance(r.down_revision, str) else None,
            message=(r.doc or "").strip().splitlines()[0] if r.doc else "",
            additive=bool(getattr(r.module, "ADDITIVE", False)),
        )
        for r in revisions
    ]


def _state(connection: Connection) -> SchemaState:
    heads = code_heads()
    database = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    if not database:
        tables = set(inspect(connection).get_table_names())
        if "inbound_events" in tables:
            return SchemaState(database, heads, "unversioned")
        return SchemaState(database, heads, "empty")
    if database == heads:
        return SchemaState(database, heads, "current")
    known = scripts()
    for revision in database:
        try:
            found = known.get_revision(revision)
        except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
            found = None
        if found is None:
            return SchemaState(database, heads, "ahead")
    return SchemaState(database, heads, "behind")


def state(engine: Engine) -> SchemaState:
    """Compare the database behind ``engine`` with the code."""
    with engine.connect() as connection:
        return _state(connection)


def require_current(engine: Engine) -> None:
    """Raise ``SchemaMismatch`` unless the database is at the code's revision."""
    found = state(engine)
    if found.status != "current":
        raise SchemaMismatch(f"{found.describe()}: {UPGRADE_HINT}")


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, the write lock (app.store.db)
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_ID})
        yield connection


Progress = Callable[[str], None]


def upgrade(engine: Engine, target: str = "head", *, progress: Progress | None = None) -> None:
    """Bring the database to ``target`` (the code's head by default), in one transaction.

    A database made by release 0.1.0 is adopted first (see the module docstring); a database
    ahead of the code is refused (``SchemaMismatch``): this code cannot know what a newer
    release changed."""
    say = progress or (lambda _line: None)
    with _locked(engine) as connection:
        found = _state(connection)
        if found.status == "ahead":
            raise SchemaMismatch(
                f"{found.describe()}; upgrade with the newer release, or restore a backup"
            )
        if found.status == "unversioned":
            _adopt(connection, say)
        config = alembic_config(connection, on_step=say)
        command.upgrade(config, target)


def downgrade(engine: Engine, target: str, *, progress: Progress | None = None) -> None:
    """Take the database back to ``target`` (a revision, or ``base``: no tables at all)."""
    with _locked(engine) as connection:
        command.downgrade(
            alembic_config(connection, on_step=progress or (lambda _line: None)), target
        )


def _adopt(connection: Connection, say: Progress) -> None:
    """Stamp a 0.1.0 database (made by ``create_all``) with the baseline revision.

    Release 0.1.0's schema is the baseline revision exactly, on both databases (compared when
    the baseline was written, and tested on a database 0.1.0 made: tests/migrations). A
    database missing any of 0.1.0's tables is not one it made, and is refused."""
    missing = sorted(RELEASE_0_1_0_TABLES - set(inspect(connection).get_table_names()))
    if missing:
        raise SchemaMismatch(
            "the database has hookledger tables but no revision, and lacks "
            f"{', '.join(missing)}: it is not a database release 0.1.0 made; "
            "restore it from a backup, or start from an empty database"
        )
    say(f"adopting a release 0.1.0 database: stamping revision {BASELINE}")
    command.stamp(alembic_config(connection), BASELINE)


def log_steps(config: Config) -> Callable[..., None]:
    """The ``on_version_apply`` hook of the environment: reports each step taken."""
    say: Progress = config.attributes.get("on_step") or (lambda _line: None)

    def on_apply(*, step: Any, **_kw: Any) -> None:
        doc = (step.up_revision.doc or "").strip().splitlines()
        what = doc[0] if doc else ""
        if step.is_upgrade:
            say(f"upgraded to {step.up_revision_id}: {what}")
        else:
            below = ", ".join(step.down_revision_ids) or "base"
            say(f"downgraded {step.up_revision_id} ({what}) to {below}")

    return on_apply


logging.getLogger("alembic").setLevel(logging.WARNING)  # the steps are reported through `say`
