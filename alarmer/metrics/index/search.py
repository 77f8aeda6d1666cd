"""Gnocchi's JSON resource query language, compiled to SQL.

A query is a JSON object with one operator key:

- comparisons ``{"<op>": {"<attribute>": <value>}}`` with ``=`` (``==``,
  ``eq``), ``!=`` (``≠``, ``ne``), ``<`` (``lt``), ``>`` (``gt``),
  ``<=`` (``≤``, ``le``), ``>=`` (``≥``, ``ge``), ``like`` (strings, SQL
  ``%``/``_`` wildcards) and ``in`` (a list of values);
- ``{"and": [q, ...]}`` (``∧``), ``{"or": [q, ...]}`` (``\u2228``) and
  ``{"not": q}`` (``¬``).

``{}`` matches every resource.  ``null`` compares with ``=`` and ``!=``
only (``{"=": {"ended_at": null}}`` is "not ended").  Values are checked
against the attribute's type; an unknown operator or attribute, a
malformed node or a value of the wrong type raises :class:`QueryError`
naming the culprit (answered as a 400).

Typed attributes live in ``resource_attribute`` (one row per non-null
value), so a comparison on one becomes ``resource.id IN (SELECT
resource_id FROM resource_attribute WHERE attribute_id = :a AND
value_x <op> :v)``, served by the ``(attribute_id, value_x,
resource_id)`` index.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from alarmer.metrics.index.errors import QueryError, ResourceError
from alarmer.metrics.index.resources import resource_uuid
from alarmer.metrics.index.schema import (
    VALUE_COLUMN,
    ResourceAttributeModel,
    ResourceModel,
)
from alarmer.metrics.index.types import (
    GENERIC_COLUMNS,
    AttributeDef,
    TypeDef,
    convert_value,
)

#: Operator spellings of comparisons.
COMPARISONS: dict[str, str] = {
    "=": "eq",
    "==": "eq",
    "eq": "eq",
    "!=": "ne",
    "≠": "ne",
    "ne": "ne",
    "<": "lt",
    "lt": "lt",
    ">": "gt",
    "gt": "gt",
    "<=": "le",
    "≤": "le",
    "le": "le",
    ">=": "ge",
    "≥": "ge",
    "ge": "ge",
    "like": "like",
    "in": "in",
}
LOGICAL: dict[str, str] = {
    "and": "and",
    "∧": "and",
    "or": "or",
    "\u2228": "or",
    "not": "not",
    "¬": "not",
}
MAX_DEPTH = 32
MAX_IN_VALUES = 10_000

_SQL_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "gt": operator.gt,
    "le": operator.le,
    "ge": operator.ge,
}


def _describe(node: Any) -> str:
    text = repr(node)
    return text if len(text) <= 80 else text[:77] + "..."


class _Compiler:
    def __init__(self, rtype: TypeDef, creator: str | None) -> None:
        self.rtype = rtype
        self.creator = creator

    def compile(self, node: Any, depth: int = 0) -> sa.ColumnElement[bool]:
        if depth > MAX_DEPTH:
            raise QueryError(
                f"Invalid query: nested deeper than {MAX_DEPTH} levels"
            )
        if not isinstance(node, dict):
            raise QueryError(
                f"Invalid query: {_describe(node)} is not an object"
            )
        if not node:
            if depth == 0:
                return sa.true()
            raise QueryError("Invalid query: empty object inside a query")
        if len(node) != 1:
            raise QueryError(
                "Invalid query: one operator per object, got "
                f"{', '.join(sorted(map(str, node)))}"
            )
        (op, arg), *_ = node.items()
        key = op.lower() if isinstance(op, str) else op
        if key in LOGICAL:
            return self._logical(op, LOGICAL[key], arg, depth)
        if key in COMPARISONS:
            return self._comparison(op, COMPARISONS[key], arg)
        raise QueryError(f"Invalid operator: {op}")

    def _logical(
        self, op: str, kind: str, arg: Any, depth: int
    ) -> sa.ColumnElement[bool]:
        if kind == "not":
            return sa.not_(self.compile(arg, depth + 1))
        if not isinstance(arg, list) or not arg:
            raise QueryError(
                f"Invalid query: operator {op} expects a non-empty list of "
                "queries"
            )
        clauses = [self.compile(item, depth + 1) for item in arg]
        return sa.and_(*clauses) if kind == "and" else sa.or_(*clauses)

    def _comparison(
        self, op: str, kind: str, arg: Any
    ) -> sa.ColumnElement[bool]:
        if not isinstance(arg, dict) or len(arg) != 1:
            raise QueryError(
                f"Invalid query: operator {op} expects an object with "
                "exactly one attribute"
            )
        (name, value), *_ = arg.items()
        if name in GENERIC_COLUMNS:
            return self._generic(op, kind, name, value)
        attr = self.rtype.attributes.get(name)
        if attr is None:
            raise QueryError(
                f"Resource type {self.rtype.name} has no attribute {name}"
            )
        return self._typed(op, kind, attr, value)

    # Values -------------------------------------------------------------

    def _convert(self, name: str, attr_type: str, value: Any) -> Any:
        if name == "id":
            if not isinstance(value, str):
                raise QueryError(
                    f"Invalid value for attribute id: {value!r} is not a "
                    "string"
                )
            try:
                return resource_uuid(value, self.creator)
            except ResourceError as exc:
                raise QueryError(str(exc)) from None
        try:
            converted = convert_value(attr_type, value, name)
        except ResourceError as exc:
            raise QueryError(str(exc)) from None
        if attr_type == "bool":
            return 1.0 if converted else 0.0
        return converted

    def _values(self, op: str, kind: str, name: str, attr_type: str,
                value: Any) -> Any:  # fmt: skip
        if kind == "in":
            if not isinstance(value, list):
                raise QueryError(
                    f"Invalid value for attribute {name}: operator {op} "
                    "expects a list"
                )
            if len(value) > MAX_IN_VALUES:
                raise QueryError(
                    f"Invalid value for attribute {name}: at most "
                    f"{MAX_IN_VALUES} values in a list"
                )
            if any(v is None for v in value):
                raise QueryError(
                    f"Invalid value for attribute {name}: null is not "
                    f"allowed with operator {op}"
                )
            return [self._convert(name, attr_type, v) for v in value]
        if value is None:
            if kind not in ("eq", "ne"):
                raise QueryError(
                    f"Invalid value for attribute {name}: null only "
                    f"compares with = and !=, not {op}"
                )
            return None
        if kind == "like":
            if attr_type != "string":
                raise QueryError(
                    f"Invalid query: operator {op} applies to string "
                    f"attributes, {name} is a {attr_type}"
                )
            if not isinstance(value, str):
                raise QueryError(
                    f"Invalid value for attribute {name}: {value!r} is not "
                    "a string"
                )
            return value
        if isinstance(value, list | dict):
            raise QueryError(
                f"Invalid value for attribute {name}: operator {op} "
                "expects a single value"
            )
        return self._convert(name, attr_type, value)

    # Columns ------------------------------------------------------------

    def _generic(
        self, op: str, kind: str, name: str, value: Any
    ) -> sa.ColumnElement[bool]:
        column = getattr(ResourceModel, name)
        converted = self._values(op, kind, name, GENERIC_COLUMNS[name],
                                 value)  # fmt: skip
        return _apply(column, kind, converted)

    def _typed(
        self, op: str, kind: str, attr: AttributeDef, value: Any
    ) -> sa.ColumnElement[bool]:
        converted = self._values(op, kind, attr.name, attr.type, value)
        table = ResourceAttributeModel
        column = getattr(table, VALUE_COLUMN[attr.type])
        present = sa.select(table.resource_id).where(
            table.attribute_id == attr.id
        )
        if converted is None:
            # Null values have no row.
            if kind == "eq":
                return ResourceModel.id.not_in(present)
            return ResourceModel.id.in_(present)
        return ResourceModel.id.in_(
            present.where(_apply(column, kind, converted))
        )


def _apply(column: Any, kind: str, value: Any) -> sa.ColumnElement[bool]:
    if kind == "in":
        return column.in_(value)
    if kind == "like":
        return column.like(value)
    if value is None:
        return column.is_(None) if kind == "eq" else column.is_not(None)
    return _SQL_OPS[kind](column, value)


def compile_query(
    query: Any, rtype: TypeDef, creator: str | None = None
) -> sa.ColumnElement[bool]:
    """Compile a JSON *query* on resources of *rtype* to a where-clause.

    The clause does not restrict the type itself (see
    :func:`alarmer.metrics.index.resources.type_clause`).  *creator*
    maps non-UUID ``id`` values as the API does.

    :raises QueryError: naming the operator, attribute or value at fault.
    """
    if query is None:
        return sa.true()
    return _Compiler(rtype, creator).compile(query)


def parse_query(query: Any) -> Any:
    """A query as a JSON value; *query* may be the JSON text rules store.

    Blank text is the empty query ``{}``.

    :raises QueryError: the text is not JSON.
    """
    if isinstance(query, str):
        try:
            return json.loads(query) if query.strip() else {}
        except ValueError as exc:
            raise QueryError(
                f"Invalid query: not a JSON document: {exc}"
            ) from None
    return query
