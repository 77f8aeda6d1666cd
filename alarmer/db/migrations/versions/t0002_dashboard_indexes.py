"""Telemetry: an index counting alarms per project and state.

The dashboard's counts and the ``alarmer_alarms`` gauge read it instead
of the alarm rows.  The change token reads ``ix_alarm_history_timestamp``
(created on the alarms branch, by ``a0002``, which this one follows) or
the per-project history index.

Revision ID: t0002
Revises: t0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "t0002"
down_revision: str | None = "t0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = ("a0002",)


def upgrade() -> None:
    op.create_index(
        "ix_alarm_project_id_state",
        "alarm",
        ["project_id", "state", "enabled", "version"],
    )


def downgrade() -> None:
    op.drop_index("ix_alarm_project_id_state", table_name="alarm")
