"""Resource types: their typed attributes, declared and changed at run time.

Every resource has the ``generic`` columns (id, project, user,
start/end...); a *resource type* declares extra typed attributes
(``string``, ``uuid``, ``number``, ``bool``, ``datetime``) with their
constraints (lengths, bounds, required).  This module validates type
definitions and attribute values, and reads and writes the
``resource_type`` and ``resource_type_attribute`` tables in the caller's
transaction (see :class:`alarmer.metrics.index.indexer.Indexer`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer import timeutils
from alarmer.metrics.index.errors import (
    NoSuchResourceType,
    ResourceAlreadyExists,
    ResourceError,
    ResourceTypeInUse,
)
from alarmer.metrics.index.schema import (
    ResourceModel,
    ResourceTypeAttributeModel,
    ResourceTypeModel,
    bump_generation,
)

LOG = logging.getLogger(__name__)

#: The type every resource has; a search on it covers every resource.
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
