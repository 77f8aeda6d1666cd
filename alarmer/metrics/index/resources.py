"""Resources of the metric index (Gnocchi's model).

A *resource* (an instance, a volume, a load balancer...) groups metrics
by name and carries attributes that searches select on: the ``generic``
columns every resource has and the typed attributes its type declares
(:mod:`alarmer.metrics.index.types`).  This module maps the ids clients
give to stored ids, validates resource bodies, and creates, finds,
pages, updates, shows and deletes resources, in the caller's
transaction; :class:`alarmer.metrics.index.indexer.Indexer` is what the
rest of alarmer calls.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer import timeutils
from alarmer.metrics.index import metrics as metrics_mod
from alarmer.metrics.index.access import Caller, can_access, visible
from alarmer.metrics.index.errors import (
    NoSuchResource,
    ResourceAlreadyExists,
    ResourceError,
)
from alarmer.metrics.index.schema import (
    VALUE_COLUMN,
    Metric,
    ResourceAttributeModel,
    ResourceModel,
    bump_generation,
)
from alarmer.metrics.index.types import (
    GENERIC,
    STRING_MAX,
    AttributeDef,
    TypeDef,
    convert_value,
    get_type,
)

LOG = logging.getLogger(__name__)

#: Namespace of the UUIDs that non-UUID resource ids are mapped to; the
#: value Gnocchi uses, so the same (id, creator) maps to the same UUID.
RESOURCE_ID_NAMESPACE = uuid.UUID("0a7a15ff-aa13-4ac2-897c-9bdf30ce175b")


def resource_uuid(value: str, creator: str | None = None) -> str:
    """Map a resource id as given by a client to the stored UUID.

    A UUID (any spelling) is returned canonical; any other string of at
    most 255 characters is mapped to ``uuid5(namespace, value + NUL +
    creator)`` as Gnocchi does, so the same client id of the same creator
    always lands on the same resource.

    :raises ResourceError: for an empty id, a ``/`` or more than 255
        characters.
    """
    if not isinstance(value, str) or not value:
        raise ResourceError("Invalid resource id: must be a non-empty string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    if "/" in value:
        raise ResourceError("'/' is not supported in resource id")
    if len(value) > STRING_MAX:
        raise ResourceError(
            "Invalid resource id: a non-UUID id has at most 255 characters"
        )
    name = value + "\x00" + (creator or "\x00")
    return str(uuid.uuid5(RESOURCE_ID_NAMESPACE, name))


def _stored(attr: AttributeDef, value: Any) -> dict[str, Any]:
    column = VALUE_COLUMN[attr.type]
    if attr.type == "bool":
        value = 1.0 if value else 0.0
    return {column: value}


def _shown(attr: AttributeDef, row: ResourceAttributeModel) -> Any:
    value = getattr(row, VALUE_COLUMN[attr.type])
    if attr.type == "bool":
        return bool(value)
    if attr.type == "datetime":
        return timeutils.isoformat(value)
    if attr.type == "number" and value is not None and value == int(value):
        return value
    return value


_GENERIC_WRITABLE = ("user_id", "project_id", "started_at", "ended_at")


def _check_generic(body: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in ("user_id", "project_id"):
        if key in body:
            value = body[key]
            if value is not None:
                convert_value("string", value, key)
            values[key] = value
    for key in ("started_at", "ended_at"):
        if key in body:
            value = body[key]
            values[key] = (
                None
                if value is None
                else convert_value("datetime", value, key)
            )
    return values


def parse_resource_attributes(
    rtype: TypeDef, body: Mapping[str, Any], *, creating: bool
) -> dict[str, Any]:
    """Check the typed attributes of a create or update body.

    :returns: ``{attribute name: converted value or None}`` of the
        attributes present in *body* (all declared ones when creating).
    """
    values: dict[str, Any] = {}
    for name, attr in rtype.attributes.items():
        if name not in body:
            if creating and attr.required:
                raise ResourceError(
                    f"Missing attribute {name}: it is required by resource "
                    f"type {rtype.name}"
                )
            continue
        value = body[name]
        if value is None:
            if attr.required:
                raise ResourceError(
                    f"Invalid value for attribute {name}: it is required "
                    f"by resource type {rtype.name} and cannot be null"
                )
            values[name] = None
            continue
        values[name] = convert_value(attr.type, value, name, attr.options)
    return values


def check_unknown_fields(
    rtype: TypeDef, body: Mapping[str, Any], allowed: Iterable[str]
) -> None:
    """Reject fields that are neither generic nor attributes of *rtype*."""
    known = set(allowed) | set(rtype.attributes)
    for key in body:
        if key not in known:
            raise ResourceError(
                f"Unknown attribute {key} for resource type {rtype.name}"
            )


def _check_period(
    started_at: dt.datetime | None, ended_at: dt.datetime | None
) -> None:
    if started_at and ended_at and started_at > ended_at:
        raise ResourceError(
            "Invalid value for ended_at: the start timestamp cannot be "
            "after the end timestamp"
        )


def _new_resource(
    rtype: TypeDef,
    body: Mapping[str, Any],
    caller: Caller,
    now: dt.datetime,
    allowed: Iterable[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a create body: the resource's columns and its attributes."""
    check_unknown_fields(rtype, body, allowed)
    if "id" not in body:
        raise ResourceError("Missing attribute id")
    original = body["id"]
    if not isinstance(original, str):
        raise ResourceError("Invalid value for attribute id: not a string")
    rid = resource_uuid(original, caller.creator)
    generic = _check_generic(body)
    attrs = parse_resource_attributes(rtype, body, creating=True)
    started_at = generic.get("started_at") or now
    _check_period(started_at, generic.get("ended_at"))
    values = {
        "id": rid,
        "type": rtype.name,
        "original_resource_id": original,
        "creator": caller.creator,
        "created_by_user_id": caller.user_id,
        "created_by_project_id": caller.project_id,
        "user_id": generic.get("user_id"),
        "project_id": generic.get("project_id"),
        "started_at": started_at,
        "ended_at": generic.get("ended_at"),
        "revision_start": now,
    }
    return values, attrs


