"""Alarms: lifecycle options, their bookkeeping, history retention.

``repeat_interval``, ``missing_data``, ``keep_firing_for`` and
``pending_for`` are optional per-alarm options (unset: Aodh's
behaviour); ``notified_at``, ``pending_since`` and ``clearing_since``
are what the evaluator remembers between evaluations to apply them.
``ix_alarm_history_timestamp`` lets retention find the oldest history
entries without a scan.

Revision ID: a0002
Revises: a0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alarmer.db

revision: str = "a0002"
down_revision: str | None = "a0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

DT = alarmer.db.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("alarm") as batch:
        batch.add_column(sa.Column("repeat_interval", sa.Integer()))
        batch.add_column(sa.Column("missing_data", sa.String(32)))
        batch.add_column(sa.Column("keep_firing_for", sa.Integer()))
        batch.add_column(sa.Column("pending_for", sa.Integer()))
        batch.add_column(sa.Column("notified_at", DT()))
        batch.add_column(sa.Column("pending_since", DT()))
        batch.add_column(sa.Column("clearing_since", DT()))
    op.create_index(
        "ix_alarm_history_timestamp", "alarm_history", ["timestamp"]
    )


def downgrade() -> None:
    op.drop_index("ix_alarm_history_timestamp", "alarm_history")
    with op.batch_alter_table("alarm") as batch:
        for name in (
            "clearing_since",
            "pending_since",
            "notified_at",
            "pending_for",
            "keep_firing_for",
            "missing_data",
            "repeat_interval",
        ):
            batch.drop_column(name)
