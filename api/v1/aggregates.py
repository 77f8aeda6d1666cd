"""``POST /v1/aggregates``: Gnocchi's dynamic aggregates.

The body is ``{"operations": ...}``, a JSON list or the same tree as an
S-expression string (``"(aggregate mean (metric ID mean))"``).  Supported
operations:

* ``["metric", ID, AGG]`` and ``["metric", [ID, AGG], [ID, AGG], ...]``:
  stored series;
* ``["aggregate", M, OP]``: M across the series of OP, per timestamp
  (``mean median std min max sum var count``, ``rate:`` + each);
  Aodh's multi-sibling shape ``["aggregate", M, ["metric", ID1, AGG],
  ["metric", ID2, AGG], ...]`` (Gnocchi 4.7.1 rejects it) aggregates
  across all of them;
* ``["rolling", M, N, OP]``, ``["resample", M, GRANULARITY, OP]``;
* arithmetic and comparisons between operations and numbers (``+ - * /
  ** % = != < > <= >= clip_min clip_max max``), ``clip``, ``abs neg cos
  sin tan floor ceil``, ``rateofchange`` and ``rateofchangesec``.

Every referenced series is first put on one time grid (``fill`` and
``needed_overlap`` apply there), then the tree is evaluated on it.  The
answer is ``{"aggregated": [...]}`` when the result is one combined
series, else one list per series, as Gnocchi answers.

Query parameters: ``start``, ``stop``, ``granularity``, ``needed_overlap``
(0-100, default 100), ``fill`` (``null``, ``dropna``, ``ffill``,
``bfill``, ``full_ffill``, ``full_bfill`` or a number; ``dropna`` when
neither ``fill`` nor ``needed_overlap`` is given) and ``details``.

Metric references are turned into index entries by
:func:`resolve_references`, the one place that knows how a reference
names a metric (by id today; by name within a resource search later).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import flask
import numpy as np

from alarmer import timeutils
from alarmer.metrics import policy as ap
from alarmer.metrics.index import indexer as idx
from alarmer.metrics.index import resources as res
from alarmer.metrics.index import search as srch
from alarmer.metrics.series import cross
from alarmer.metrics.series import store as series_mod
from api import errors
from api.v1 import measures as measures_views
from api.v1 import resources as resource_views
from api.v1 import validation as v

LOG = logging.getLogger(__name__)

NS = v.NS

#: Reducers of ``aggregate`` (Gnocchi's AGG_MAP), ``rate:`` allowed too.
ACROSS_METHODS = ("mean", "median", "std", "min", "max", "sum", "var", "count")
FILL_MODES = ("null", "dropna", "ffill", "bfill", "full_ffill", "full_bfill")
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
#: Methods of ``rolling`` and ``resample`` (Gnocchi 4.7.1's AGG_MAP).
WINDOW_METHODS = ACROSS_METHODS

BODY_SCHEMA = {
    "type": "object",
    "properties": {
        "operations": {"type": ["array", "string"], "minLength": 1},
        "search": {"type": ["object", "string"]},
        "resource_type": {"type": "string", "minLength": 1},
    },
    "required": ["operations"],
    "additionalProperties": False,
}


# ------------------------------------------------------------ parsing --


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


class OperationError(ValueError):
    """The operations are malformed; the message names the position."""


_TOKEN = re.compile(r'\s*(?:(\()|(\))|"([^"]*)"|([^\s()"]+))')


def parse_sexpr(text: str) -> Any:
    """Parse ``"(aggregate mean (metric ID mean))"`` into nested lists."""
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


def parse_operations(raw: Any, where: str = "operations") -> Operation:
    """Validate the operation tree (JSON lists) into typed nodes.

    :raises OperationError: naming the position of the problem.
    """
    if isinstance(raw, str) and where == "operations":
        raw = parse_sexpr(raw)
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
        if not isinstance(left, _NODES) and not isinstance(right, _NODES):
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
    method = _check_method(raw[1], f"{where}[1]", ACROSS_METHODS)
    children = tuple(
        parse_operations(child, f"{where}[{i}]")
        for i, child in enumerate(raw[2:], start=2)
    )
    return AggregateOp(method=method, children=children)


def _parse_window(raw: list[Any], where: str) -> Operation:
    name = raw[0]
    _arity(raw, where, 3, "a method, a size and an operation")
    method = _check_method(raw[1], f"{where}[1]", WINDOW_METHODS)
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


_NODES = (
    MetricOp,
    AggregateOp,
    BinaryOp,
    UnaryOp,
    ClipOp,
    RollingOp,
    ResampleOp,
)


def _children(op: Operation) -> list[Operation]:
    if isinstance(op, MetricOp):
        return []
    if isinstance(op, AggregateOp):
        return list(op.children)
    if isinstance(op, BinaryOp):
        return [x for x in (op.left, op.right) if isinstance(x, _NODES)]
    return [op.child]


def metric_refs(op: Operation) -> list[tuple[str, str]]:
    """Every ``(reference, method)`` of the tree, in order."""
    if isinstance(op, MetricOp):
        return list(op.refs)
    refs: list[tuple[str, str]] = []
    for child in _children(op):
        refs.extend(metric_refs(child))
    return refs


# ---------------------------------------------------------- resolving --


@dataclasses.dataclass(frozen=True)
class Reference:
    """A resolved series: where it appears in the output, which metric.

    ``path`` keys the per-series output (``(metric_id,)`` for references
    by id; a resource search would use ``(resource_id, metric_name)``).
    """

    key: tuple[str, str]
    path: tuple[str, ...]
    metric: idx.MetricInfo
    aggregation: str


def resolve_references(
    body: dict[str, Any], refs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[Reference]]:
    """Map each ``(reference, method)`` of the operations to series.

    A reference is a metric id the caller may see; the method must be
    stored by its archive policy.  (Selecting metrics by name among the
    resources of a search extends this function.)

    :raises APIError: 404 naming the unknown metrics or methods.
    """
    if "search" in body or "resource_type" in body:
        return resolve_search_references(body, refs)
    wanted = list(dict.fromkeys(ref for ref, _ in refs))
    found = v.indexer().get_metrics(wanted, v.metric_filter())
    missing = [ref for ref in wanted if ref not in found]
    if missing:
        raise errors.NotFound(
            f"Metric(s) {', '.join(missing)} do not exist"
            if len(missing) > 1
            else f"Metric {missing[0]} does not exist"
        )
    result: dict[tuple[str, str], list[Reference]] = {}
    for ref, method in refs:
        info = found[ref]
        measures_views.check_method(info, method)
        result[(ref, method)] = [
            Reference(
                key=(ref, method),
                path=(info.id,),
                metric=info,
                aggregation=method,
            )
        ]
    return result


def resolve_search_references(
    body: dict[str, Any], refs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[Reference]]:
    """Series of ``/v1/aggregates`` with ``search`` and ``resource_type``.

    Each ``(metric name or pattern, method)`` of the operations becomes
    one series per matching metric of the visible resources matching the
    search now, keyed ``(resource id, metric name)`` in the output.
    """
    who = resource_views.caller()
    type_name = body.get("resource_type", res.GENERIC)
    query = body.get("search", {})
    if isinstance(query, str):
        raise errors.APIError(
            "Invalid input for search: only JSON queries are supported"
        )
    project = None if who.is_admin else (who.project_id or "")
    names = list(dict.fromkeys(ref for ref, _ in refs))
    found: dict[str, list[tuple[str, str, str]]] = {}
    with v.runtime().db.read_session() as session:
        try:
            for name in names:
                found[name] = res.resolve_resource_metrics(
                    session,
                    type_name,
                    query,
                    name,
                    project_id=project,
                    creator=who.creator,
                )
        except srch.QueryError as exc:
            raise errors.APIError(f"Invalid input for search: {exc}") from None
    if not any(found.values()):
        raise errors.APIError(f"Metrics not found: {', '.join(names)}")
    infos = v.indexer().get_metrics(
        mid for rows in found.values() for _, _, mid in rows
    )
    result: dict[tuple[str, str], list[Reference]] = {}
    for name, method in refs:
        series = []
        for rid, metric_name, mid in found[name]:
            info = infos.get(mid)
            if info is None:  # deleted meanwhile
                continue
            measures_views.check_method(info, method)
            series.append(
                Reference(
                    key=(name, method),
                    path=(rid, metric_name),
                    metric=info,
                    aggregation=method,
                )
            )
        result[(name, method)] = series
    return result


# --------------------------------------------------------- evaluation --


@dataclasses.dataclass(frozen=True)
class Params:
    """The query parameters of one request."""

    start: int | None
    stop: int | None
    granularity: int | None
    needed_overlap: float
    fill: str | float | None
    details: bool


def parse_params() -> Params:
    """Read and check the query string."""
    start = v.query_timestamp("start")
    stop = v.query_timestamp("stop")
    if start is not None and stop is not None and stop < start:
        raise v.bad("stop: must not be before start")
    granularity = v.query_granularity("granularity")
    overlap = v.query_float("needed_overlap", minimum=0.0, maximum=100.0)
    fill_raw = v.query_arg("fill")
    fill: str | float | None = None
    if fill_raw is not None and fill_raw != "":
        fill = fill_raw if fill_raw in FILL_MODES else v.query_float("fill")
    if fill is None and overlap is None:
        fill = "dropna"
    if v.query_bool("use_history"):
        raise v.bad("use_history: resource history is not available")
    if v.query_arg("groupby"):
        raise v.bad("groupby: grouping needs a resource search")
    return Params(
        start=start,
        stop=stop,
        granularity=granularity,
        needed_overlap=100.0 if overlap is None else overlap,
        fill=fill,
        details=v.query_bool("details"),
    )


def _granularities(
    references: Sequence[Reference], requested: int | None
) -> list[int]:
    if requested is not None:
        for ref in references:
            measures_views.check_granularity(
                ref.metric, ref.aggregation, requested
            )
        return [requested]
    common: set[int] | None = None
    for ref in references:
        grans = set(ref.metric.archive_policy.granularities)
        common = grans if common is None else common & grans
    if not common:
        raise v.bad("No granularity match")
    return sorted(common, reverse=True)


class _Fetcher:
    """Reads stored series from the engine, once per (series, granularity)."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.engine = v.runtime().series
        self._cache: dict[tuple[str, str, int], series_mod.Series] = {}

    def series(self, ref: Reference, granularity: int) -> series_mod.Series:
        key = (ref.metric.id, ref.aggregation, granularity)
        if key not in self._cache:
            found = self.engine.get_measures(
                ref.metric.id,
                ref.aggregation,
                granularity=granularity,
                start=self.params.start,
                stop=self.params.stop,
            )
            self._cache[key] = found[0] if found else _empty(granularity)
        return self._cache[key]