def create_resource(
    session: orm.Session,
    rtype: TypeDef,
    body: Mapping[str, Any],
    caller: Caller,
) -> ResourceModel:
    """Validate and insert a resource of *rtype* (caller commits).

    ``metrics`` in *body* is allowed but not handled here (see
    :meth:`alarmer.metrics.index.indexer.Indexer.create_resource`).

    :raises ResourceError: bad input, naming the field.
    :raises ResourceAlreadyExists: the id is taken.
    """
    values, attrs = _new_resource(
        rtype,
        body,
        caller,
        timeutils.utcnow(),
        ("id", *_GENERIC_WRITABLE, "metrics"),
    )
    rid = values["id"]
    if session.get(ResourceModel, rid) is not None:
        raise ResourceAlreadyExists(
            f"Resource {values['original_resource_id']} already exists"
        )
    row = ResourceModel(**values)
    session.add(row)
    session.flush()
    _write_attributes(session, rtype, rid, attrs)
    bump_generation(session)
    LOG.info("resource %s (%s) created", rid, rtype.name)
    return row


def import_resources(
    session: orm.Session,
    rtype: TypeDef,
    bodies: Iterable[Mapping[str, Any]],
    caller: Caller,
    *,
    chunk: int = 5000,
) -> list[str]:
    """Insert many new resources of *rtype* (caller commits).

    Each body is checked as :func:`create_resource` checks one (without
    ``metrics``); the rows go in with one multi-row insert per table and
    *chunk* resources.  An id already taken fails the whole import (an
    integrity error from the database).

    :returns: the stored ids, in order.
    :raises ResourceError: bad input, naming the field.
    """
    now = timeutils.utcnow()
    allowed = ("id", *_GENERIC_WRITABLE)
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    values: list[dict[str, Any]] = []

    def write() -> None:
        if rows:
            session.execute(sa.insert(ResourceModel), rows)
        if values:
            session.execute(sa.insert(ResourceAttributeModel), values)
        rows.clear()
        values.clear()

    for body in bodies:
        row, attrs = _new_resource(rtype, body, caller, now, allowed)
        rows.append(row)
        ids.append(row["id"])
        for name, value in attrs.items():
            if value is not None:
                attr = rtype.attributes[name]
                values.append(
                    {
                        "resource_id": row["id"],
                        "attribute_id": attr.id,
                        **_stored(attr, value),
                    }
                )
        if len(rows) >= chunk:
            write()
    write()
    if ids:
        bump_generation(session)
        LOG.info("%d resources (%s) imported", len(ids), rtype.name)
    return ids


