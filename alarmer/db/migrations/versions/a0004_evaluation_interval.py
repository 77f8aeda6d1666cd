"""Alarms: a per-alarm evaluation interval.

Revision ID: a0004
Revises: a0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a0004"
down_revision: str | None = "a0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alarm") as batch:
        batch.add_column(sa.Column("evaluation_interval", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("alarm") as batch:
        batch.drop_column("evaluation_interval")
