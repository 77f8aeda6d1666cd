"""Aodh's complex query language translated to SQL conditions.

A filter is a JSON tree: leaves ``{"<op>": {"<field>": value}}`` with op
in ``= != < > <= =< >= => =~`` (``=~`` is a regular expression) or
``{"in": {"<field>": [values]}}``; ``{"and": [...]}``, ``{"or": [...]}``
and ``{"not": expr}`` combine them.  Operators are case-insensitive;
``user`` and ``project`` are aliases of ``user_id`` and ``project_id``.
An order-by is ``[{"<field>": "asc"|"desc"}, ...]``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from alarmer import timeutils
from alarmer.alarms.tables import Alarm, AlarmHistory
from alarmer.errors import AlarmerError

_COMPARE = {
    "=": "__eq__",
    "!=": "__ne__",
    "<": "__lt__",
    ">": "__gt__",
    "<=": "__le__",
    "=<": "__le__",
    ">=": "__ge__",
    "=>": "__ge__",
}
ALIASES = {"user": "user_id", "project": "project_id"}
MAX_DEPTH = 32


class QueryError(AlarmerError, ValueError):
    """The filter or order-by is not valid; the message says where."""


@dataclasses.dataclass(frozen=True)
class Target:
    """The queryable fields of one table and their kinds."""

    model: type
    fields: Mapping[str, str]  # name -> "str" | "bool" | "datetime"

    def column(self, name: str) -> tuple[Any, str]:
        name = ALIASES.get(name, name)
        if name not in self.fields:
            raise QueryError(
                f"field {name!r} cannot be queried; valid fields: "
                + ", ".join(sorted(self.fields))
            )
        return getattr(self.model, name), self.fields[name]


ALARMS = Target(
    Alarm,
    {
        "alarm_id": "str",
        "name": "str",
        "description": "str",
        "type": "str",
        "enabled": "bool",
        "state": "str",
        "state_reason": "str",
        "state_timestamp": "datetime",
        "timestamp": "datetime",
        "evaluate_timestamp": "datetime",
        "severity": "str",
        "repeat_actions": "bool",
        "project_id": "str",
        "user_id": "str",
    },
)
HISTORY = Target(
    AlarmHistory,
    {
        "event_id": "str",
        "alarm_id": "str",
        "type": "str",
        "detail": "str",
        "user_id": "str",
        "project_id": "str",
        "on_behalf_of": "str",
        "severity": "str",
        "timestamp": "datetime",
    },
)


def _value(field: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        try:
            return timeutils.parse_datetime(value)
        except ValueError as exc:
            raise QueryError(f"{field}: {value!r} is not a timestamp") from exc
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise QueryError(f"{field}: {value!r} is not a boolean")
    if isinstance(value, (dict, list)):
        raise QueryError(f"{field}: {value!r} is not a scalar")
    return value if isinstance(value, str) else str(value)


def _leaf(
    target: Target, op: str, operand: Any, path: str
) -> sa.ColumnElement[bool]:
    if not isinstance(operand, dict) or len(operand) != 1:
        raise QueryError(
            f"{path}: {op!r} takes an object with exactly one field"
        )
    ((field, value),) = operand.items()
    column, kind = target.column(field)
    if op == "in":
        if not isinstance(value, list) or not value:
            raise QueryError(f"{path}: 'in' takes a non-empty list")
        return column.in_([_value(field, kind, v) for v in value])
    if op == "=~":
        if kind != "str" or not isinstance(value, str):
            raise QueryError(f"{path}: '=~' takes a text field and a regexp")
        try:
            re.compile(value)
        except re.error as exc:
            raise QueryError(f"{path}: bad regular expression: {exc}") from exc
        return column.regexp_match(value)
    converted = _value(field, kind, value)
    if converted is None:
        if op == "=":
            return column.is_(None)
        if op == "!=":
            return column.is_not(None)
        raise QueryError(f"{path}: null can only be compared with = or !=")
    return getattr(column, _COMPARE[op])(converted)


def _node(
    target: Target, expr: Any, path: str, depth: int
) -> sa.ColumnElement[bool]:
    if depth > MAX_DEPTH:
        raise QueryError(f"{path}: nested too deeply")
    if not isinstance(expr, dict) or len(expr) != 1:
        raise QueryError(
            f"{path}: expected an object with exactly one operator"
        )
    ((raw_op, operand),) = expr.items()
    op = str(raw_op).lower()
    if op in ("and", "or"):
        if not isinstance(operand, list) or not operand:
            raise QueryError(f"{path}: {op!r} takes a non-empty list")
        parts = [
            _node(target, item, f"{path}.{op}[{i}]", depth + 1)
            for i, item in enumerate(operand)
        ]
        return sa.and_(*parts) if op == "and" else sa.or_(*parts)
    if op == "not":
        return sa.not_(_node(target, operand, f"{path}.not", depth + 1))
    if op in _COMPARE or op in ("in", "=~"):
        return _leaf(target, op, operand, f"{path}.{raw_op}")
    raise QueryError(
        f"{path}: unknown operator {raw_op!r}; valid: and, or, not, in, =~, "
        + ", ".join(_COMPARE)
    )


def build_filter(target: Target, expr: Any) -> sa.ColumnElement[bool]:
    """Translate a decoded filter into a SQL condition.

    :raises QueryError: with a message naming the bad part.
    """
    return _node(target, expr, "filter", 0)


def build_orderby(target: Target, expr: Any) -> list[tuple[str, str]]:
    """Translate a decoded order-by into ``(field, direction)`` pairs.

    :raises QueryError: with a message naming the bad part.
    """
    if not isinstance(expr, list):
        raise QueryError("orderby: expected a list of {field: direction}")
    result = []
    for index, item in enumerate(expr):
        if not isinstance(item, dict) or len(item) != 1:
            raise QueryError(
                f"orderby[{index}]: expected one {{field: direction}}"
            )
        ((key, direction),) = item.items()
        field = str(key)  # a JSON object's keys are strings
        target.column(field)
        direction = str(direction).lower()
        if direction not in ("asc", "desc"):
            raise QueryError(
                f"orderby[{index}]: direction must be asc or desc, "
                f"not {direction!r}"
            )
        result.append((ALIASES.get(field, field), direction))
    return result
