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
    VALUE_COLUMN,
    ResourceAttributeModel,
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


_POINTER_ESCAPES = (("~1", "/"), ("~0", "~"))


def _pointer(path: Any, where: str) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise ResourceError(
            f"Invalid input for {where}/path: not a JSON pointer"
        )
    tokens = path.split("/")[1:]
    for escaped, plain in _POINTER_ESCAPES:
        tokens = [t.replace(escaped, plain) for t in tokens]
    return tokens


def _container(
    document: dict[str, Any], tokens: list[str], where: str
) -> tuple[Any, str]:
    if not tokens:
        raise ResourceError(
            f"Invalid input for {where}/path: the whole document cannot be "
            "patched"
        )
    node: Any = document
    for token in tokens[:-1]:
        if not isinstance(node, dict) or token not in node:
            raise ResourceError(
                f"Invalid input for {where}/path: "
                f"/{'/'.join(tokens)} does not exist"
            )
        node = node[token]
    if not isinstance(node, dict):
        raise ResourceError(
            f"Invalid input for {where}/path: /{'/'.join(tokens)} is not "
            "in an object"
        )
    return node, tokens[-1]


def apply_json_patch(document: dict[str, Any], operations: Any) -> None:
    """Apply the RFC 6902 operations *operations* to *document* in place.

    ``add``, ``remove``, ``replace`` and ``test`` are understood on
    object members (a resource type document has no arrays); ``add`` of
    a member that exists replaces it, as RFC 6902 says.

    :raises ResourceError: a malformed operation, or a path that does
        not exist, naming the operation (``patch[i]``).
    """
    if not isinstance(operations, list):
        raise ResourceError(
            "Invalid input: a resource type patch is a list of JSON patch "
            "operations"
        )
    for index, op in enumerate(operations):
        where = f"patch[{index}]"
        if not isinstance(op, dict):
            raise ResourceError(f"Invalid input for {where}: not an object")
        kind = op.get("op")
        tokens = _pointer(op.get("path"), where)
        node, key = _container(document, tokens, where)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ResourceError(f"Invalid input for {where}: missing value")
        if kind in ("remove", "replace", "test") and key not in node:
            raise ResourceError(
                f"Invalid input for {where}/path: {op['path']} does not exist"
            )
        if kind in ("add", "replace"):
            node[key] = op["value"]
        elif kind == "remove":
            del node[key]
        elif kind == "test":
            if node[key] != op["value"]:
                raise ResourceError(
                    f"Invalid input for {where}: the value of {op['path']} "
                    "is not the one tested"
                )
        else:
            raise ResourceError(
                f"Invalid input for {where}/op: must be add, remove, replace "
                f"or test, not {kind!r}"
            )


def _fill_value(attr: AttributeDef, body: Any) -> Any:
    """The ``options.fill`` of a patched attribute, converted, or None."""
    options = body.get("options", {}) if isinstance(body, dict) else {}
    field = f"attributes/{attr.name}/options"
    if not isinstance(options, dict):
        raise ResourceError(f"Invalid input for {field}: must be an object")
    unknown = sorted(set(options) - {"fill"})
    if unknown:
        raise ResourceError(
            f"Invalid input for {field}: unknown option {unknown[0]}"
        )
    fill = options.get("fill")
    if fill is None:
        if attr.required:
            raise ResourceError(
                f"Invalid input: Option 'fill' of resource attribute "
                f"{attr.name} is invalid: must not be empty if required=True"
            )
        return None
    return convert_value(attr.type, fill, f"{field}/fill", attr.options)


def _stored_value(attr: AttributeDef, value: Any) -> dict[str, Any]:
    if attr.type == "bool":
        value = 1.0 if value else 0.0
    return {VALUE_COLUMN[attr.type]: value}


def _fill(
    session: orm.Session, type_name: str, attr: AttributeDef, value: Any
) -> None:
    """Give *value* to every resource of the type lacking *attr*."""
    column = VALUE_COLUMN[attr.type]
    stored = _stored_value(attr, value)[column]
    assert attr.id is not None
    missing = (
        sa.select(
            ResourceModel.id,
            sa.literal(attr.id, sa.Integer),
            sa.literal(stored, getattr(ResourceAttributeModel, column).type),
        )
        .where(ResourceModel.type == type_name)
        .where(
            ~sa.exists().where(
                ResourceAttributeModel.resource_id == ResourceModel.id,
                ResourceAttributeModel.attribute_id == attr.id,
            )
        )
    )
    session.execute(
        sa.insert(ResourceAttributeModel).from_select(
            ["resource_id", "attribute_id", column], missing
        )
    )


