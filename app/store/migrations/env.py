"""Alembic's environment: runs revisions on the connection ``app.store.schema`` hands over.

There is no ``alembic.ini``: ``app.store.schema`` builds the configuration and opens the
connection (inside the schema lock), so ``hookledger db ...`` is the one way in. For a
revision by hand, see docs/development.md.

``target_metadata`` is only read to compare the models with a database (autogenerate, and the
test that models and migrations agree); whoever asks imports ``app.kinds`` first, so every
source kind's tables are on it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from app.store.schema import log_steps


def run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run migrations through app.store.schema (hookledger db upgrade)")
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=True,  # SQLite: ALTERs as copy-and-move batches
        compare_type=True,
        transaction_per_migration=False,
        on_version_apply=log_steps(context.config),
    )
    with context.begin_transaction():
        context.run_migrations()


run()
