"""SQL models of the notifier: deliveries, their attempts, expansions.

A :class:`Delivery` is one notification (an outbox row) to one target.
Its id is derived from ``(alarm_id, seq, target)`` and therefore stable
across retries, crashes and redeliveries: it is the ``webhook-id`` the
receiver deduplicates with.  ``stream`` names the ordered sequence of
notifications of one alarm to one target; a delivery is only attempted
once every earlier delivery of its stream is delivered or dead: until
then it is ``waiting``, and the delivery that ends the previous one
makes it ``pending``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer.db import Base, UTCDateTime, now
from notifiers.status import (
    DEAD,
    DELIVERED,
    FINAL,
    IN_FLIGHT,
    OPEN,
    PENDING,
    STATUSES,
    WAITING,
)

__all__ = [
    "DEAD",
    "DELIVERED",
    "FINAL",
    "IN_FLIGHT",
    "OPEN",
    "PENDING",
    "STATUSES",
    "WAITING",
    "Delivery",
    "DeliveryAttempt",
    "NotificationExpansion",
    "delivery_id",
    "stream_id",
]

#: Namespace of the delivery and stream ids (uuid5).
NAMESPACE = uuid.UUID("5b0e4f8e-3c1a-5d7e-9a43-6f1f0c9d2a71")


_NAMESPACE_BYTES = NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))`` without the UUID object.

    (A wave expands thousands of deliveries at once: the object's
    construction and checks cost four times the hash.)
    """
    digest = bytearray(
        hashlib.sha1(
            _NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False
        ).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def delivery_id(alarm_id: str, seq: int, target: str) -> str:
    """Return the stable id of the delivery of *seq* to *target*."""
    return _uuid5(f"{alarm_id}\n{seq}\n{target}")


def stream_id(alarm_id: str, target: str) -> str:
    """Return the id of the ordered stream of *alarm_id* to *target*."""
    return _uuid5(f"{alarm_id}\n{target}")


_BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Delivery(Base):
    """The delivery state of one notification to one target."""

    __tablename__ = "delivery"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    notification_id: orm.Mapped[int] = orm.mapped_column(
        _BIGINT,
        sa.ForeignKey("notification.id", ondelete="CASCADE"),
    )
    alarm_id: orm.Mapped[str] = orm.mapped_column(sa.String(36))
    seq: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    stream: orm.Mapped[str] = orm.mapped_column(sa.String(36))
    target: orm.Mapped[str] = orm.mapped_column(sa.Text)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    attempts: orm.Mapped[int] = orm.mapped_column(sa.Integer, default=0)
    next_attempt_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime)
    #: After this, a failing delivery is dead-lettered instead of retried
    #: (``[notifier] max_age`` after creation or redelivery).
    dead_after: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime)
    claimed_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    #: The notifier slot of the claimer (see :mod:`notifiers.owner`): the
    #: next process of that slot requeues the claim at once.
    claim_owner: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    claim_token: orm.Mapped[str | None] = orm.mapped_column(sa.String(36))
    claim_expires_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        UTCDateTime
    )
    last_status_code: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )
    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )
    delivered_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(
        UTCDateTime
    )

    __table_args__ = (
        sa.Index(
            "ix_delivery_status_next_attempt_at", "status", "next_attempt_at"
        ),
        sa.Index("ix_delivery_stream_seq", "stream", "seq"),
        # Open deliveries of given streams (expansion, promotion), whatever
        # the planner believes about how many rows have a status.
        sa.Index("ix_delivery_status_stream_seq", "status", "stream", "seq"),
        sa.Index("ix_delivery_alarm_id_seq", "alarm_id", "seq"),
        sa.Index("ix_delivery_notification_id", "notification_id"),
        # Retention: the oldest delivered (or dead) deliveries.
        sa.Index("ix_delivery_status_updated_at", "status", "updated_at"),
    )


class DeliveryAttempt(Base):
    """One attempt of a delivery: when, answer, error, duration."""

    __tablename__ = "delivery_attempt"

    id: orm.Mapped[int] = orm.mapped_column(
        _BIGINT, primary_key=True, autoincrement=True
    )
    delivery_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), sa.ForeignKey("delivery.id", ondelete="CASCADE")
    )
    attempted_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime)
    status_code: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)
    error: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    duration_ms: orm.Mapped[float] = orm.mapped_column(sa.Float)
    outcome: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    worker: orm.Mapped[str] = orm.mapped_column(sa.String(64))

    __table_args__ = (
        sa.Index(
            "ix_delivery_attempt_delivery_id_attempted_at",
            "delivery_id",
            "attempted_at",
        ),
    )


class NotificationExpansion(Base):
    """Marks an outbox row whose deliveries were created.

    The notifier looks for outbox rows without such a mark; the primary
    key makes the expansion idempotent when several notifiers race.
    """

    __tablename__ = "notification_expansion"

    notification_id: orm.Mapped[int] = orm.mapped_column(
        _BIGINT,
        sa.ForeignKey("notification.id", ondelete="CASCADE"),
        primary_key=True,
    )
    expanded_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )
