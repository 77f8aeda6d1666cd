"""Resources and resource types of the metric index (Gnocchi's model).

A *resource* (an instance, a volume, a load balancer...) groups metrics
by name and carries attributes that searches select on.  Every resource
has the ``generic`` columns (id, project, user, start/end...); a
*resource type* declares extra typed attributes (``string``, ``uuid``,
``number``, ``bool``, ``datetime``).

Typed attributes are stored in one entity-attribute-value table,
``resource_attribute``, with one value column per storage type and a
composite index ``(attribute_id, value_*, resource_id)`` per column: the
search "server_group = X" is one index range scan whatever the number of
resources and types, declaring a type is a plain insert (no DDL at run
time, so the schema stays the one the migrations build), and a null
value is the absence of a row.

This module holds the tables and the operations on them; the search
language is compiled by :mod:`alarmer.metrics.index.search`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import fnmatch
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer import timeutils
from alarmer.db import Base, UTCDateTime
from alarmer.errors import AlarmerError

LOG = logging.getLogger(__name__)

#: Namespace of the UUIDs that non-UUID resource ids are mapped to; the
#: value Gnocchi uses, so the same (id, creator) maps to the same UUID.
RESOURCE_ID_NAMESPACE = uuid.UUID("0a7a15ff-aa13-4ac2-897c-9bdf30ce175b")

GENERIC = "generic"
ATTRIBUTE_TYPES = ("string", "uuid", "number", "bool", "datetime")
STRING_MAX = 255
TYPE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,254}$")
ATTRIBUTE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

#: Columns every resource has, with the type their values are read as.
GENERIC_COLUMNS: dict[str, str] = {
    "id": "uuid",
    "type": "string",
    "original_resource_id": "string",
    "creator": "string",
    "created_by_user_id": "string",
    "created_by_project_id": "string",
    "user_id": "string",
    "project_id": "string",
    "started_at": "datetime",
    "ended_at": "datetime",
    "revision_start": "datetime",
}
#: Names a type's attributes may not take.
RESERVED_NAMES = frozenset(
    [*GENERIC_COLUMNS, "metrics", "revision", "revision_end"]
)


class ResourceError(AlarmerError, ValueError):
    """A request on resources that is wrong: answered with a 400."""


class NoSuchResourceType(AlarmerError, LookupError):
    """The named resource type does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Resource type {name} does not exist")
        self.name = name


class NoSuchResource(AlarmerError, LookupError):
    """The resource does not exist."""

    def __init__(self, resource_id: str) -> None:
        super().__init__(f"Resource {resource_id} does not exist")
        self.resource_id = resource_id


class ResourceTypeInUse(AlarmerError, RuntimeError):
    """A resource type still has resources and cannot be deleted."""


class ResourceAlreadyExists(AlarmerError, RuntimeError):
    """A resource with this id exists already."""


# --------------------------------------------------------------- tables


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


class ResourceGenerationModel(Base):
    """One row counting the changes that can alter a group's members.

    Bumped in the same transaction as every resource, attribute, metric
    attachment or type change, so that a cached resolution (see
    :class:`ResolutionCache`) is known stale by one primary-key read.
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


#: Where each attribute type stores its value.
VALUE_COLUMN = {
    "string": "value_str",
    "uuid": "value_str",
    "number": "value_num",
    "bool": "value_num",
    "datetime": "value_dt",
}


# --------------------------------------------------------------- ids


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


def creator_of(user_id: str | None, project_id: str | None) -> str | None:
    """The creator string Gnocchi records: ``user:project``."""
    if user_id and project_id:
        return f"{user_id}:{project_id}"
    return user_id or project_id or None


# --------------------------------------------------------------- types


@dataclasses.dataclass(frozen=True)
class AttributeDef:
    """One declared attribute of a resource type."""

    name: str
    type: str
    required: bool
    options: Mapping[str, Any]
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The attribute as the API shows it."""
        return {"type": self.type, "required": self.required, **self.options}


@dataclasses.dataclass(frozen=True)
class TypeDef:
    """A resource type with its attributes."""

    name: str
    state: str
    attributes: Mapping[str, AttributeDef]

    def to_dict(self) -> dict[str, Any]:
        """The type as the API shows it."""
        return {
            "name": self.name,
            "state": self.state,
            "attributes": {
                n: a.to_dict() for n, a in sorted(self.attributes.items())
            },
        }


