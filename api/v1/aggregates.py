"""``POST /v1/aggregates``: Gnocchi's dynamic aggregates, the HTTP view.

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

This module reads the request, resolves the references through the
index, fetches the series and renders the answer; the language itself
(parsing, alignment, operations) is :mod:`alarmer.metrics.query`.
Metric references are turned into index entries by
:func:`resolve_references`, the one place that knows how a reference
names a metric (by id, or by name within a resource search).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import flask
import numpy as np

from alarmer import timeutils
from alarmer.metrics import index as idx
from alarmer.metrics import query
from alarmer.metrics.series import store as series_mod
from api import context, errors
from api.v1 import measures as measures_views
from api.v1 import resources as resource_views
from api.v1 import validation as v

LOG = logging.getLogger(__name__)

NS = v.NS

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
    who = resource_views.caller(context.READER)
    type_name = body.get("resource_type", idx.GENERIC)
    query = body.get("search", {})
    if isinstance(query, str):
        raise errors.APIError(
            "Invalid input for search: only JSON queries are supported"
        )
    project = None if who.is_admin else (who.project_id or "")
    names = list(dict.fromkeys(ref for ref, _ in refs))
    found: dict[str, list[tuple[str, str, str]]] = {}
    index = v.indexer()
    with v.runtime().db.read_session() as session:
        try:
            for name in names:
                found[name] = index.group_metrics(
                    session,
                    type_name,
                    query,
                    name,
                    project_id=project,
                    creator=who.creator,
                )
        except idx.NoSuchResourceType as exc:
            raise errors.NotFound(str(exc)) from None
        except idx.QueryError as exc:
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


# ------------------------------------------------------------ request --


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
        fill = fill_raw if fill_raw in query.FILLS else v.query_float("fill")
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


def query_error(exc: query.QueryError) -> errors.APIError:
    """The 400 answering a query error (Gnocchi's texts).

    Malformed operations carry the ``Invalid input`` prefix; series that
    cannot be aggregated together (too little overlap) are answered with
    the bare reason, as Gnocchi does.
    """
    if isinstance(exc, query.OperationError):
        return v.bad(str(exc))
    return errors.APIError(str(exc), 400)


# ------------------------------------------------------------- answer --


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
    v.require_reader()
    body = v.json_body()
    v.check_schema(BODY_SCHEMA, body)
    params = parse_params()
    return compute(body, body["operations"], params)


def compute(
    body: dict[str, Any], operations: Any, params: Params
) -> dict[str, Any]:
    """Evaluate *operations* (a list or S-expression) as ``post`` does.

    *body* holds the ``search`` and ``resource_type`` selecting metrics
    by name, if any; the answer is ``{"measures": ...}`` (and
    ``references`` with ``details``).
    """
    try:
        op = query.parse_operations(operations)
    except query.OperationError as exc:
        raise query_error(exc) from None
    refs = query.metric_refs(op)
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
        try:
            block = query.evaluate(
                op,
                gran,
                series,
                rows,
                fill=params.fill,
                needed_overlap=params.needed_overlap,
                start=params.start,
                stop=params.stop,
            )
        except query.QueryError as exc:
            raise query_error(exc) from None
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
        for index, row in zip(block.rows, block.values, strict=True):
            ref = references[index]
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
