"""The ``/v1/aggregates`` language: vocabulary, syntax, typed tree.

Operations arrive as JSON lists (``["aggregate", "mean", ["metric", ID,
"mean"]]``) or as the same tree written as an S-expression
(``"(aggregate mean (metric ID mean))"``).  :func:`parse_operations`
checks them into the frozen nodes below; :func:`metric_refs` lists the
``(reference, aggregation method)`` pairs the tree reads, which the
caller resolves to stored series before evaluating the tree with
:func:`alarmer.metrics.query.operations.evaluate`.

Every problem is an :class:`OperationError` whose message starts with
the position in the tree (``operations[2][0]: ...``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from alarmer.errors import AlarmerError
from alarmer.metrics import policy as ap

#: Reducers across series and over windows (Gnocchi's ``AGG_MAP``);
#: each also accepted with the ``rate:`` prefix.
METHODS = ("mean", "median", "std", "min", "max", "sum", "var", "count")
#: The ``fill`` modes besides a number.
FILLS = ("null", "dropna", "ffill", "bfill", "full_ffill", "full_bfill")
#: Binary operators: name -> numpy function (comparisons give 1.0/0.0).
BINARY = {
    "+": np.add,
    "add": np.add,
    "-": np.subtract,
    "sub": np.subtract,
    "*": np.multiply,
    "\u00d7": np.multiply,
    "mul": np.multiply,
    "/": np.true_divide,
    "\u00f7": np.true_divide,
    "div": np.true_divide,
    "**": np.power,
    "^": np.power,
    "pow": np.power,
    "%": np.mod,
    "mod": np.mod,
    "=": np.equal,
    "==": np.equal,
    "eq": np.equal,
    "<": np.less,
    "lt": np.less,
    ">": np.greater,
    "gt": np.greater,
    "<=": np.less_equal,
    "\u2264": np.less_equal,
    "le": np.less_equal,
    ">=": np.greater_equal,
    "\u2265": np.greater_equal,
    "ge": np.greater_equal,
    "!=": np.not_equal,
    "\u2260": np.not_equal,
    "ne": np.not_equal,
    "clip_min": np.fmax,
    "clip_max": np.fmin,
    "max": np.fmax,
}
#: Unary operators applied value by value.
UNARY = {
    "abs": np.absolute,
    "absolute": np.absolute,
    "neg": np.negative,
    "negative": np.negative,
    "cos": np.cos,
    "sin": np.sin,
    "tan": np.tan,
    "floor": np.floor,
    "ceil": np.ceil,
}
#: Unary operators over time (drop the first point).
DERIVATIVES = ("rateofchange", "rateofchangesec")
#: Deepest nesting of an operation tree (lists in either form).
MAX_DEPTH = 32


class QueryError(AlarmerError, ValueError):
    """The aggregates query cannot be parsed or evaluated."""


class OperationError(QueryError):
    """The operations are malformed, or cannot apply to these series.

    The message starts with the position of the problem in the tree.
    """


@dataclasses.dataclass(frozen=True)
class MetricOp:
    """Stored series: ``(reference, aggregation method)`` pairs."""

    refs: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class AggregateOp:
    """A method applied across the series of the children, per timestamp."""

    method: str
    children: tuple[Operation, ...]


@dataclasses.dataclass(frozen=True)
class BinaryOp:
    """An operator between two operands (operations or numbers)."""

    name: str
    left: Operation | float
    right: Operation | float


@dataclasses.dataclass(frozen=True)
class UnaryOp:
    """A function of each value, or a derivative over time."""

    name: str
    child: Operation


@dataclasses.dataclass(frozen=True)
class ClipOp:
    """Values bounded to ``[low, high]``."""

    child: Operation
    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class RollingOp:
    """A method over the last ``window`` points of each series."""

    method: str
    window: int
    child: Operation


@dataclasses.dataclass(frozen=True)
class ResampleOp:
    """Each series regrouped to a coarser granularity (ns)."""

    method: str
    granularity: int
    child: Operation


Operation = (
    MetricOp
    | AggregateOp
    | BinaryOp
    | UnaryOp
    | ClipOp
    | RollingOp
    | ResampleOp
)
#: The node classes, for ``isinstance`` checks.
NODES = (
    MetricOp,
    AggregateOp,
    BinaryOp,
    UnaryOp,
    ClipOp,
    RollingOp,
    ResampleOp,
)

_TOKEN = re.compile(r'\s*(?:(\()|(\))|"([^"]*)"|([^\s()"]+))')


def is_valid_method(method: str) -> bool:
    """True for a reducer of :data:`METHODS`, ``rate:`` allowed."""
    return method.removeprefix("rate:") in METHODS


def parse_sexpr(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``"(aggregate mean (metric ID mean))"`` into nested lists.

    :param max_depth: deepest nesting of parentheses accepted.
    :raises OperationError: unbalanced, nested deeper than *max_depth*
        or not one operation.
    """
    stack: list[list[Any]] = [[]]
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise OperationError(
                f"operations: unable to parse the expression at offset {pos}"
            )
        pos = match.end()
        opening, closing, quoted, atom = match.groups()
        if opening:
            if len(stack) > max_depth:
                raise OperationError(
                    f"operations: nested deeper than {max_depth} levels"
                )
            stack.append([])
        elif closing:
            if len(stack) == 1:
                raise OperationError(
                    f"operations: unbalanced ')' at offset {pos - 1}"
                )
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(quoted if quoted is not None else atom)
    if len(stack) != 1:
        raise OperationError("operations: unbalanced '(' in the expression")
    top = stack[0]
    if len(top) != 1 or not isinstance(top[0], list):
        raise OperationError(
            "operations: the expression must be one parenthesized operation"
        )
    return top[0]


