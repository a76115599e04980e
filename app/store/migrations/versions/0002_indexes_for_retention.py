"""Indexes for retention

The sweeper's retention (``[retention]``) works oldest first in small batches: the raw bodies
not yet pruned (a partial index on ``received_at``: a pruned event leaves it), attempts by
when they finished and delivery logs by when they were sent. Without them every batch would
scan what the batches before it already handled.

Additive: processes of revision 0001 run unchanged beside it. On PostgreSQL each CREATE INDEX
holds off writes to its table while it builds (under a second per million rows of
``inbound_events`` on the development machine); receipts wait, they are not refused.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
ADDITIVE = True

_UNPRUNED = sa.text("body_pruned_at IS NULL")


def upgrade() -> None:
    op.create_index("ix_event_attempts_finished", "event_attempts", ["finished_at"])
    op.create_index(
        "ix_inbound_unpruned",
        "inbound_events",
        ["received_at"],
        postgresql_where=_UNPRUNED,
        sqlite_where=_UNPRUNED,
    )
    op.create_index("ix_signal_attempts_at", "signal_attempts", ["at"])


def downgrade() -> None:
    op.drop_index("ix_signal_attempts_at", table_name="signal_attempts")
    op.drop_index("ix_inbound_unpruned", table_name="inbound_events")
    op.drop_index("ix_event_attempts_finished", table_name="event_attempts")
