"""Metrics in the index: their value types and the ``metric`` table.

A metric has an id, an archive policy, an optional unit, the project and
user that created it and, when attached to a resource, the resource's id
and the name it has there (unique per resource).  The functions here run
in the caller's transaction; :class:`alarmer.metrics.index.indexer.Indexer`
is what the rest of alarmer calls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer import db as db_mod
from alarmer.metrics import policy as ap
from alarmer.metrics.index import policies
from alarmer.metrics.index.access import Caller, creator_of
from alarmer.metrics.index.errors import (
    NamedMetricAlreadyExists,
    NoSuchArchivePolicy,
    NoSuchMetric,
    ResourceError,
)
from alarmer.metrics.index.schema import (
    ArchivePolicyRow,
    Metric,
    bump_generation,
)

#: Longest metric name and unit (the column sizes).
NAME_MAX = 255
UNIT_MAX = 31
#: Ids per ``IN (...)`` list.
CHUNK = 500


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """One row of the metric index, with its archive policy."""

    id: str
    archive_policy: ap.ArchivePolicy
    name: str | None
    unit: str | None
    resource_id: str | None
    creator: str | None
    created_by_user_id: str | None
    created_by_project_id: str | None
    created_at: dt.datetime

    @property
    def archive_policy_name(self) -> str:
        """Name of the metric's archive policy."""
        return self.archive_policy.name

    def to_dict(self) -> dict[str, Any]:
        """Gnocchi's JSON shape, with the policy expanded."""
        return {
            "id": self.id,
            "creator": self.creator,
            "created_by_user_id": self.created_by_user_id,
            "created_by_project_id": self.created_by_project_id,
            "name": self.name,
            "unit": self.unit,
            "resource_id": self.resource_id,
            "archive_policy_name": self.archive_policy.name,
            "archive_policy": self.archive_policy.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class MetricFilter:
    """Filters of a metric listing (None: no filter).

    ``project_id`` restricts to metrics created by that project;
    ``any_project`` (admins) lifts the restriction.  See
    :meth:`alarmer.metrics.index.indexer.Indexer.list_metrics`.
    """

    any_project: bool = False
    project_id: str | None = None
    ids: Sequence[str] | None = None
    name: str | None = None
    unit: str | None = None
    archive_policy_name: str | None = None
    creator: str | None = None
    user_id: str | None = None
    resource_id: str | None = None


#: Columns a metric listing can be sorted by.
METRIC_SORT_KEYS = (
    "id",
    "name",
    "unit",
    "archive_policy_name",
    "creator",
    "resource_id",
    "created_by_user_id",
    "created_by_project_id",
    "created_at",
)


#: The metric columns, selected without building ORM objects (faster).
METRIC_COLUMNS = tuple(Metric.__table__.columns)


def check_name(name: Any) -> str:
    """Check the name of a metric attached to a resource.

    :raises ResourceError: not a non-empty string without ``/`` of at
        most 255 characters.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ResourceError(
            f"Invalid metric name {name!r}: a non-empty string without '/'"
        )
    if len(name) > NAME_MAX:
        raise ResourceError(
            f"Invalid metric name {name[:40]}...: at most 255 characters"
        )
    return name


def insert_metric(
    session: orm.Session,
    *,
    archive_policy_name: str,
    name: str | None,
    unit: str | None,
    resource_id: str | None,
    user_id: str | None,
    project_id: str | None,
    metric_id: str | None = None,
) -> Metric:
    """Add a metric (flushed, not committed); its creator is Gnocchi's.

    :raises NoSuchArchivePolicy: the policy does not exist.
    :raises NamedMetricAlreadyExists: the resource has a metric *name*.
    """
    if session.get(ArchivePolicyRow, archive_policy_name) is None:
        raise NoSuchArchivePolicy(archive_policy_name)
    if resource_id is not None and name is not None:
        taken = session.scalar(
            sa.select(Metric.id).where(
                Metric.resource_id == resource_id, Metric.name == name
            )
        )
        if taken is not None:
            raise NamedMetricAlreadyExists(name)
    row = Metric(
        id=metric_id or str(uuid.uuid4()),
        archive_policy_name=archive_policy_name,
        name=name,
        unit=unit,
        resource_id=resource_id,
        creator=creator_of(user_id, project_id),
        created_by_user_id=user_id,
        created_by_project_id=project_id,
        created_at=db_mod.now(),
    )
    session.add(row)
    session.flush()
    if resource_id is not None:
        bump_generation(session)
    return row


def attach(
    session: orm.Session,
    metric_id: str,
    resource_id: str,
    name: str,
    caller: Caller,
) -> None:
    """Attach the existing metric *metric_id* of *caller* as *name*.

    :raises NoSuchMetric: absent, or created by another project.
    """
    row = session.get(Metric, metric_id)
    if row is None or not (
        caller.is_admin
        or row.created_by_project_id in (caller.project_id, None)
    ):
        raise NoSuchMetric(metric_id)
    row.resource_id = resource_id
    row.name = name
    session.flush()
    bump_generation(session)


def attach_named(
    session: orm.Session,
    resource_id: str,
    metrics: Any,
    caller: Caller,
    *,
    replace: bool = False,
) -> None:
    """Create or attach the named metrics of a resource.

    Each value of *metrics* is the id of an existing metric of *caller*,
    or an object ``{"archive_policy_name", "unit"}`` creating one (its
    policy chosen by the rules when not named).  With *replace*, the
    metrics of the resource not named are detached.

    :raises ResourceError: bad input, naming the field.
    :raises NamedMetricAlreadyExists: the name is taken.
    :raises NoSuchMetric: an id that is not a metric of the caller.
    :raises NoSuchArchivePolicy: the named policy does not exist.
    :raises NoArchivePolicyForMetric: none named and no rule matches.
    """
    if not isinstance(metrics, dict):
        raise ResourceError(
            "Invalid input for metrics: must be an object mapping metric "
            "names to metric ids or definitions"
        )
    current = names_of(session, [resource_id])[resource_id]
    if replace:
        detach(session, [m for n, m in current.items() if n not in metrics])
        current = {n: m for n, m in current.items() if n in metrics}
    for raw_name, spec in metrics.items():
        name = check_name(raw_name)
        if isinstance(spec, str):
            try:
                metric_id = str(uuid.UUID(spec))
            except ValueError:
                raise ResourceError(
                    f"Invalid input for metrics/{name}: {spec!r} is not a "
                    "metric id"
                ) from None
            if current.get(name) == metric_id:
                continue
            if name in current:
                raise NamedMetricAlreadyExists(name)
            attach(session, metric_id, resource_id, name, caller)
        elif isinstance(spec, dict):
            _create_named(session, resource_id, name, spec, caller,
                          taken=name in current)  # fmt: skip
        else:
            raise ResourceError(
                f"Invalid input for metrics/{name}: a metric id or an "
                "object with archive_policy_name"
            )
    bump_generation(session)


def _create_named(
    session: orm.Session,
    resource_id: str,
    name: str,
    spec: Mapping[str, Any],
    caller: Caller,
    *,
    taken: bool,
) -> None:
    # A "name" in the definition is the key's (gnocchiclient sends it).
    unknown = sorted(set(spec) - {"archive_policy_name", "unit", "name"})
    if unknown:
        raise ResourceError(
            f"Invalid input for metrics/{name}: unknown field {unknown[0]}"
        )
    if taken:
        raise NamedMetricAlreadyExists(name)
    unit = spec.get("unit")
    if unit is not None and (
        not isinstance(unit, str) or len(unit) > UNIT_MAX
    ):
        raise ResourceError(
            f"Invalid input for metrics/{name}/unit: a string of at most "
            f"{UNIT_MAX} characters"
        )
    given = spec.get("archive_policy_name")
    if given is not None and not isinstance(given, str):
        raise ResourceError(
            f"Invalid input for metrics/{name}/archive_policy_name: "
            "must be a string"
        )
    insert_metric(
        session,
        archive_policy_name=policies.choose(session, name, given),
        name=name,
        unit=unit,
        resource_id=resource_id,
        user_id=caller.user_id,
        project_id=caller.project_id,
    )


def detach(session: orm.Session, metric_ids: Sequence[str]) -> None:
    """Detach metrics from their resource (they stay in the index)."""
    if not metric_ids:
        return
    session.execute(
        sa.update(Metric)
        .where(Metric.id.in_(list(metric_ids)))
        .values(resource_id=None)
    )
    bump_generation(session)


def delete_metrics(session: orm.Session, metric_ids: Sequence[str]) -> int:
    """Delete metrics from the index; the number deleted.

    The change counter moves whenever one is deleted: an alarm may read a
    metric by its id, and what it resolved is no longer valid.
    """
    ids = list(dict.fromkeys(metric_ids))
    if not ids:
        return 0
    deleted = 0
    for start in range(0, len(ids), CHUNK):
        result = session.execute(
            sa.delete(Metric).where(Metric.id.in_(ids[start : start + CHUNK]))
        )
        deleted += int(result.rowcount)  # type: ignore[attr-defined]
    if deleted:
        bump_generation(session)
    return deleted


def names_of(
    session: orm.Session, resource_ids: Sequence[str]
) -> dict[str, dict[str, str]]:
    """``{resource id: {metric name: metric id}}`` of *resource_ids*."""
    found: dict[str, dict[str, str]] = {rid: {} for rid in resource_ids}
    for start in range(0, len(resource_ids), CHUNK):
        chunk = list(resource_ids[start : start + CHUNK])
        rows = session.execute(
            sa.select(Metric.resource_id, Metric.name, Metric.id).where(
                Metric.resource_id.in_(chunk)
            )
        )
        for rid, name, mid in rows:
            if rid is not None and name is not None:
                found[rid][name] = mid
    return found


def ids_of_resources(
    session: orm.Session, resource_ids: Sequence[str]
) -> list[str]:
    """Ids of the metrics attached to *resource_ids*."""
    found: list[str] = []
    for start in range(0, len(resource_ids), CHUNK):
        chunk = list(resource_ids[start : start + CHUNK])
        found.extend(
            session.scalars(
                sa.select(Metric.id).where(Metric.resource_id.in_(chunk))
            )
        )
    return found


def by_resource_and_name(
    session: orm.Session, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Metric ids of ``(resource id, metric name)`` *pairs* that exist."""
    wanted = list(dict.fromkeys(pairs))
    found: dict[tuple[str, str], str] = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        rows = session.execute(
            sa.select(Metric.id, Metric.resource_id, Metric.name).where(
                Metric.resource_id.in_({rid for rid, _ in chunk})
            )
        )
        named = {(r.resource_id, r.name): r.id for r in rows}
        for key in chunk:
            if key in named:
                found[key] = named[key]
    return found


def existing_ids(session: orm.Session, metric_ids: Iterable[str]) -> set[str]:
    """Those of *metric_ids* that are in the index."""
    wanted = list(dict.fromkeys(metric_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), CHUNK):
        found.update(
            session.scalars(
                sa.select(Metric.id).where(
                    Metric.id.in_(wanted[start : start + CHUNK])
                )
            )
        )
    return found


def select_rows(
    session: orm.Session, metric_ids: Iterable[str], filters: MetricFilter
) -> list[Any]:
    """Column rows of the metrics among *metric_ids* passing *filters*."""
    ids = list(dict.fromkeys(str(i) for i in metric_ids))
    if not ids:
        return []
    query = sa.select(*METRIC_COLUMNS).where(Metric.id.in_(ids))
    return list(session.execute(filtered(query, filters)).all())


def select_policy_names(
    session: orm.Session, metric_ids: Sequence[str], filters: MetricFilter
) -> list[tuple[str, str]]:
    """(id, archive policy name) of the metrics among *metric_ids*
    passing *filters* (one statement, cached whatever the count)."""
    query = sa.select(Metric.id, Metric.archive_policy_name).where(
        Metric.id.in_(sa.bindparam("metric_ids", expanding=True))
    )
    # Two plain columns: executed on the connection, without the ORM's
    # row loading (a third of the cost for a thousand ids).
    rows = session.connection().execute(
        filtered(query, filters), {"metric_ids": list(metric_ids)}
    )
    return [(metric_id, name) for metric_id, name in rows]


def list_rows(
    session: orm.Session,
    filters: MetricFilter,
    *,
    limit: int | None = None,
    marker: str | None = None,
    sorts: Sequence[tuple[str, str]] = (),
) -> list[Any]:
    """Column rows of the metrics passing *filters*, sorted and paged.

    :raises NoSuchMetric: the marker is not a visible metric.
    :raises ValueError: unknown sort key or direction.
    """
    keys = _sort_keys(sorts)
    query = filtered(sa.select(*METRIC_COLUMNS), filters)
    if marker is not None:
        mark = session.scalar(
            filtered(sa.select(Metric).where(Metric.id == marker), filters)
        )
        if mark is None:
            raise NoSuchMetric(marker)
        query = query.where(_after(keys, mark))
    query = query.order_by(
        *(
            _sort_expr(key).desc()
            if direction == "desc"
            else _sort_expr(key).asc()
            for key, direction in keys
        )
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.execute(query).all())


def count(session: orm.Session) -> int:
    """Number of metrics in the index."""
    return int(
        session.scalar(sa.select(sa.func.count()).select_from(Metric)) or 0
    )


def info_of(row: Any, policy: ap.ArchivePolicy) -> MetricInfo:
    """The :class:`MetricInfo` of a metric row and its policy."""
    return MetricInfo(
        id=row.id,
        archive_policy=policy,
        name=row.name,
        unit=row.unit,
        resource_id=row.resource_id,
        creator=row.creator,
        created_by_user_id=row.created_by_user_id,
        created_by_project_id=row.created_by_project_id,
        created_at=row.created_at,
    )


def filtered(query: sa.Select, filters: MetricFilter) -> sa.Select:
    """*query* restricted to the metrics passing *filters*."""
    if not filters.any_project:
        if filters.project_id is None:
            query = query.where(Metric.created_by_project_id.is_(None))
        else:
            query = query.where(
                Metric.created_by_project_id == filters.project_id
            )
    if filters.ids is not None:
        query = query.where(Metric.id.in_(list(filters.ids)))
    for column, value in (
        (Metric.name, filters.name),
        (Metric.unit, filters.unit),
        (Metric.archive_policy_name, filters.archive_policy_name),
        (Metric.creator, filters.creator),
        (Metric.created_by_user_id, filters.user_id),
        (Metric.resource_id, filters.resource_id),
    ):
        if value is not None:
            query = query.where(column == value)
    return query


def _sort_keys(sorts: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    for key, direction in sorts:
        if key not in METRIC_SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}")
        if direction not in ("asc", "desc"):
            raise ValueError(f"unknown sort direction {direction!r}")
        if key not in (k for k, _ in keys):
            keys.append((key, direction))
    if "id" not in (k for k, _ in keys):
        keys.append(("id", "asc"))
    return keys


def _sort_expr(key: str) -> Any:
    column = getattr(Metric, key)
    if key in ("id", "created_at", "archive_policy_name"):
        return column
    # NULL sorts differently per backend: order it as the empty string.
    return sa.func.coalesce(column, "")


def _after(keys: Sequence[tuple[str, str]], mark: Metric) -> Any:
    """Keyset condition: rows strictly after *mark* in the sort order."""
    clauses = []
    for i, (key, direction) in enumerate(keys):
        value = getattr(mark, key)
        if key not in ("id", "created_at", "archive_policy_name"):
            value = "" if value is None else value
        expr = _sort_expr(key)
        step = expr < value if direction == "desc" else expr > value
        equal = [
            _sort_expr(k)
            == (
                getattr(mark, k)
                if k in ("id", "created_at", "archive_policy_name")
                else (getattr(mark, k) or "")
            )
            for k, _ in keys[:i]
        ]
        clauses.append(sa.and_(*equal, step))
    return sa.or_(*clauses)
