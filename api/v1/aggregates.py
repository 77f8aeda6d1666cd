"""``POST /v1/aggregates``: Gnocchi's dynamic aggregates.

The body is ``{"operations": ...}``, a JSON list or the same tree as an
S-expression string (``"(aggregate mean (metric ID mean))"``).  Supported
operations:

* ``["metric", ID, AGG]`` and ``["metric", [ID, AGG], [ID, AGG], ...]``:
  stored series;
* ``["aggregate", M, OP]``: M across the series of OP, per timestamp;
* Aodh's multi-sibling shape ``["aggregate", M, ["metric", ID1, AGG],
  ["metric", ID2, AGG], ...]`` (Gnocchi 4.7.1 rejects it): M across all
  of them.

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
import re
from collections.abc import Sequence
from typing import Any

import flask
import numpy as np

from alarmer import timeutils
from alarmer.engine import cross
from alarmer.engine import engine as engine_mod
from alarmer.engine import indexer as idx
from api import errors
from api.v1 import measures as measures_views
from api.v1 import validation as v

LOG = logging.getLogger(__name__)

NS = v.NS

#: Reducers of ``aggregate`` (Gnocchi's AGG_MAP), ``rate:`` allowed too.
ACROSS_METHODS = ("mean", "median", "std", "min", "max", "sum", "var", "count")
FILL_MODES = ("null", "dropna", "ffill", "bfill", "full_ffill", "full_bfill")
#: Operations of Gnocchi's grammar this service does not evaluate (yet).
UNSUPPORTED = {
    "rolling",
    "resample",
    "+",
    "add",
    "-",
    "sub",
    "*",
    "\u00d7",
    "mul",
    "/",
    "÷",
    "div",
    "**",
    "^",
    "pow",
    "%",
    "mod",
    "=",
    "==",
    "eq",
    "<",
    "lt",
    ">",
    "gt",
    "<=",
    "≤",
    "le",
    ">=",
    "≥",
    "ge",
    "!=",
    "≠",
    "ne",
    "clip",
    "clip_min",
    "clip_max",
    "abs",
    "absolute",
    "neg",
    "negative",
    "cos",
    "sin",
    "tan",
    "floor",
    "ceil",
    "rateofchange",
    "rateofchangesec",
}

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


Operation = MetricOp | AggregateOp


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
    if name in UNSUPPORTED:
        raise OperationError(
            f"{where}[0]: operation '{name}' is not supported"
        )
    raise OperationError(f"{where}[0]: unknown operation '{name}'")


def _parse_metric(raw: list[Any], where: str) -> MetricOp:
    args = raw[1:]
    if (
        len(args) == 2
        and all(_is_str(a) for a in args)
        and not any(isinstance(a, list) for a in args)
    ):
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


def _parse_aggregate(raw: list[Any], where: str) -> AggregateOp:
    if len(raw) < 3:
        raise OperationError(
            f"{where}: 'aggregate' expects a method and an operation"
        )
    method = raw[1]
    if not isinstance(method, str) or (
        method.removeprefix("rate:") not in ACROSS_METHODS
    ):
        raise OperationError(
            f"{where}[1]: unknown aggregation method {method!r} (one of "
            f"{', '.join(ACROSS_METHODS)}, optionally with rate:)"
        )
    children = tuple(
        parse_operations(child, f"{where}[{i}]")
        for i, child in enumerate(raw[2:], start=2)
    )
    return AggregateOp(method=method, children=children)


def metric_refs(op: Operation) -> list[tuple[str, str]]:
    """Every ``(reference, method)`` of the tree, in order."""
    if isinstance(op, MetricOp):
        return list(op.refs)
    refs: list[tuple[str, str]] = []
    for child in op.children:
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
        from api.v1 import resources as resource_views

        return resource_views.resolve_search_references(body, refs)
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
        if fill_raw in FILL_MODES:
            fill = fill_raw
        else:
            fill = v.query_float("fill")
            if fill is None:  # pragma: no cover - non-empty handled above
                raise v.bad("fill: must not be empty")
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
        self.engine = v.runtime().engine
        self._cache: dict[tuple[str, str, int], Any] = {}

    def series(self, ref: Reference, granularity: int) -> Any:
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


def _empty(granularity: int) -> engine_mod.Series:
    return engine_mod.Series(
        granularity=granularity,
        timestamps=np.empty(0, dtype=np.int64),
        values=np.empty(0, dtype=np.float64),
    )


def _evaluate(
    op: Operation,
    resolved: dict[tuple[str, str], list[Reference]],
    fetch: _Fetcher,
    granularity: int,
) -> list[Any]:
    """The series an operation produces at *granularity*."""
    if isinstance(op, MetricOp):
        return [
            fetch.series(ref, granularity)
            for key in op.refs
            for ref in resolved[key]
        ]
    inputs: list[Any] = []
    for child in op.children:
        inputs.extend(_evaluate(child, resolved, fetch, granularity))
    params = fetch.params
    try:
        return [
            cross.aggregate_across(
                inputs,
                op.method,
                start=params.start,
                stop=params.stop,
                needed_overlap=params.needed_overlap,
                fill=params.fill,
            )
        ]
    except cross.CrossAggregationError as exc:
        raise errors.APIError(str(exc), 400) from None


def _points(series: Any, fill: str | float | None) -> list[list[Any]]:
    values = np.asarray(series.values, dtype=np.float64)
    stamps = np.asarray(series.timestamps, dtype=np.int64)
    if fill == "dropna":
        keep = np.isfinite(values)
        values, stamps = values[keep], stamps[keep]
    gran = series.granularity / NS
    return [
        [timeutils.isoformat_ns(ts), gran, None if np.isnan(val) else val]
        for ts, val in zip(stamps.tolist(), values.tolist(), strict=True)
    ]


def align(
    series_list: Sequence[Any],
    params: Params,
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


def _per_series_output(
    references: Sequence[Reference],
    fetch: _Fetcher,
    grans: Sequence[int],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for gran in grans:
        series = [fetch.series(ref, gran) for ref in references]
        times, grid = align(series, fetch.params)
        stamps = [timeutils.isoformat_ns(t) for t in times.tolist()]
        g = gran / NS
        for ref, row in zip(references, grid, strict=True):
            node = out
            for part in ref.path:
                node = node.setdefault(part, {})
            points = node.setdefault(ref.aggregation, [])
            for ts, val in zip(stamps, row.tolist(), strict=True):
                if fetch.params.fill == "dropna" and not np.isfinite(val):
                    continue
                points.append([ts, g, None if np.isnan(val) else val])
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
    references = [r for key in dict.fromkeys(refs) for r in resolved[key]]
    grans = _granularities(references, params.granularity)
    fetch = _Fetcher(params)
    if isinstance(op, MetricOp):
        measures = _per_series_output(references, fetch, grans)
    else:
        aggregated: list[list[Any]] = []
        for gran in grans:
            for series in _evaluate(op, resolved, fetch, gran):
                aggregated.extend(_points(series, params.fill))
        measures = {"aggregated": aggregated}
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