def _write_attributes(
    session: orm.Session, rtype: TypeDef, rid: str, attrs: Mapping[str, Any]
) -> None:
    for name, value in attrs.items():
        attr = rtype.attributes[name]
        session.execute(
            sa.delete(ResourceAttributeModel).where(
                ResourceAttributeModel.resource_id == rid,
                ResourceAttributeModel.attribute_id == attr.id,
            )
        )
        if value is not None:
            session.add(
                ResourceAttributeModel(
                    resource_id=rid,
                    attribute_id=attr.id,
                    **_stored(attr, value),
                )
            )
    session.flush()


def find_resource(
    session: orm.Session,
    rtype: TypeDef,
    given_id: str,
    caller: Caller,
    *,
    for_update: bool = False,
) -> ResourceModel:
    """Find a resource of *rtype* by the id a client gave.

    :raises NoSuchResource: absent, of another type or out of scope (for
        a non-admin, Gnocchi answers 403 on resources it may not see;
        :class:`PermissionError` is raised for that).
    """
    try:
        rid = resource_uuid(given_id, caller.creator)
    except ResourceError:
        raise NoSuchResource(given_id) from None
    stmt = sa.select(ResourceModel).where(ResourceModel.id == rid)
    if rtype.name != GENERIC:
        stmt = stmt.where(ResourceModel.type == rtype.name)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        raise NoSuchResource(given_id)
    if not can_access(caller, row):
        raise PermissionError(given_id)
    return row


def update_resource(
    session: orm.Session,
    rtype: TypeDef,
    row: ResourceModel,
    body: Mapping[str, Any],
) -> ResourceModel:
    """Apply a PATCH body to *row* (caller commits)."""
    if not isinstance(body, Mapping):
        raise ResourceError("Invalid input: the body must be a JSON object")
    for key in ("id", "type", "creator", "original_resource_id"):
        if key in body:
            raise ResourceError(f"Attribute {key} cannot be updated")
    full = get_type(session, row.type) if rtype.name == GENERIC else rtype
    check_unknown_fields(full, body, (*_GENERIC_WRITABLE, "metrics"))
    generic = _check_generic(body)
    attrs = parse_resource_attributes(full, body, creating=False)
    started_at = generic.get("started_at", row.started_at)
    if "started_at" in generic and started_at is None:
        raise ResourceError("Invalid value for started_at: cannot be null")
    _check_period(started_at, generic.get("ended_at", row.ended_at))
    for key, value in generic.items():
        setattr(row, key, value)
    row.revision_start = timeutils.utcnow()
    session.flush()
    _write_attributes(session, full, row.id, attrs)
    bump_generation(session)
    LOG.info("resource %s updated", row.id)
    return row


def delete_resources(session: orm.Session, ids: Sequence[str]) -> list[str]:
    """Delete resources, their attribute values and their metrics.

    :returns: the ids of the deleted metrics (their series are the
        caller's to drop, after the commit).
    """
    ids = list(ids)
    if not ids:
        return []
    metric_ids = metrics_mod.ids_of_resources(session, ids)
    for start in range(0, len(ids), metrics_mod.CHUNK):
        chunk = ids[start : start + metrics_mod.CHUNK]
        for table, column in (
            (Metric, Metric.resource_id),
            (ResourceAttributeModel, ResourceAttributeModel.resource_id),
            (ResourceModel, ResourceModel.id),
        ):
            session.execute(sa.delete(table).where(column.in_(chunk)))
    bump_generation(session)
    return metric_ids


