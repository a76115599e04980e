"""Indexes for gaps

``hookledger gaps``, ``GET /admin/gaps``, the ``hookledger_gaps`` gauge and the sweeper's
pulls ask each kind for what should have happened and has not. Each asks through a partial
index that holds only the aggregates still open, so the query reads those and never the
millions of finished ones: HTX orders not in a final state (by source and last change), PingPong
contracts neither settled nor canceled (by source and value date), TRON energy rental orders
still created (status 0; by source and when they were placed).

Additive: processes of revision 0003 run unchanged beside it. On PostgreSQL each CREATE INDEX
holds off writes to its table while it builds; workers applying events wait, receipts do not
(they write ``inbound_events`` only).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
ADDITIVE = True

_OPEN_ORDER = sa.text("state NOT IN ('filled', 'canceled', 'partial-canceled', 'rejected')")
_OPEN_CONTRACT = sa.text("status NOT IN ('settled', 'canceled')")
_STILL_CREATED = sa.text("status = 0")


def upgrade() -> None:
    op.create_index(
        "ix_orders_open",
        "orders",
        ["source", "updated_at"],
        postgresql_where=_OPEN_ORDER,
        sqlite_where=_OPEN_ORDER,
    )
    op.create_index(
        "ix_contracts_open",
        "contracts",
        ["source", "value_date"],
        postgresql_where=_OPEN_CONTRACT,
        sqlite_where=_OPEN_CONTRACT,
    )
    op.create_index(
        "ix_rental_orders_created",
        "rental_orders",
        ["source", "platform_ts_ms"],
        postgresql_where=_STILL_CREATED,
        sqlite_where=_STILL_CREATED,
    )


def downgrade() -> None:
    op.drop_index("ix_rental_orders_created", table_name="rental_orders")
    op.drop_index("ix_contracts_open", table_name="contracts")
    op.drop_index("ix_orders_open", table_name="orders")
