"""Database: lock_slot, the rows the named locks of MySQL/MariaDB take.

See :class:`alarmer.db.dialect.LockSlot`.  The rows are created on every
backend so that the schema is the same everywhere.

Revision ID: d0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("db",)
depends_on: Sequence[str] | None = None

#: alarmer.db.dialect.LOCK_SLOTS when this revision was written.
SLOTS = 1024


def upgrade() -> None:
    table = op.create_table(
        "lock_slot",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_lock_slot")),
    )
    op.bulk_insert(table, [{"slot": slot} for slot in range(SLOTS)])


def downgrade() -> None:
    op.drop_table("lock_slot")