def load_attributes(
    session: orm.Session,
    rows: list[ResourceModel],
    known: Iterable[TypeDef] = (),
) -> dict[str, dict[str, Any]]:
    """The typed attributes of *rows*: ``{resource id: {name: value}}``.

    Every declared attribute is present (``None`` when unset).  *known*
    types (already loaded by the caller) are not read again.
    """
    result: dict[str, dict[str, Any]] = {}
    types: dict[str, TypeDef] = {}
    by_id: dict[int, AttributeDef] = {}
    for rtype in known:
        types[rtype.name] = rtype
        for attr in rtype.attributes.values():
            assert attr.id is not None
            by_id[attr.id] = attr
    for row in rows:
        if row.type not in types:
            types[row.type] = get_type(session, row.type)
            for attr in types[row.type].attributes.values():
                assert attr.id is not None
                by_id[attr.id] = attr
        result[row.id] = dict.fromkeys(types[row.type].attributes)
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for value in session.scalars(
            sa.select(ResourceAttributeModel).where(
                ResourceAttributeModel.resource_id.in_(chunk)
            )
        ):
            found = by_id.get(value.attribute_id)
            if found is not None:
                result[value.resource_id][found.name] = _shown(found, value)
    return result


def resource_dict(
    row: ResourceModel,
    attributes: Mapping[str, Any],
    metrics: Mapping[str, str],
) -> dict[str, Any]:
    """The resource as the API shows it."""
    body: dict[str, Any] = {
        "id": row.id,
        "type": row.type,
        "original_resource_id": row.original_resource_id,
        "creator": row.creator,
        "created_by_user_id": row.created_by_user_id,
        "created_by_project_id": row.created_by_project_id,
        "user_id": row.user_id,
        "project_id": row.project_id,
        "started_at": timeutils.isoformat(row.started_at),
        "ended_at": timeutils.isoformat(row.ended_at),
        "revision_start": timeutils.isoformat(row.revision_start),
        "revision_end": None,
        "metrics": dict(sorted(metrics.items())),
    }
    body.update(attributes)
    return body


def show(
    session: orm.Session,
    rtype: TypeDef,
    rows: list[ResourceModel],
    *,
    details: bool,
) -> list[dict[str, Any]]:
    """Resources as the API shows them, with their named metrics.

    A listing of a type shows that type's attributes; a ``generic``
    listing shows each resource's own attributes with *details*.
    """
    attributes: dict[str, dict[str, Any]] = {}
    if rtype.name != GENERIC or details:
        attributes = load_attributes(session, rows, [rtype])
    named = metrics_mod.names_of(session, [r.id for r in rows])
    return [
        resource_dict(r, attributes.get(r.id, {}), named[r.id]) for r in rows
    ]


# ------------------------------------------------------------- listing --

#: Generic columns a listing or a search can be sorted by.
SORT_KEYS = (
    "id",
    "type",
    "original_resource_id",
    "creator",
    "created_by_user_id",
    "created_by_project_id",
    "user_id",
    "project_id",
    "started_at",
    "ended_at",
    "revision_start",
)
#: The order of a listing that names none.
DEFAULT_SORT = (("revision_start", "asc"), ("started_at", "asc"))
NULLABLE_SORT = frozenset(
    [
        "creator",
        "created_by_user_id",
        "created_by_project_id",
        "user_id",
        "project_id",
        "ended_at",
    ]
)


