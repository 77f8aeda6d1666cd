"""Notifier: an index for retention.

``ix_delivery_status_updated_at`` lets a retention pass find the oldest
delivered deliveries and dead letters without a scan.

Revision ID: n0003
Revises: n0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "n0003"
down_revision: str | None = "n0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_delivery_status_updated_at", "delivery", ["status", "updated_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_status_updated_at", "delivery")