def _check_stored_values(
    session: orm.Session, type_name: str, attr: AttributeDef
) -> None:
    """Refuse new constraints that values already stored break."""
    assert attr.id is not None
    column = getattr(ResourceAttributeModel, VALUE_COLUMN[attr.type])
    rows = session.execute(
        sa.select(ResourceAttributeModel.resource_id, column).where(
            ResourceAttributeModel.attribute_id == attr.id
        )
    )
    for resource_id, value in rows:
        if value is None or attr.type not in ("string", "number"):
            continue
        try:
            convert_value(attr.type, value, attr.name, attr.options)
        except ResourceError as exc:
            raise ResourceError(
                f"Invalid input: resource {resource_id} of type {type_name} "
                f"breaks the new definition of attribute {attr.name}: {exc}"
            ) from None
    if attr.required:
        lacking = session.scalar(
            sa.select(ResourceModel.id)
            .where(ResourceModel.type == type_name)
            .where(
                ~sa.exists().where(
                    ResourceAttributeModel.resource_id == ResourceModel.id,
                    ResourceAttributeModel.attribute_id == attr.id,
                )
            )
            .limit(1)
        )
        if lacking is not None:
            raise ResourceError(
                f"Invalid input: attribute {attr.name} cannot become "
                f"required: resource {lacking} has no value and no fill is "
                "given"
            )


def patch_type(session: orm.Session, name: str, operations: Any) -> TypeDef:
    """Apply a JSON patch (RFC 6902) to a resource type, as Gnocchi does.

    The patch applies to the type as the API shows it (``name``,
    ``state``, ``attributes``); the attributes that result are compared
    with the current ones:

    * a new attribute is added; with ``options: {"fill": value}`` every
      existing resource of the type gets *value*; a required one needs
      a ``fill``;
    * a missing attribute is removed with its values;
    * a changed attribute (``add`` of an existing one, ``replace``)
      takes its new definition (its type cannot change; a required one
      needs a ``fill``, given to the resources that have no value);
      values already stored must satisfy the new bounds;
    * an unchanged one (e.g. ``add`` of an attribute as it is) is kept.

    :raises ResourceError: an invalid patch or result, naming the
        operation or the attribute.
    :raises NoSuchResourceType: unknown *name*.
    """
    if name == GENERIC:
        raise ResourceError("Resource type generic cannot be updated")
    current = get_type(session, name)
    document = current.to_dict()
    apply_json_patch(document, operations)
    if document.get("name") != name:
        raise ResourceError(
            "Invalid input for name: a resource type cannot be renamed"
        )
    unknown = sorted(set(document) - {"name", "state", "attributes"})
    if unknown:
        raise ResourceError(f"Invalid input: unknown field {unknown[0]}")
    patched = document.get("attributes")
    if not isinstance(patched, dict):
        raise ResourceError("Invalid input for attributes: must be an object")
    adds: list[tuple[AttributeDef, Any]] = []
    updates: list[tuple[AttributeDef, Any]] = []
    for attr_name, body in patched.items():
        definition = parse_attribute_definition(attr_name, body)
        old = current.attributes.get(attr_name)
        if old is None:
            adds.append((definition, _fill_value(definition, body)))
            continue
        if definition.type != old.type:
            raise ResourceError(
                f"Type update is not available yet. Changing {old.type} to "
                f"{definition.type} for attribute {attr_name} of resource "
                f"{name}"
            )
        if (definition.required, dict(definition.options)) != (
            old.required,
            dict(old.options),
        ):
            definition = dataclasses.replace(definition, id=old.id)
            updates.append((definition, _fill_value(definition, body)))
    removes = [a for n, a in current.attributes.items() if n not in patched]
    if not adds and not updates and not removes:
        return current
    for attr in removes:
        session.execute(
            sa.delete(ResourceAttributeModel).where(
                ResourceAttributeModel.attribute_id == attr.id
            )
        )
        session.execute(
            sa.delete(ResourceTypeAttributeModel).where(
                ResourceTypeAttributeModel.id == attr.id
            )
        )
    for attr, fill in updates:
        session.execute(
            sa.update(ResourceTypeAttributeModel)
            .where(ResourceTypeAttributeModel.id == attr.id)
            .values(required=attr.required, options=dict(attr.options))
        )
        if fill is not None:
            _fill(session, name, attr, fill)
        _check_stored_values(session, name, attr)
    for attr, fill in adds:
        row = ResourceTypeAttributeModel(
            resource_type=name,
            name=attr.name,
            type=attr.type,
            required=attr.required,
            options=dict(attr.options),
        )
        session.add(row)
        session.flush()
        if fill is not None:
            _fill(session, name, dataclasses.replace(attr, id=row.id), fill)
    session.flush()
    bump_generation(session)
    LOG.info(
        "resource type %s patched: added %s, changed %s, removed %s",
        name,
        [a.name for a, _ in adds],
        [a.name for a, _ in updates],
        [a.name for a in removes],
    )
    return get_type(session, name)
