"""Alarm tables: alarm, alarm_history, quota, api_key, notification.

Revision ID: a0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alarmer.db

revision: str = "a0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("alarms",)
depends_on: Sequence[str] | None = None

DT = alarmer.db.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "alarm",
        sa.Column("alarm_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("state_timestamp", DT(), nullable=False),
        sa.Column("timestamp", DT(), nullable=False),
        sa.Column("evaluate_timestamp", DT(), nullable=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("ok_actions", sa.JSON(), nullable=False),
        sa.Column("alarm_actions", sa.JSON(), nullable=False),
        sa.Column("insufficient_data_actions", sa.JSON(), nullable=False),
        sa.Column("repeat_actions", sa.Boolean(), nullable=False),
        sa.Column("time_constraints", sa.JSON(), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("alarm_id", name=op.f("pk_alarm")),
    )
    op.create_index(
        "ix_alarm_project_id_timestamp",
        "alarm",
        ["project_id", "timestamp", "alarm_id"],
    )
    op.create_index("ix_alarm_timestamp", "alarm", ["timestamp", "alarm_id"])
    op.create_index("ix_alarm_enabled_type", "alarm", ["enabled", "type"])

    op.create_table(
        "alarm_history",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("alarm_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("on_behalf_of", sa.String(255), nullable=True),
        sa.Column("severity", sa.String(16), nullable=True),
        sa.Column("timestamp", DT(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_alarm_history")),
    )
    op.create_index(
        "ix_alarm_history_alarm_id_timestamp",
        "alarm_history",
        ["alarm_id", "timestamp", "event_id"],
    )
    op.create_index(
        "ix_alarm_history_on_behalf_of_timestamp",
        "alarm_history",
        ["on_behalf_of", "timestamp"],
    )

    op.create_table(
        "quota",
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(50), nullable=False),
        sa.Column("limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "project_id", "resource", name=op.f("pk_quota")
        ),
    )

    op.create_table(
        "api_key",
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", DT(), nullable=False),
        sa.Column("expires_at", DT(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_key_key_hash")),
    )

    op.create_table(
        "notification",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alarm_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("alarm_name", sa.String(255), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("previous", sa.String(32), nullable=False),
        sa.Column("current", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reason_data", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("created_at", DT(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint(
            "alarm_id", "seq", name=op.f("uq_notification_alarm_id_seq")
        ),
    )
    op.create_index(
        "ix_notification_created_at", "notification", ["created_at"]
    )
