"""Metric index: measure_refusal, the late measures refused per metric.

Revision ID: s0001
Revises:
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from alarmer.db import UTCDateTime

revision: str = "s0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("measure_refusal",)
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "measure_refusal",
        sa.Column("metric_id", sa.String(36), nullable=False),
        sa.Column("refused", sa.BigInteger(), nullable=False),
        sa.Column("last_refused_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("metric_id", name=op.f("pk_measure_refusal")),
    )


def downgrade() -> None:
    op.drop_table("measure_refusal")