def _empty(granularity: int) -> series_mod.Series:
    return series_mod.Series(
        granularity=granularity,
        timestamps=np.empty(0, dtype=np.int64),
        values=np.empty(0, dtype=np.float64),
    )


def align(
    series_list: Sequence[series_mod.Series], params: Params
) -> tuple[np.ndarray, np.ndarray]:
    """Put series on one time grid with Gnocchi's fill/overlap rules.

    :returns: (timestamps, values matrix ``n_series x n_times``).
    :raises APIError: 400 when the overlap is below ``needed_overlap``.
    """
    if series_list:
        times = np.unique(
            np.concatenate([np.asarray(s.timestamps) for s in series_list])
        )
    else:
        times = np.empty(0, dtype=np.int64)
    fill = params.fill
    filler = np.nan if fill is None or isinstance(fill, str) else fill
    grid = np.full((len(series_list), times.size), filler, dtype=np.float64)
    for i, s in enumerate(series_list):
        pos = np.searchsorted(times, np.asarray(s.timestamps))
        grid[i, pos] = np.asarray(s.values, dtype=np.float64)
    if fill is None and times.size:
        complete = np.flatnonzero(~np.isnan(grid).any(axis=0))
        if complete.size == 0 and params.needed_overlap > 0:
            raise errors.APIError("No overlap", 400)
        if complete.size:
            last = complete[-1] + 1 if params.stop is None else times.size
            first = complete[0] if params.start is None else 0
            times, grid = times[first:last], grid[:, first:last]
        percent = complete.size * 100.0 / times.size if times.size else 100.0
        if percent < params.needed_overlap:
            raise errors.APIError(
                f"Less than {params.needed_overlap:g}% of datapoints "
                f"overlap in this timespan ({percent:.2f}%)",
                400,
            )
    elif fill == "ffill":
        grid = cross.forward_fill(grid)
    elif fill == "bfill":
        grid = cross.backward_fill(grid)
    elif fill == "full_ffill":
        grid = cross.backward_fill(cross.forward_fill(grid))
    elif fill == "full_bfill":
        grid = cross.forward_fill(cross.backward_fill(grid))
    return times, grid


