"""SQL models of the alarm side: alarm, history, silence, quota, outbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer.alarms import model
from alarmer.db import Base, UTCDateTime, now


class Alarm(Base):
    """An alarm definition and its evaluation state.

    ``version`` grows on every write (API edit or state transition): a
    writer updates ``WHERE version = <the version it read>`` and retries
    or gives up when no row matched.  ``seq`` counts the notifications the
    alarm has produced; together with ``alarm_id`` it names a delivery.
    """

    __tablename__ = "alarm"

    alarm_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), primary_key=True
    )
    version: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False, default=1
    )
    seq: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False, default=0
    )
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    description: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    type: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    rule: orm.Mapped[dict[str, Any]] = orm.mapped_column(sa.JSON)
    enabled: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=True)
    state: orm.Mapped[str] = orm.mapped_column(
        sa.String(32), default=model.INSUFFICIENT_DATA
    )
    state_reason: orm.Mapped[str] = orm.mapped_column(
        sa.Text, default="Not evaluated yet"
    )
    state_timestamp: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )
    timestamp: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )
    evaluate_timestamp: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        UTCDateTime, default=now
    )
    severity: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="low")
    ok_actions: orm.Mapped[list[str]] = orm.mapped_column(sa.JSON)
    alarm_actions: orm.Mapped[list[str]] = orm.mapped_column(sa.JSON)
    insufficient_data_actions: orm.Mapped[list[str]] = orm.mapped_column(
        sa.JSON
    )
    repeat_actions: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean, default=False
    )
    time_constraints: orm.Mapped[list[dict[str, Any]]] = orm.mapped_column(
        sa.JSON
    )
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    # Lifecycle options (all optional; unset means Aodh's behaviour).
    #: Seconds between two re-notifications of an unchanged state.
    repeat_interval: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    #: What missing data means (:data:`model.MISSING_DATA_POLICIES`).
    missing_data: orm.Mapped[str | None] = orm.mapped_column(sa.String(32))
    #: Seconds the alarm stays in ``alarm`` after its condition cleared.
    keep_firing_for: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    #: Seconds the condition must hold before ``alarm``.
    pending_for: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    #: Seconds between two evaluations (unset: ``[evaluator]
    #: evaluation_interval``).
    evaluation_interval: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    # Lifecycle bookkeeping, written by the evaluator.
    #: When the current state was last notified.
    notified_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        UTCDateTime
    )
    #: Since when the condition holds while not yet in ``alarm``.
    pending_since: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        UTCDateTime
    )
    #: Since when the condition is clear while kept in ``alarm``.
    clearing_since: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        UTCDateTime
    )
    #: The state of the last notification queued.
    notified_state: orm.Mapped[str | None] = orm.mapped_column(sa.String(32))
    #: A silence held back a notification not yet sent.
    held: orm.Mapped[bool | None] = orm.mapped_column(sa.Boolean)

    __table_args__ = (
        # The name closes both: a name search reads these entries only
        # (t0003), never the wide rows.
        sa.Index(
            "ix_alarm_project_id_timestamp",
            "project_id",
            "timestamp",
            "alarm_id",
            "name",
        ),
        sa.Index("ix_alarm_timestamp", "timestamp", "alarm_id", "name"),
        sa.Index("ix_alarm_enabled_type", "enabled", "type"),
        # /metrics counts alarms per state from these entries (t0004).
        sa.Index("ix_alarm_state_enabled", "state", "enabled"),
    )


class AlarmHistory(Base):
    """One change of an alarm; kept after the alarm is deleted."""

    __tablename__ = "alarm_history"

    event_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), primary_key=True
    )
    alarm_id: orm.Mapped[str] = orm.mapped_column(sa.String(36))
    type: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    detail: orm.Mapped[str] = orm.mapped_column(sa.Text)
    user_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    project_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    on_behalf_of: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    severity: orm.Mapped[str | None] = orm.mapped_column(sa.String(16))
    timestamp: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )

    __table_args__ = (
        sa.Index(
            "ix_alarm_history_alarm_id_timestamp",
            "alarm_id",
            "timestamp",
            "event_id",
        ),
        sa.Index(
            "ix_alarm_history_on_behalf_of_timestamp",
            "on_behalf_of",
            "timestamp",
        ),
        # Retention removes the oldest entries first.
        sa.Index("ix_alarm_history_timestamp", "timestamp"),
    )


class Silence(Base):
    """A silence: matching alarms' notifications are held while it holds.

    See :mod:`alarmer.alarms.silences`.  ``project_id`` ``None`` (an
    administrator's) covers every project.
    """

    __tablename__ = "silence"

    silence_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), primary_key=True
    )
    project_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    created_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    comment: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    matchers: orm.Mapped[list[dict[str, str]]] = orm.mapped_column(sa.JSON)
    starts_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    ends_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    recurrence: orm.Mapped[dict[str, Any] | None] = orm.mapped_column(sa.JSON)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )
    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )

    __table_args__ = (
        sa.Index("ix_silence_ends_at", "ends_at"),
        sa.Index(
            "ix_silence_project_id_created_at", "project_id", "created_at"
        ),
    )


class Quota(Base):
    """A per-project limit on a resource (only ``alarms`` today)."""

    __tablename__ = "quota"

    project_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), primary_key=True
    )
    resource: orm.Mapped[str] = orm.mapped_column(
        sa.String(50), primary_key=True
    )
    limit: orm.Mapped[int] = orm.mapped_column(sa.Integer)


class Notification(Base):
    """The outbox: one row per notification an alarm produced.

    Written in the same transaction as the state change it announces.
    ``(alarm_id, seq)`` is unique and orders the notifications of one
    alarm; the notifier derives the delivery id from it.
    """

    __tablename__ = "notification"

    id: orm.Mapped[int] = orm.mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    alarm_id: orm.Mapped[str] = orm.mapped_column(sa.String(36))
    seq: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    alarm_name: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    severity: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    previous: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    current: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    reason: orm.Mapped[str] = orm.mapped_column(sa.Text)
    reason_data: orm.Mapped[dict[str, Any]] = orm.mapped_column(sa.JSON)
    actions: orm.Mapped[list[str]] = orm.mapped_column(sa.JSON)
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )

    __table_args__ = (
        sa.UniqueConstraint("alarm_id", "seq"),
        sa.Index("ix_notification_created_at", "created_at"),
    )
