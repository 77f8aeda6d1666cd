"""Every table of the metric index, and its change counter.

As in Gnocchi the index (what exists, who owns it, which policy applies)
lives in the SQL database while the series data live in the engine's
storage driver.  The tables:

* ``archive_policy`` and ``archive_policy_rule``: the policies and the
  rules choosing one for a metric created without one;
* ``metric``: a metric, its policy, its creator and the resource it is
  attached to (by name);
* ``resource_type`` and ``resource_type_attribute``: the declared types
  and their typed attributes;
* ``resource``: the generic columns of every resource;
* ``resource_attribute``: the typed attribute values, one
  entity-attribute-value table with one value column per storage type
  and a composite index ``(attribute_id, value_*, resource_id)`` per
  column: the search "server_group = X" is one index range scan whatever
  the number of resources and types, declaring a type is a plain insert
  (no DDL at run time, so the schema stays the one the migrations
  build), and a null value is the absence of a row;
* ``resource_generation``: one row counting the changes that can alter
  the members of a group (see :func:`bump_generation`);
* ``measure_refusal``: the late measures refused per metric (see
  :func:`record_refusals`).

The schema itself comes from the migrations ``i0001_index``,
``r0001_resources``, ``r0002_resource_generation`` and
``s0001_measure_refusal``; only
:mod:`alarmer.metrics.index` reads and writes these tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer import db as db_mod
from alarmer.db import Base, UTCDateTime
from alarmer.db import dialect as db_dialect

# ----------------------------------------------- policies and metrics --


class ArchivePolicyRow(Base):
    """A named archive policy (Gnocchi's ``archive_policy`` table).

    ``definition`` is Gnocchi's JSON shape, durations in seconds:
    ``[{"granularity": 60, "points": 10080, "timespan": 604800}, ...]``.
    """

    __tablename__ = "archive_policy"

    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    back_window: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False, default=0
    )
    definition: orm.Mapped[list[dict[str, Any]]] = orm.mapped_column(
        sa.JSON, nullable=False
    )
    aggregation_methods: orm.Mapped[list[str]] = orm.mapped_column(
        sa.JSON, nullable=False
    )


class ArchivePolicyRule(Base):
    """Which policy a metric created without one gets, by name pattern."""

    __tablename__ = "archive_policy_rule"

    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    archive_policy_name: orm.Mapped[str] = orm.mapped_column(
        sa.String(255),
        sa.ForeignKey("archive_policy.name", ondelete="RESTRICT"),
        nullable=False,
    )
    metric_pattern: orm.Mapped[str] = orm.mapped_column(
        sa.String(255), nullable=False
    )

    __table_args__ = (
        sa.Index(
            "ix_archive_policy_rule_archive_policy_name",
            "archive_policy_name",
        ),
    )


class Metric(Base):
    """A metric: its id, name, unit, policy, owner and resource."""

    __tablename__ = "metric"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    archive_policy_name: orm.Mapped[str] = orm.mapped_column(
        sa.String(255),
        sa.ForeignKey("archive_policy.name", ondelete="RESTRICT"),
        nullable=False,
    )
    name: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True
    )
    unit: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(31), nullable=True
    )
    resource_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(36), nullable=True
    )
    creator: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True
    )
    created_by_user_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True
    )
    created_by_project_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255), nullable=True
    )
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, nullable=False, default=db_mod.now
    )

    __table_args__ = (
        sa.UniqueConstraint("resource_id", "name"),
        sa.Index("ix_metric_archive_policy_name", "archive_policy_name"),
        sa.Index("ix_metric_created_by_project_id", "created_by_project_id"),
    )


# ---------------------------------------------------------- resources --


class ResourceTypeModel(Base):
    """A declared resource type (``generic`` is created by migration)."""

    __tablename__ = "resource_type"

    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), primary_key=True)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(32))


class ResourceTypeAttributeModel(Base):
    """One typed attribute of a resource type."""

    __tablename__ = "resource_type_attribute"
    __table_args__ = (sa.UniqueConstraint("resource_type", "name"),)

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=True
    )
    resource_type: orm.Mapped[str] = orm.mapped_column(
        sa.String(255),
        sa.ForeignKey("resource_type.name", ondelete="CASCADE"),
    )
    name: orm.Mapped[str] = orm.mapped_column(sa.String(63))
    type: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    required: orm.Mapped[bool] = orm.mapped_column(sa.Boolean)
    options: orm.Mapped[dict[str, Any]] = orm.mapped_column(sa.JSON)


class ResourceModel(Base):
    """A resource: the generic columns."""

    __tablename__ = "resource"
    __table_args__ = (
        sa.Index("ix_resource_type_started_at", "type", "started_at"),
        sa.Index("ix_resource_project_id", "project_id"),
        sa.Index("ix_resource_created_by_project_id", "created_by_project_id"),
        sa.Index("ix_resource_original_resource_id", "original_resource_id"),
    )

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    type: orm.Mapped[str] = orm.mapped_column(
        sa.String(255),
        sa.ForeignKey("resource_type.name", ondelete="RESTRICT"),
    )
    original_resource_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    creator: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    created_by_user_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255)
    )
    created_by_project_id: orm.Mapped[str | None] = orm.mapped_column(
        sa.String(255)
    )
    user_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    project_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    started_at: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime)
    ended_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    revision_start: orm.Mapped[dt.datetime] = orm.mapped_column(UTCDateTime)


class ResourceAttributeModel(Base):
    """The non-null value of one typed attribute of one resource.

    ``string`` and ``uuid`` values go to ``value_str``, ``number`` and
    ``bool`` (0/1) to ``value_num``, ``datetime`` to ``value_dt``.
    """

    __tablename__ = "resource_attribute"
    __table_args__ = (
        sa.Index(
            "ix_resource_attribute_str", "attribute_id", "value_str",
            "resource_id",
        ),
        sa.Index(
            "ix_resource_attribute_num", "attribute_id", "value_num",
            "resource_id",
        ),
        sa.Index(
            "ix_resource_attribute_dt", "attribute_id", "value_dt",
            "resource_id",
        ),
    )  # fmt: skip

    resource_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36),
        sa.ForeignKey("resource.id", ondelete="CASCADE"),
        primary_key=True,
    )
    attribute_id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer,
        sa.ForeignKey("resource_type_attribute.id", ondelete="CASCADE"),
        primary_key=True,
    )
    value_str: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
    value_num: orm.Mapped[float | None] = orm.mapped_column(sa.Double)
    value_dt: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)


#: Where each attribute type stores its value in ``resource_attribute``.
VALUE_COLUMN = {
    "string": "value_str",
    "uuid": "value_str",
    "number": "value_num",
    "bool": "value_num",
    "datetime": "value_dt",
}


class ResourceGenerationModel(Base):
    """One row counting the changes that can alter a group's members.

    Bumped in the same transaction as every resource, attribute, metric
    attachment or type change, so that a cached resolution (see
    :class:`alarmer.metrics.index.groups.ResolutionCache`) is known stale
    by one primary-key read.
    """

    __tablename__ = "resource_generation"

    id: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=False
    )
    value: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)


def bump_generation(session: orm.Session) -> None:
    """Mark the resource index changed (in the caller's transaction)."""
    session.execute(
        sa.update(ResourceGenerationModel)
        .where(ResourceGenerationModel.id == 1)
        .values(value=ResourceGenerationModel.value + 1)
    )


def current_generation(session: orm.Session) -> int:
    """The change counter of the resource index."""
    value = session.scalar(
        sa.select(ResourceGenerationModel.value).where(
            ResourceGenerationModel.id == 1
        )
    )
    return int(value or 0)


class MeasureRefusalModel(Base):
    """Late measures refused for one metric, by every process, ever.

    A measure older than its metric's back window is refused (and
    counted in the push's answer); this row keeps the count and the time
    of the last refusal, so that ``/v1/status`` reports them across
    processes and restarts.  No foreign key: the count outlives its
    metric, as the refusals happened.
    """

    __tablename__ = "measure_refusal"

    metric_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), primary_key=True
    )
    refused: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    last_refused_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, nullable=False
    )


def record_refusals(
    session: orm.Session, counts: Mapping[str, int], when: dt.datetime
) -> None:
    """Add *counts* (late measures refused, by metric) to their rows."""
    table: Any = MeasureRefusalModel.__table__
    for metric_id, count in sorted(counts.items()):
        if count <= 0:
            continue
        db_dialect.for_name(session.get_bind().dialect.name).insert_ignore(
            session,
            table,
            [{"metric_id": metric_id, "refused": 0, "last_refused_at": when}],
        )
        session.execute(
            sa.update(MeasureRefusalModel)
            .where(MeasureRefusalModel.metric_id == metric_id)
            .values(
                refused=MeasureRefusalModel.refused + count,
                last_refused_at=when,
            )
        )
