"""Telemetry: alarms are counted per state from an index.

``/metrics`` counts the alarms per state and enabled flag again whenever
an alarm changed since the last scrape.  Without an index holding both
columns that count reads every alarm row (the rules make them wide);
with this one it reads index entries only.

Revision ID: t0004
Revises: t0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "t0004"
down_revision: str | None = "t0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_alarm_state_enabled", "alarm", ["state", "enabled"])


def downgrade() -> None:
    op.drop_index("ix_alarm_state_enabled", table_name="alarm")