def _parse_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ResourceError(f"Invalid input for {field}: must be a boolean")


def _parse_bound(value: Any, field: str, *, integer: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResourceError(f"Invalid input for {field}: must be a number")
    if integer and (value != int(value) or value < 0):
        raise ResourceError(
            f"Invalid input for {field}: must be a non-negative integer"
        )
    return int(value) if integer else float(value)


def parse_attribute_definition(name: str, body: Any) -> AttributeDef:
    """Validate one attribute definition of a resource type.

    :raises ResourceError: naming the attribute and the wrong field.
    """
    field = f"attributes/{name}"
    if not isinstance(name, str) or not ATTRIBUTE_NAME_RE.match(name):
        raise ResourceError(
            f"Invalid attribute name {name!r}: letters, digits and "
            "underscores, not starting with a digit, at most 63 characters"
        )
    if name in RESERVED_NAMES:
        raise ResourceError(f"Attribute name {name} is reserved")
    if not isinstance(body, dict):
        raise ResourceError(f"Invalid input for {field}: must be an object")
    attr_type = body.get("type")
    if attr_type not in ATTRIBUTE_TYPES:
        raise ResourceError(
            f"Invalid input for {field}/type: must be one of "
            f"{', '.join(ATTRIBUTE_TYPES)}, not {attr_type!r}"
        )
    allowed = {"type", "required"}
    options: dict[str, Any] = {}
    if attr_type == "string":
        allowed |= {"min_length", "max_length"}
        min_length = _parse_bound(
            body.get("min_length", 0), f"{field}/min_length", integer=True
        )
        max_length = _parse_bound(
            body.get("max_length", STRING_MAX),
            f"{field}/max_length",
            integer=True,
        )
        if min_length is None or max_length is None:
            raise ResourceError(
                f"Invalid input for {field}: string lengths cannot be null"
            )
        if max_length > STRING_MAX or min_length > max_length:
            raise ResourceError(
                f"Invalid input for {field}/max_length: lengths must satisfy "
                f"0 <= min_length <= max_length <= {STRING_MAX}"
            )
        options = {"min_length": min_length, "max_length": max_length}
    elif attr_type == "number":
        allowed |= {"min", "max"}
        low = _parse_bound(body.get("min"), f"{field}/min", integer=False)
        high = _parse_bound(body.get("max"), f"{field}/max", integer=False)
        if low is not None and high is not None and low > high:
            raise ResourceError(
                f"Invalid input for {field}/max: max must be >= min"
            )
        options = {"min": low, "max": high}
    unknown = sorted(set(body) - allowed - {"options"})
    if unknown:
        raise ResourceError(
            f"Invalid input for {field}: unknown field {unknown[0]} for "
            f"a {attr_type} attribute"
        )
    required = _parse_bool(body.get("required", True), f"{field}/required")
    return AttributeDef(name, attr_type, required, options)


def parse_type_definition(body: Any) -> TypeDef:
    """Validate the body of ``POST /v1/resource_type``."""
    if not isinstance(body, dict):
        raise ResourceError("Invalid input: the body must be a JSON object")
    unknown = sorted(set(body) - {"name", "attributes"})
    if unknown:
        raise ResourceError(f"Invalid input: unknown field {unknown[0]}")
    name = body.get("name")
    if not isinstance(name, str) or not TYPE_NAME_RE.match(name):
        raise ResourceError(
            "Invalid input for name: a resource type name starts with a "
            "letter and has letters, digits, '_', '.', ':' or '-' "
            f"(at most 255 characters), not {name!r}"
        )
    attributes = body.get("attributes", {})
    if not isinstance(attributes, dict):
        raise ResourceError("Invalid input for attributes: must be an object")
    defs = {n: parse_attribute_definition(n, a) for n, a in attributes.items()}
    return TypeDef(name, "active", defs)


def _type_from_rows(
    row: ResourceTypeModel, attrs: Iterable[ResourceTypeAttributeModel]
) -> TypeDef:
    return TypeDef(
        row.name,
        row.state,
        {
            a.name: AttributeDef(
                a.name, a.type, a.required, dict(a.options or {}), a.id
            )
            for a in attrs
        },
    )


def get_type(session: orm.Session, name: str) -> TypeDef:
    """Load one resource type.

    :raises NoSuchResourceType: when it does not exist.
    """
    row = session.get(ResourceTypeModel, name)
    if row is None:
        raise NoSuchResourceType(name)
    attrs = session.scalars(
        sa.select(ResourceTypeAttributeModel).where(
            ResourceTypeAttributeModel.resource_type == name
        )
    )
    return _type_from_rows(row, attrs)


def list_types(session: orm.Session) -> list[TypeDef]:
    """Every resource type, by name."""
    rows = session.scalars(
        sa.select(ResourceTypeModel).order_by(ResourceTypeModel.name)
    ).all()
    attrs: dict[str, list[ResourceTypeAttributeModel]] = {}
    for attr in session.scalars(sa.select(ResourceTypeAttributeModel)):
        attrs.setdefault(attr.resource_type, []).append(attr)
    return [_type_from_rows(r, attrs.get(r.name, ())) for r in rows]


def create_type(session: orm.Session, definition: TypeDef) -> TypeDef:
    """Store a new resource type (the caller commits).

    :raises ResourceAlreadyExists: when the name is taken.
    """
    if session.get(ResourceTypeModel, definition.name) is not None:
        raise ResourceAlreadyExists(
            f"Resource type {definition.name} already exists"
        )
    session.add(ResourceTypeModel(name=definition.name, state="active"))
    session.flush()
    for attr in definition.attributes.values():
        session.add(
            ResourceTypeAttributeModel(
                resource_type=definition.name,
                name=attr.name,
                type=attr.type,
                required=attr.required,
                options=dict(attr.options),
            )
        )
    session.flush()
    LOG.info("resource type %s created", definition.name)
    return get_type(session, definition.name)


def delete_type(session: orm.Session, name: str) -> None:
    """Delete a resource type that no resource uses (caller commits)."""
    if name == GENERIC:
        raise ResourceError("Resource type generic cannot be deleted")
    get_type(session, name)
    used = session.scalar(
        sa.select(ResourceModel.id).where(ResourceModel.type == name).limit(1)
    )
    if used is not None:
        raise ResourceTypeInUse(f"Resource type {name} is still in use")
    session.execute(
        sa.delete(ResourceTypeAttributeModel).where(
            ResourceTypeAttributeModel.resource_type == name
        )
    )
    session.execute(
        sa.delete(ResourceTypeModel).where(ResourceTypeModel.name == name)
    )
    bump_generation(session)
    LOG.info("resource type %s deleted", name)


def patch_type(session: orm.Session, name: str, operations: Any) -> TypeDef:
    """Apply a JSON patch adding or removing attributes of a type.

    Supported operations: ``add`` of ``/attributes/<name>`` (an optional
    attribute, or a required one when the type has no resource yet) and
    ``remove`` of ``/attributes/<name>``.
    """
    if name == GENERIC:
        raise ResourceError("Resource type generic cannot be updated")
    current = get_type(session, name)
    if not isinstance(operations, list) or not operations:
        raise ResourceError(
            "Invalid input: a resource type patch is a non-empty list of "
            "JSON patch operations"
        )
    attrs = dict(current.attributes)
    adds: dict[str, AttributeDef] = {}
    removes: list[str] = []
    for index, op in enumerate(operations):
        where = f"patch[{index}]"
        if not isinstance(op, dict):
            raise ResourceError(f"Invalid input for {where}: not an object")
        path = op.get("path")
        if not isinstance(path, str) or not path.startswith("/attributes/"):
            raise ResourceError(
                f"Invalid input for {where}/path: only /attributes/<name> "
                "can be patched"
            )
        attr_name = path[len("/attributes/") :]
        kind = op.get("op")
        if kind == "add":
            if attr_name in attrs:
                raise ResourceError(
                    f"Invalid input for {where}: attribute {attr_name} "
                    "already exists"
                )
            definition = parse_attribute_definition(attr_name, op.get("value"))
            attrs[attr_name] = definition
            adds[attr_name] = definition
        elif kind == "remove":
            if attr_name not in attrs:
                raise ResourceError(
                    f"Invalid input for {where}: attribute {attr_name} "
                    "does not exist"
                )
            del attrs[attr_name]
            if attr_name in adds:
                del adds[attr_name]
            else:
                removes.append(attr_name)
        else:
            raise ResourceError(
                f"Invalid input for {where}/op: must be add or remove, "
                f"not {kind!r}"
            )
    if any(a.required for a in adds.values()):
        used = session.scalar(
            sa.select(ResourceModel.id)
            .where(ResourceModel.type == name)
            .limit(1)
        )
        if used is not None:
            raise ResourceError(
                "A required attribute cannot be added to resource type "
                f"{name}: it has resources"
            )
    for attr_name in removes:
        session.execute(
            sa.delete(ResourceTypeAttributeModel).where(
                ResourceTypeAttributeModel.id
                == current.attributes[attr_name].id
            )
        )
    for attr in adds.values():
        session.add(
            ResourceTypeAttributeModel(
                resource_type=name,
                name=attr.name,
                type=attr.type,
                required=attr.required,
                options=dict(attr.options),
            )
        )
    session.flush()
    bump_generation(session)
    return get_type(session, name)


# --------------------------------------------------------------- values


def convert_value(
    attr_type: str,
    value: Any,
    field: str,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Check and convert a JSON value for an attribute of *attr_type*.

    Returns the value as stored (canonical UUID string, float, bool,
    aware datetime).  *options* (lengths, bounds) are enforced when given.

    :raises ResourceError: naming *field* and the expected type.
    """
    if attr_type == "string":
        if not isinstance(value, str):
            raise ResourceError(
                f"Invalid value for attribute {field}: {value!r} is not a "
                "string"
            )
        if options is not None:
            low = options.get("min_length", 0)
            high = options.get("max_length", STRING_MAX)
            if not low <= len(value) <= high:
                raise ResourceError(
                    f"Invalid value for attribute {field}: length must be "
                    f"between {low} and {high}"
                )
        elif len(value) > STRING_MAX:
            raise ResourceError(
                f"Invalid value for attribute {field}: longer than "
                f"{STRING_MAX} characters"
            )
        return value
    if attr_type == "uuid":
        try:
            return str(uuid.UUID(value))
        except (TypeError, ValueError, AttributeError):
            raise ResourceError(
                f"Invalid value for attribute {field}: {value!r} is not a UUID"
            ) from None
    if attr_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ResourceError(
                f"Invalid value for attribute {field}: {value!r} is not a "
                "number"
            )
        number = float(value)
        if not math.isfinite(number):
            raise ResourceError(
                f"Invalid value for attribute {field}: must be finite"
            )
        if options is not None:
            low, high = options.get("min"), options.get("max")
            if (low is not None and number < low) or (
                high is not None and number > high
            ):
                raise ResourceError(
                    f"Invalid value for attribute {field}: must be between "
                    f"{low} and {high}"
                )
        return number
    if attr_type == "bool":
        if not isinstance(value, bool):
            raise ResourceError(
                f"Invalid value for attribute {field}: {value!r} is not a "
                "boolean"
            )
        return value
    if attr_type == "datetime":
        try:
            return timeutils.parse_datetime(value)
        except (ValueError, OverflowError):
            raise ResourceError(
                f"Invalid value for attribute {field}: {value!r} is not a "
                "timestamp"
            ) from None
    raise ResourceError(f"Unknown attribute type {attr_type}")


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


# --------------------------------------------------------------- resources


@dataclasses.dataclass
class Caller:
    """Who acts on resources: fills ``created_by_*`` and scopes reads."""

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


def create_resource(
    session: orm.Session,
    rtype: TypeDef,
    body: Mapping[str, Any],
    caller: Caller,
) -> ResourceModel:
    """Validate and insert a resource of *rtype* (caller commits).

    ``metrics`` in *body* is not handled here (see the API layer).

    :raises ResourceError: bad input, naming the field.
    :raises ResourceAlreadyExists: the id is taken.
    """
    check_unknown_fields(rtype, body, ("id", *_GENERIC_WRITABLE, "metrics"))
    if "id" not in body:
        raise ResourceError("Missing attribute id")
    original = body["id"]
    if not isinstance(original, str):
        raise ResourceError("Invalid value for attribute id: not a string")
    rid = resource_uuid(original, caller.creator)
    generic = _check_generic(body)
    attrs = parse_resource_attributes(rtype, body, creating=True)
    now = timeutils.utcnow()
    started_at = generic.get("started_at") or now
    _check_period(started_at, generic.get("ended_at"))
    if session.get(ResourceModel, rid) is not None:
        raise ResourceAlreadyExists(f"Resource {original} already exists")
    row = ResourceModel(
        id=rid,
        type=rtype.name,
        original_resource_id=original,
        creator=caller.creator,
        created_by_user_id=caller.user_id,
        created_by_project_id=caller.project_id,
        user_id=generic.get("user_id"),
        project_id=generic.get("project_id"),
        started_at=started_at,
        ended_at=generic.get("ended_at"),
        revision_start=now,
    )
    session.add(row)
    session.flush()
    _write_attributes(session, rtype, rid, attrs)
    bump_generation(session)
    LOG.info("resource %s (%s) created", rid, rtype.name)
    return row


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


def delete_resource_rows(session: orm.Session, ids: list[str]) -> None:
    """Delete resources and their attribute values (caller commits)."""
    if not ids:
        return
    session.execute(
        sa.delete(ResourceAttributeModel).where(
            ResourceAttributeModel.resource_id.in_(ids)
        )
    )
    session.execute(sa.delete(ResourceModel).where(ResourceModel.id.in_(ids)))
    bump_generation(session)


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


# --------------------------------------------------------------- metrics


def _parse_query(query: Any) -> Any:
    from alarmer.metrics.index import search

    if isinstance(query, str):
        try:
            return json.loads(query) if query.strip() else {}
        except ValueError as exc:
            raise search.QueryError(
                f"Invalid query: not a JSON document: {exc}"
            ) from None
    return query


def resolve_resource_metrics(
    session: orm.Session,
    resource_type: str,
    query: Any,
    metric_name: str,
    *,
    project_id: str | None = None,
    creator: str | None = None,
) -> list[tuple[str, str, str]]:
    """Metrics named *metric_name* of the resources matching *query*.

    :param query: a JSON query (object, or the JSON text Aodh rules
        store); ``None`` or ``{}`` matches every resource of the type.
    :param metric_name: a metric name or an :mod:`fnmatch` pattern
        (``cpu*``), as Gnocchi's aggregates accept.
    :param project_id: when given, only resources of that project (its
        own or created for it) count, as a non-admin caller's search.
    :returns: ``(resource id, metric name, metric id)`` sorted by
        resource id then name.
    :raises NoSuchResourceType: unknown type.
    :raises alarmer.metrics.index.search.QueryError: invalid query.
    """
    from alarmer.metrics.index import indexer, search

    rtype = get_type(session, resource_type)
    where = search.compile_query(_parse_query(query), rtype, creator)
    stmt = (
        sa.select(
            indexer.Metric.resource_id, indexer.Metric.name, indexer.Metric.id
        )
        .join(ResourceModel, ResourceModel.id == indexer.Metric.resource_id)
        .where(search.type_clause(rtype), where)
    )
    wildcard = any(c in metric_name for c in "*?[")
    if not wildcard:
        stmt = stmt.where(indexer.Metric.name == metric_name)
    if project_id is not None:
        stmt = stmt.where(project_scope(project_id))
    rows = [
        (str(rid), str(name), str(mid))
        for rid, name, mid in session.execute(stmt)
        if not wildcard or fnmatch.fnmatchcase(name or "", metric_name)
    ]
    rows.sort()
    return rows


class ResolutionCache:
    """Resolved groups, valid while the resource index is unchanged.

    Entries are keyed by (type, query, metric name, project) and tagged
    with the :func:`current_generation` read *before* resolving, so an
    entry is never newer than its tag and any change made since (in any
    process: the counter is in the database) makes it a miss.  At most
    *max_entries* are kept, least recently used out.  Thread-safe; one
    per evaluator process.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: collections.OrderedDict[
            tuple[str, str, str, str | None], tuple[int, tuple[str, ...]]
        ] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(
        self, key: tuple[str, str, str, str | None], generation: int
    ) -> tuple[str, ...] | None:
        """The cached metric ids of *key* at *generation*, or None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] != generation:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1]

    def put(
        self,
        key: tuple[str, str, str, str | None],
        generation: int,
        metric_ids: tuple[str, ...],
    ) -> None:
        """Remember the metric ids of *key* resolved at *generation*."""
        with self._lock:
            self._entries[key] = (generation, metric_ids)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def resolve_metric_ids(
    session: orm.Session,
    resource_type: str,
    query: Any,
    metric_name: str,
    project_id: str | None = None,
    *,
    cache: ResolutionCache | None = None,
) -> list[str]:
    """Ids of the metrics a by-resources rule reads now.

    The group is evaluated at call time: resources created since count,
    resources deleted or no longer matching (e.g. ended, with Heat's
    ``ended_at = null`` clause) do not.  With *cache*, the answer is
    reused until the resource index changes (one primary-key read per
    call instead of the search).  Same parameters and errors as
    :func:`resolve_resource_metrics`.
    """
    key: tuple[str, str, str, str | None] | None = None
    generation = 0
    if cache is not None:
        text = (
            query
            if isinstance(query, str)
            else json.dumps(query, sort_keys=True)
        )
        key = (resource_type, text, metric_name, project_id)
        generation = current_generation(session)
        found = cache.get(key, generation)
        if found is not None:
            return list(found)
    ids = [
        mid
        for _, _, mid in resolve_resource_metrics(
            session, resource_type, query, metric_name, project_id=project_id
        )
    ]
    if cache is not None and key is not None:
        cache.put(key, generation, tuple(ids))
    return ids


def scope_query(query: str, project_id: str) -> str:
    """Aodh's rewrite of a by-resources query for a non-admin project.

    The stored query becomes ``{"and": [<project filter>, <query>]}``
    where the project filter matches the resources the project created
    or that were created for it (Gnocchi's visibility rule).
    """
    scope = {
        "or": [
            {"=": {"created_by_project_id": project_id}},
            {"=": {"project_id": project_id}},
        ]
    }
    return json.dumps({"and": [scope, _parse_query(query)]})


def check_rule_query(
    session: orm.Session, resource_type: str, query: str
) -> None:
    """Check a by-resources rule's query against its resource type.

    An unknown resource type is accepted (Aodh accepts Gnocchi's 404: the
    type may be declared later); an invalid query is not.

    :raises alarmer.metrics.index.search.QueryError: naming the culprit.
    """
    from alarmer.metrics.index import search

    try:
        rtype = get_type(session, resource_type)
    except NoSuchResourceType:
        return
    search.compile_query(_parse_query(query), rtype)


def metric_of_resource(
    session: orm.Session,
    resource_id: str,
    metric_name: str,
    *,
    project_id: str | None = None,
    creator: str | None = None,
) -> str | None:
    """Id of metric *metric_name* of the resource a client calls *resource_id*.

    A UUID is the stored id.  Another string is first mapped with
    :func:`resource_uuid` for *creator* (when given), as the API does;
    failing that it is looked up by the original id the client used,
    among *project_id*'s resources when given.  An original id that names
    several resources is ambiguous: None.
    """
    from alarmer.metrics.index import indexer

    def named(ids: list[str]) -> str | None:
        return session.scalar(
            sa.select(indexer.Metric.id).where(
                indexer.Metric.resource_id.in_(ids),
                indexer.Metric.name == metric_name,
            )
        )

    try:
        return named([str(uuid.UUID(resource_id))])
    except (TypeError, ValueError):
        pass
    if creator is not None:
        try:
            found = named([resource_uuid(resource_id, creator)])
        except ResourceError:
            return None
        if found is not None:
            return found
    stmt = sa.select(ResourceModel.id).where(
        ResourceModel.original_resource_id == resource_id
    )
    if project_id is not None:
        stmt = stmt.where(project_scope(project_id))
    candidates = list(session.scalars(stmt.limit(2)))
    if len(candidates) != 1:
        return None
    return named(candidates)
