"""Telemetry: the alarm list's indexes carry the alarm's name.

The dashboard's name search (a part of the name, ``LIKE '%...%'``)
cannot seek; with the name in the list's indexes it reads index entries
in the list's order, never the alarm rows, and stops at a full page.

Revision ID: t0003
Revises: t0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "t0003"
down_revision: str | None = "t0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

#: Index name -> (columns before, columns after).
INDEXES = {
    "ix_alarm_project_id_timestamp": (
        ["project_id", "timestamp", "alarm_id"],
        ["project_id", "timestamp", "alarm_id", "name"],
    ),
    "ix_alarm_timestamp": (
        ["timestamp", "alarm_id"],
        ["timestamp", "alarm_id", "name"],
    ),
}


def _recreate(after: bool) -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name="alarm")
        op.create_index(name, "alarm", columns[1 if after else 0])


def upgrade() -> None:
    _recreate(True)


def downgrade() -> None:
    _recreate(False)
