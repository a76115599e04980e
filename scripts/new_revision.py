"""Write a new schema revision from the models: ``python scripts/new_revision.py "what it does"``.

Brings a scratch SQLite database to the current head, compares it with the models
(``app/store/models.py`` and every kind's ``tables.py``) and writes what differs as
``app/store/migrations/versions/<NNNN>_<slug>.py``. Read and finish it: autogenerate does not
see renames, CHECK constraints or PostgreSQL's functions, and a revision must say in its
docstring whether it is additive (``ADDITIVE = True``: safe beside processes of the revision
before it) or needs every process stopped. ``tests/migrations`` then checks that the models and
the revisions agree and that the revision goes up and down on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

import app.kinds  # noqa: F401 - every source kind's tables, on the metadata
from app.store import schema
from app.store.db import make_engine


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].strip():
        print('usage: python scripts/new_revision.py "what the revision does"', file=sys.stderr)
        return 2
    number = f"{len(schema.history()) + 1:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        schema.upgrade(engine)
        with engine.begin() as connection:
            config = schema.alembic_config(connection)
            command.revision(config, message=sys.argv[1], autogenerate=True, rev_id=number)
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
