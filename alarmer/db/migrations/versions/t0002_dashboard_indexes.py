"""Telemetry: indexes counting alarms per project and state, and
finding the newest change of any alarm.

The dashboard's counts and the ``alarmer_alarms`` gauge read the first
instead of the alarm rows; the change token reads the second (or the
per-project history index) in one step.

Revision ID: t0002
Revises: t0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "t0002"
down_revision: str | None = "t0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_alarm_project_id_state",
        "alarm",
        ["project_id", "state", "enabled", "version"],
    )
    op.create_index(
        "ix_alarm_history_timestamp", "alarm_history", ["timestamp"]
    )


def downgrade() -> None:
    op.drop_index("ix_alarm_history_timestamp", table_name="alarm_history")
    op.drop_index("ix_alarm_project_id_state", table_name="alarm")
