"""``hookledger db``: the database schema's revision.

    hookledger db upgrade [--to REV]  bring the database to the code's revision (or REV)
    hookledger db current             the database's revision and the code's
    hookledger db check               exit 1 unless they are the same
    hookledger db history             every revision, oldest first

A database made by release 0.1.0 has no revision; ``upgrade`` adopts it (see
``app.store.schema``). ``web``, ``worker`` and ``sweeper`` refuse a database that is not at
the code's revision (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from app.settings import Settings


def add_parser(sub: Any, settings: Callable[[], Settings]) -> None:
    """Register ``db`` and its verbs on the top-level subparsers ``sub``."""
    p = sub.add_parser(
        "db",
        help="the database schema: upgrade, current, check, history",
        description="The database schema's revision (Alembic). Upgrade before starting a "
        "release's processes; they refuse a database behind or ahead of their code.",
    )
    verbs = p.add_subparsers(dest="db_command", required=True, metavar="VERB")
    v = verbs.add_parser(
        "upgrade",
        help="bring the database to the code's revision",
        description="Bring the database to the code's revision, in place, keeping every row: "
        "an empty database gets every table, a release 0.1.0 database is adopted. Safe to run "
        "from several hosts at once (one upgrades, the others wait and find nothing to do).",
    )
    v.add_argument("--to", default="head", metavar="REV", help="a revision (default: head)")
    v.set_defaults(func=lambda args: run(settings(), args))
    for name, text in (
        ("current", "print the database's revision and the code's"),
        ("check", "exit 1 unless the database is at the code's revision"),
        ("history", "list every revision, oldest first"),
    ):
        verbs.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + "."
        ).set_defaults(func=lambda args: run(settings(), args))


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.store import schema

    if args.db_command == "history":
        return _history(schema)
    import app.kinds  # noqa: F401 - every source kind's tables, on the metadata
    from app.store.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        if args.db_command == "upgrade":
            return _upgrade(schema, engine, args.to)
        found = schema.state(engine)
        if args.db_command == "current":
            print(f"database: {', '.join(found.database) or 'none'} ({found.status})")
            print(f"code:     {', '.join(found.code)}")
            return 0
        # check
        if found.status == "current":
            print(f"ok: {found.describe()}")
            return 0
        print(f"hookledger: {found.describe()}: {schema.UPGRADE_HINT}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _upgrade(schema: Any, engine: Any, target: str) -> int:
    from alembic.util import CommandError

    before = schema.state(engine)
    try:
        schema.upgrade(engine, target, progress=lambda line: print(line, flush=True))
    except schema.SchemaMismatch as exc:
        print(f"hookledger: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:  # an unknown --to revision
        print(f"hookledger: {exc}", file=sys.stderr)
        return 2
    after = schema.state(engine)
    if before.database == after.database:
        print(f"nothing to do: {after.describe()}")
    else:
        print(f"database at revision {', '.join(after.database)}")
    return 0


def _history(schema: Any) -> int:
    heads = set(schema.code_heads())
    for rev in schema.history():
        marks = " (head)" if rev.revision in heads else ""
        if rev.down_revision is None:
            safety = "baseline"
        else:
            safety = "additive" if rev.additive else "stop every process first"
        print(f"{rev.revision}{marks}  {rev.message}  [{safety}]")
    return 0
