"""Origin, conflicts and pull state

``inbound_events.origin``: ``push`` for a callback the counterpart sent, ``pull`` for an answer
hookledger asked the counterpart's API for (every existing row is a push). ``event_conflicts``:
callbacks with a stored event's idempotency key but another body, kept on the first event.
``pull_state``: where asking a counterpart for one missing thing stands (attempts, backoff,
the last error).

Additive: the column has a server default, so processes of revision 0002 keep inserting
events unchanged; they neither read nor write the new tables.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
ADDITIVE = True

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("inbound_events") as batch:
        batch.add_column(
            sa.Column("origin", sa.String(length=8), server_default="push", nullable=False)
        )
    op.create_table(
        "event_conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("first_at", _WHEN, nullable=False),
        sa.Column("last_at", _WHEN, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["inbound_events.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "body_sha256", name="uq_conflict_event_body"),
    )
    op.create_index("ix_event_conflicts_event_id", "event_conflicts", ["event_id"])
    op.create_table(
        "pull_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("ident", sa.String(length=128), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", _WHEN, nullable=True),
        sa.Column("next_attempt_at", _WHEN, nullable=True),
        sa.Column("last_outcome", sa.String(length=16), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("pulled_event_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "ident", name="uq_pull_source_ident"),
    )
    op.create_index("ix_pull_due", "pull_state", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_pull_due", table_name="pull_state")
    op.drop_table("pull_state")
    op.drop_index("ix_event_conflicts_event_id", table_name="event_conflicts")
    op.drop_table("event_conflicts")
    with op.batch_alter_table("inbound_events") as batch:
        batch.drop_column("origin")
