"""Notifier tables: delivery, delivery_attempt, notification_expansion.

On PostgreSQL a statement trigger on ``notification`` sends
``NOTIFY alarmer_outbox`` so that notifiers of every process wake up as
soon as an outbox row is committed.

Revision ID: n0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alarmer.db

revision: str = "n0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("notifier",)
depends_on: Sequence[str] | None = ("a0001",)

DT = alarmer.db.UTCDateTime
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_TRIGGER = """
CREATE OR REPLACE FUNCTION alarmer_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('alarmer_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER alarmer_outbox_notify AFTER INSERT ON notification
    FOR EACH STATEMENT EXECUTE FUNCTION alarmer_outbox_notify();
"""


def upgrade() -> None:
    op.create_table(
        "delivery",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("notification_id", BIGINT, nullable=False),
        sa.Column("alarm_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(36), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", DT(), nullable=False),
        sa.Column("dead_after", DT(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claim_token", sa.String(36), nullable=True),
        sa.Column("claim_expires_at", DT(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", DT(), nullable=False),
        sa.Column("updated_at", DT(), nullable=False),
        sa.Column("delivered_at", DT(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name=op.f("fk_delivery_notification_id_notification"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_delivery_status_next_attempt_at",
        "delivery",
        ["status", "next_attempt_at"],
    )
    op.create_index("ix_delivery_stream_seq", "delivery", ["stream", "seq"])
    op.create_index(
        "ix_delivery_status_stream_seq",
        "delivery",
        ["status", "stream", "seq"],
    )
    op.create_index(
        "ix_delivery_alarm_id_seq", "delivery", ["alarm_id", "seq"]
    )
    op.create_index(
        "ix_delivery_notification_id", "delivery", ["notification_id"]
    )

    op.create_table(
        "delivery_attempt",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("attempted_at", DT(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt")),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
            name=op.f("fk_delivery_attempt_delivery_id_delivery"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_delivery_attempt_delivery_id_attempted_at",
        "delivery_attempt",
        ["delivery_id", "attempted_at"],
    )

    op.create_table(
        "notification_expansion",
        sa.Column("notification_id", BIGINT, nullable=False),
        sa.Column("expanded_at", DT(), nullable=False),
        sa.PrimaryKeyConstraint(
            "notification_id", name=op.f("pk_notification_expansion")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name=op.f(
                "fk_notification_expansion_notification_id_notification"
            ),
            ondelete="CASCADE",
        ),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGER)