def _is_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise OperationError(f"{where}: expected a number")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise OperationError(
                f"{where}: expected a number or an operation, got {value!r}"
            ) from None
    else:
        raise OperationError(f"{where}: expected a number or an operation")
    if not math.isfinite(result):
        raise OperationError(f"{where}: the number must be finite")
    return result


def _operand(raw: Any, where: str) -> Operation | float:
    if isinstance(raw, list):
        return parse_operations(raw, where)
    return _number(raw, where)


def _arity(raw: list[Any], where: str, count: int, usage: str) -> None:
    if len(raw) != count + 1:
        raise OperationError(f"{where}: '{raw[0]}' expects {usage}")


def _deeper_than(raw: Any, max_depth: int) -> bool:
    """True when lists nest deeper than *max_depth* in *raw*."""
    stack = [(raw, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list):
            if depth > max_depth:
                return True
            stack.extend((child, depth + 1) for child in node)
    return False


def parse_operations(
    raw: Any, where: str = "operations", *, max_depth: int = MAX_DEPTH
) -> Operation:
    """Validate the operation tree (JSON lists or S-expression).

    :param raw: the ``operations`` of the request body.
    :param where: the position of *raw* in the whole tree.
    :param max_depth: deepest nesting of the whole tree accepted
        (checked once, at the top).
    :raises OperationError: naming the position of the problem.
    """
    if where == "operations":
        if isinstance(raw, str):
            raw = parse_sexpr(raw, max_depth)
        elif _deeper_than(raw, max_depth):
            raise OperationError(
                f"operations: nested deeper than {max_depth} levels"
            )
    if not isinstance(raw, list) or not raw:
        raise OperationError(f"{where}: an operation must be a non-empty list")
    name = raw[0]
    if not isinstance(name, str):
        raise OperationError(f"{where}[0]: operation name must be a string")
    if name == "metric":
        return _parse_metric(raw, where)
    if name == "aggregate":
        return _parse_aggregate(raw, where)
    if name in ("rolling", "resample"):
        return _parse_window(raw, where)
    if name == "clip":
        _arity(raw, where, 3, "an operation, a minimum and a maximum")
        return ClipOp(
            child=parse_operations(raw[1], f"{where}[1]"),
            low=_number(raw[2], f"{where}[2]"),
            high=_number(raw[3], f"{where}[3]"),
        )
    if name in BINARY:
        _arity(raw, where, 2, "two operands")
        left = _operand(raw[1], f"{where}[1]")
        right = _operand(raw[2], f"{where}[2]")
        if not isinstance(left, NODES) and not isinstance(right, NODES):
            raise OperationError(
                f"{where}: '{name}' needs at least one operation operand"
            )
        return BinaryOp(name=name, left=left, right=right)
    if name in UNARY or name in DERIVATIVES:
        _arity(raw, where, 1, "one operation")
        return UnaryOp(
            name=name, child=parse_operations(raw[1], f"{where}[1]")
        )
    raise OperationError(f"{where}[0]: unknown operation '{name}'")


def _parse_metric(raw: list[Any], where: str) -> MetricOp:
    args = raw[1:]
    if len(args) == 2 and all(_is_str(a) for a in args):
        return MetricOp(refs=((args[0], args[1]),))
    if not args:
        raise OperationError(
            f"{where}: 'metric' expects a metric and an aggregation method"
        )
    refs = []
    for i, arg in enumerate(args, start=1):
        if (
            not isinstance(arg, list)
            or len(arg) != 2
            or not all(_is_str(a) for a in arg)
        ):
            raise OperationError(
                f"{where}[{i}]: expected [metric, aggregation method]"
            )
        refs.append((arg[0], arg[1]))
    return MetricOp(refs=tuple(refs))


def _check_method(method: object, where: str, allowed: Sequence[str]) -> str:
    if not isinstance(method, str) or (
        method.removeprefix("rate:") not in allowed
    ):
        raise OperationError(
            f"{where}: unknown aggregation method {method!r} (one of "
            f"{', '.join(allowed)}, optionally with rate:)"
        )
    return method


def _parse_aggregate(raw: list[Any], where: str) -> AggregateOp:
    if len(raw) < 3:
        raise OperationError(
            f"{where}: 'aggregate' expects a method and an operation"
        )
    method = _check_method(raw[1], f"{where}[1]", METHODS)
    children = tuple(
        parse_operations(child, f"{where}[{i}]")
        for i, child in enumerate(raw[2:], start=2)
    )
    return AggregateOp(method=method, children=children)


def _parse_window(raw: list[Any], where: str) -> Operation:
    name = raw[0]
    _arity(raw, where, 3, "a method, a size and an operation")
    method = _check_method(raw[1], f"{where}[1]", METHODS)
    child = parse_operations(raw[3], f"{where}[3]")
    if name == "rolling":
        size = _number(raw[2], f"{where}[2]")
        if not size.is_integer() or size < 1:
            raise OperationError(
                f"{where}[2]: the window must be an integer >= 1"
            )
        return RollingOp(method=method, window=int(size), child=child)
    try:
        gran = ap.parse_timespan(raw[2], f"{where}[2]")
    except ap.PolicyError as exc:
        raise OperationError(
            str(exc).removeprefix("Invalid value for ")
        ) from None
    return ResampleOp(method=method, granularity=gran, child=child)


def children(op: Operation) -> list[Operation]:
    """The operations directly under *op* (numbers left out)."""
    if isinstance(op, MetricOp):
        return []
    if isinstance(op, AggregateOp):
        return list(op.children)
    if isinstance(op, BinaryOp):
        return [x for x in (op.left, op.right) if isinstance(x, NODES)]
    return [op.child]


def metric_refs(op: Operation) -> list[tuple[str, str]]:
    """Every ``(reference, method)`` of the tree, in order."""
    if isinstance(op, MetricOp):
        return list(op.refs)
    refs: list[tuple[str, str]] = []
    for child in children(op):
        refs.extend(metric_refs(child))
    return refs