class _SortKey:
    """One sort key: its SQL expressions and how to read a marker's."""

    def __init__(
        self, rtype: TypeDef, key: str, direction: str, index: int
    ) -> None:
        self.key = key
        self.direction = direction
        self.join: tuple[Any, Any] | None = None
        self.attr: AttributeDef | None = None
        if key in SORT_KEYS:
            column: Any = getattr(ResourceModel, key)
            nullable = key in NULLABLE_SORT
        elif key in rtype.attributes:
            self.attr = rtype.attributes[key]
            alias = orm.aliased(ResourceAttributeModel, name=f"sort_{index}")
            self.join = (
                alias,
                sa.and_(
                    alias.resource_id == ResourceModel.id,
                    alias.attribute_id == self.attr.id,
                ),
            )
            column = getattr(alias, VALUE_COLUMN[self.attr.type])
            nullable = True
        else:
            valid = ", ".join([*SORT_KEYS, *sorted(rtype.attributes)])
            raise ResourceError(
                f"Invalid value for query parameter sort: unknown sort key "
                f"{key!r}, valid keys: {valid}"
            )
        # Nulls last in both directions, on every backend.
        self.parts: list[tuple[Any, str]] = [(column, direction)]
        if nullable:
            flag = sa.case((column.is_(None), 1), else_=0)
            self.parts.insert(0, (flag, "asc"))
        self.nullable = nullable

    def marker_values(
        self, session: orm.Session, mark: ResourceModel
    ) -> list[Any]:
        if self.attr is None:
            value = getattr(mark, self.key)
        else:
            table = ResourceAttributeModel
            value = session.scalar(
                sa.select(getattr(table, VALUE_COLUMN[self.attr.type])).where(
                    table.resource_id == mark.id,
                    table.attribute_id == self.attr.id,
                )
            )
        if self.nullable:
            return [1 if value is None else 0, value]
        return [value]

    def order(self) -> list[Any]:
        return [
            e.desc() if direction == "desc" else e.asc()
            for e, direction in self.parts
        ]


def _after_marker(
    session: orm.Session,
    keys: Sequence[_SortKey],
    mark: ResourceModel,
) -> sa.ColumnElement[bool]:
    parts: list[tuple[Any, Any, str]] = []
    for key in keys:
        for (expr, direction), value in zip(
            key.parts, key.marker_values(session, mark), strict=True
        ):
            if value is None:  # both null: equal, nothing to compare
                continue
            parts.append((expr, value, direction))
    clauses = []
    for i, (expr, value, direction) in enumerate(parts):
        equal = [e == v for e, v, _ in parts[:i]]
        step = expr > value if direction == "asc" else expr < value
        clauses.append(sa.and_(*equal, step))
    return sa.or_(*clauses) if clauses else sa.false()


def list_resources(
    session: orm.Session,
    rtype: TypeDef,
    caller: Caller,
    where: sa.ColumnElement[bool],
    *,
    limit: int,
    marker: str | None = None,
    sorts: Sequence[tuple[str, str]] = DEFAULT_SORT,
) -> list[ResourceModel]:
    """The resources of *rtype* *caller* sees matching *where*, one page.

    Sorted by generic columns or the type's attributes (``("host",
    "desc")``), then by id; *marker* is the id of the last resource of
    the previous page.

    :raises ResourceError: unknown sort key or marker.
    """
    if not any(key == "id" for key, _ in sorts):
        sorts = [*sorts, ("id", "asc")]
    keys = [
        _SortKey(rtype, key, direction, i)
        for i, (key, direction) in enumerate(sorts)
    ]
    stmt = sa.select(ResourceModel)
    for key in keys:
        if key.join is not None:
            stmt = stmt.outerjoin(*key.join)
    stmt = stmt.where(type_clause(rtype), visible(caller), where)
    if marker is not None:
        try:
            mark_id: str | None = resource_uuid(marker, caller.creator)
        except ResourceError:
            mark_id = None
        mark = None if mark_id is None else session.get(ResourceModel, mark_id)
        if mark is None:
            raise ResourceError(
                f"Invalid value for query parameter marker: resource "
                f"{marker} does not exist"
            )
        stmt = stmt.where(_after_marker(session, keys, mark))
    order = [expr for key in keys for expr in key.order()]
    stmt = stmt.order_by(*order).limit(limit)
    return list(session.scalars(stmt))


def matching_ids(
    session: orm.Session,
    rtype: TypeDef,
    caller: Caller,
    where: sa.ColumnElement[bool],
) -> list[str]:
    """Ids of every resource of *rtype* *caller* sees matching *where*."""
    return list(
        session.scalars(
            sa.select(ResourceModel.id).where(
                type_clause(rtype), visible(caller), where
            )
        )
    )


def type_clause(rtype: TypeDef) -> sa.ColumnElement[bool]:
    """Where-clause selecting the resources a search on *rtype* covers.

    ``generic`` covers every resource, as in Gnocchi.
    """
    if rtype.name == GENERIC:
        return sa.true()
    return ResourceModel.type == rtype.name
