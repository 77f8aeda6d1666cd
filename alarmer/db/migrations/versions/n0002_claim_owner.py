"""Notifier: the lasting owner of a delivery claim.

``delivery.claim_owner`` names the notifier slot (host, name, slot
number) that claimed an in-flight delivery; it survives the process, so
that the next process of the slot requeues the claims of a crashed one
at once instead of after ``claim_timeout``.

Revision ID: n0002
Revises: n0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "n0002"
down_revision: str | None = "n0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("claim_owner", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("claim_owner")