@dataclasses.dataclass
class Block:
    """What an operation produces: series on common timestamps.

    ``refs`` labels each row while the series keep their identity;
    ``aggregated`` means one combined series (output as ``aggregated``).
    """

    granularity: int
    times: np.ndarray
    values: np.ndarray
    refs: list[Reference]
    aggregated: bool


@dataclasses.dataclass
class _Context:
    granularity: int
    times: np.ndarray
    grid: np.ndarray
    rows: dict[tuple[str, str], list[int]]
    references: list[Reference]


def _reduce(values: np.ndarray, method: str) -> np.ndarray:
    """Reduce axis 0 of *values* with *method* (``rate:`` diffs after)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return cross.reduce_columns(values, method.removeprefix("rate:"))


def _rate(block: Block, method: str) -> Block:
    if not method.startswith("rate:"):
        return block
    return dataclasses.replace(
        block,
        times=block.times[1:],
        values=np.diff(block.values, axis=1),
    )


def _same_times(blocks: Sequence[Block], where: str) -> None:
    first = blocks[0]
    for other in blocks[1:]:
        if other.granularity != first.granularity or not np.array_equal(
            other.times, first.times
        ):
            raise v.bad(
                f"operations: '{where}' combines series with different "
                "timestamps or granularities"
            )


def _evaluate(op: Operation, ctx: _Context) -> Block:
    """Evaluate *op* over the aligned grid of one granularity."""
    if isinstance(op, MetricOp):
        rows = [r for key in dict.fromkeys(op.refs) for r in ctx.rows[key]]
        return Block(
            granularity=ctx.granularity,
            times=ctx.times,
            values=ctx.grid[rows],
            refs=[ctx.references[r] for r in rows],
            aggregated=False,
        )
    if isinstance(op, AggregateOp):
        blocks = [_evaluate(child, ctx) for child in op.children]
        _same_times(blocks, "aggregate")
        stacked = np.vstack([b.values for b in blocks])
        reduced = Block(
            granularity=blocks[0].granularity,
            times=blocks[0].times,
            values=_reduce(stacked, op.method)[np.newaxis, :],
            refs=[],
            aggregated=True,
        )
        return _rate(reduced, op.method)
    if isinstance(op, BinaryOp):
        return _binary(op, ctx)
    child = _evaluate(op.child, ctx)
    if isinstance(op, UnaryOp):
        return _unary(op.name, child)
    if isinstance(op, ClipOp):
        return dataclasses.replace(
            child, values=np.clip(child.values, op.low, op.high)
        )
    if isinstance(op, RollingOp):
        return _rolling(op, child)
    return _resample(op, child)


def _binary(op: BinaryOp, ctx: _Context) -> Block:
    left = op.left if isinstance(op.left, float) else _evaluate(op.left, ctx)
    right = (
        op.right if isinstance(op.right, float) else _evaluate(op.right, ctx)
    )
    blocks = [b for b in (left, right) if isinstance(b, Block)]
    if len(blocks) == 2:
        _same_times(blocks, op.name)
        rows = {b.values.shape[0] for b in blocks}
        if len(rows) > 1 and 1 not in rows:
            counts = " and ".join(str(n) for n in sorted(rows))
            raise v.bad(f"operations: '{op.name}' between {counts} series")
    lhs = left.values if isinstance(left, Block) else left
    rhs = right.values if isinstance(right, Block) else right
    with np.errstate(all="ignore"):
        values = np.asarray(BINARY[op.name](lhs, rhs), dtype=np.float64)
    if values.ndim == 1:  # pragma: no cover - a Block operand is 2-D
        values = values[np.newaxis, :]
    base = max(blocks, key=lambda b: b.values.shape[0])
    aggregated = values.shape[0] == 1 and (
        len(blocks) == 2 or any(b.aggregated for b in blocks)
    )
    return Block(
        granularity=base.granularity,
        times=base.times,
        values=values,
        refs=[] if aggregated else base.refs,
        aggregated=aggregated,
    )


def _unary(name: str, block: Block) -> Block:
    if name in UNARY:
        with np.errstate(all="ignore"):
            return dataclasses.replace(block, values=UNARY[name](block.values))
    diff = np.diff(block.values, axis=1)
    if name == "rateofchangesec":
        diff = diff / (np.diff(block.times) / NS)
    return dataclasses.replace(block, times=block.times[1:], values=diff)


def _rolling(op: RollingOp, block: Block) -> Block:
    size = block.times.size
    if op.window > size:
        raise v.bad(
            f"operations: rolling window {op.window} is greater than the "
            f"series length {size}"
        )
    windows = np.lib.stride_tricks.sliding_window_view(
        block.values, op.window, axis=1
    )
    values = (
        np.vstack(
            [_reduce(row_windows.T, op.method) for row_windows in windows]
        )
        if windows.shape[0]
        else np.empty((0, size - op.window + 1))
    )
    rolled = dataclasses.replace(
        block, times=block.times[op.window - 1 :], values=values
    )
    return _rate(rolled, op.method)


def _resample(op: ResampleOp, block: Block) -> Block:
    keys = block.times - block.times % op.granularity
    buckets, inverse = np.unique(keys, return_inverse=True)
    values = np.full((block.values.shape[0], buckets.size), np.nan)
    for j in range(buckets.size):
        columns = block.values[:, inverse == j]
        values[:, j] = _reduce(columns.T, op.method)
    resampled = dataclasses.replace(
        block, granularity=op.granularity, times=buckets, values=values
    )
    return _rate(resampled, op.method)


def _points(
    times: np.ndarray, row: np.ndarray, granularity: int, fill: object
) -> list[list[Any]]:
    g = granularity / NS
    out = []
    for ts, val in zip(times.tolist(), row.tolist(), strict=True):
        finite = math.isfinite(val)
        if not finite and fill == "dropna":
            continue
        out.append([timeutils.isoformat_ns(ts), g, val if finite else None])
    return out


def post() -> dict[str, Any]:
    """POST: evaluate the operations over the stored series."""
    body = v.json_body()
    v.check_schema(BODY_SCHEMA, body)
    params = parse_params()
    try:
        op = parse_operations(body["operations"])
    except OperationError as exc:
        raise v.bad(str(exc)) from None
    refs = metric_refs(op)
    resolved = resolve_references(body, refs)
    keys = list(dict.fromkeys(refs))
    references = [r for key in keys for r in resolved[key]]
    rows: dict[tuple[str, str], list[int]] = {}
    start = 0
    for key in keys:
        rows[key] = list(range(start, start + len(resolved[key])))
        start += len(resolved[key])
    grans = _granularities(references, params.granularity)
    fetch = _Fetcher(params)
    aggregated: list[list[Any]] = []
    per_series: dict[str, Any] = {}
    is_aggregated = False
    for gran in grans:
        series = [fetch.series(ref, gran) for ref in references]
        times, grid = align(series, params)
        block = _evaluate(op, _Context(gran, times, grid, rows, references))
        is_aggregated = block.aggregated
        if block.aggregated:
            aggregated.extend(
                _points(
                    block.times,
                    block.values[0],
                    block.granularity,
                    params.fill,
                )
            )
            continue
        for ref, row in zip(block.refs, block.values, strict=True):
            node = per_series
            for part in ref.path:
                node = node.setdefault(part, {})
            node.setdefault(ref.aggregation, []).extend(
                _points(block.times, row, block.granularity, params.fill)
            )
    measures = {"aggregated": aggregated} if is_aggregated else per_series
    result: dict[str, Any] = {"measures": measures}
    if params.details:
        seen: dict[str, idx.MetricInfo] = {}
        for ref in references:
            seen.setdefault(ref.metric.id, ref.metric)
        result["references"] = [info.to_dict() for info in seen.values()]
    return result


def register(bp: flask.Blueprint) -> None:
    """Add the route to the v1 blueprint."""
    bp.add_url_rule("/aggregates", "aggregates", post, methods=["POST"])
