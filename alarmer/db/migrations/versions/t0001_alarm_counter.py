"""Telemetry: alarm_counter, evaluation results per alarm and state.

Revision ID: t0001
Revises:
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("telemetry",)
depends_on: Sequence[str] | None = ("a0001",)


def upgrade() -> None:
    op.create_table(
        "alarm_counter",
        sa.Column("alarm_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column(
            "value",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "alarm_id", "state", name=op.f("pk_alarm_counter")
        ),
    )
    op.create_index(
        "ix_alarm_counter_project_id", "alarm_counter", ["project_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_alarm_counter_project_id", table_name="alarm_counter")
    op.drop_table("alarm_counter")
