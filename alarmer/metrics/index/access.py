"""Who may see what in the index (Gnocchi's rules).

A caller acts with a user and a project; its *creator* string is what
Gnocchi records on what it creates and what non-UUID resource ids are
mapped with.  A project sees the resources it created and those created
for it (``project_id``); a caller without a project sees what its user
created; an admin sees everything.  An alarm reads as its project does
(:func:`seen_by`, :func:`metric_scope`): the resources of the project,
the metrics it created and those of its resources.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from alarmer.metrics.index.schema import Metric, ResourceModel


def creator_of(user_id: str | None, project_id: str | None) -> str | None:
    """The creator string Gnocchi records: ``user:project``.

    A missing part is the empty string (``alice:``, ``:p1``), as
    Gnocchi's identity of a request from its ``X-User-Id`` and
    ``X-Project-Id`` headers; None when both are missing.
    """
    if user_id is None and project_id is None:
        return None
    return f"{user_id or ''}:{project_id or ''}"


@dataclasses.dataclass
class Caller:
    """Who acts on the index: fills ``created_by_*`` and scopes reads."""

    user_id: str | None
    project_id: str | None
    is_admin: bool = False

    @property
    def creator(self) -> str | None:
        """Gnocchi's creator string of this caller."""
        return creator_of(self.user_id, self.project_id)


def project_scope(project_id: str | None) -> sa.ColumnElement[bool]:
    """Where-clause of the resources a project may see (Gnocchi's rule).

    A project sees the resources it created and those created for it.
    """
    if project_id is None:
        return sa.false()
    return sa.or_(
        ResourceModel.created_by_project_id == project_id,
        ResourceModel.project_id == project_id,
    )


def visible(caller: Caller) -> sa.ColumnElement[bool]:
    """Where-clause of the resources *caller* may see."""
    if caller.is_admin:
        return sa.true()
    if caller.project_id is None:
        return ResourceModel.created_by_user_id == caller.user_id
    return project_scope(caller.project_id)


def can_access(caller: Caller, row: ResourceModel) -> bool:
    """True when *caller* may read or change the resource *row*."""
    if caller.is_admin:
        return True
    if caller.project_id is None:
        return (
            caller.user_id is not None
            and row.created_by_user_id == caller.user_id
        )
    return caller.project_id in (row.project_id, row.created_by_project_id)


def seen_by(project_id: str | None, *owners: str | None) -> bool:
    """True when *project_id* is one of the *owners* of something.

    The owners of a resource are its ``project_id`` and its
    ``created_by_project_id``; those of a metric its own
    ``created_by_project_id`` and the owners of the resource it is
    attached to (a project reads a metric of its resource through the
    resource).  No project sees nothing.
    """
    return project_id is not None and project_id in owners


def metric_scope(project_id: str | None) -> sa.ColumnElement[bool]:
    """Where-clause of the metrics a project may read (see :func:`seen_by`).

    A metric is the project's when the project created it or when it is
    attached to a resource the project may see.
    """
    if project_id is None:
        return sa.false()
    return sa.or_(
        Metric.created_by_project_id == project_id,
        Metric.resource_id.in_(
            sa.select(ResourceModel.id).where(project_scope(project_id))
        ),
    )
