"""Alarms: silences, and what an alarm owes once unsilenced.

``silence`` holds the silences; ``alarm.notified_state`` is the state of
the alarm's last queued notification and ``alarm.held`` says a silence
held one back, so that the current state is notified once the silence
ends.

Revision ID: a0003
Revises: a0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alarmer.db

revision: str = "a0003"
down_revision: str | None = "a0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

DT = alarmer.db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "silence",
        sa.Column("silence_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255)),
        sa.Column("created_by", sa.String(255)),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", DT()),
        sa.Column("ends_at", DT()),
        sa.Column("recurrence", sa.JSON()),
        sa.Column("created_at", DT(), nullable=False),
        sa.Column("updated_at", DT(), nullable=False),
        sa.PrimaryKeyConstraint("silence_id"),
    )
    op.create_index("ix_silence_ends_at", "silence", ["ends_at"])
    op.create_index(
        "ix_silence_project_id_created_at",
        "silence",
        ["project_id", "created_at"],
    )
    with op.batch_alter_table("alarm") as batch:
        batch.add_column(sa.Column("notified_state", sa.String(32)))
        batch.add_column(sa.Column("held", sa.Boolean()))


def downgrade() -> None:
    with op.batch_alter_table("alarm") as batch:
        batch.drop_column("held")
        batch.drop_column("notified_state")
    op.drop_index("ix_silence_project_id_created_at", "silence")
    op.drop_index("ix_silence_ends_at", "silence")
    op.drop_table("silence")
