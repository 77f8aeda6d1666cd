"""Gnocchi's legacy cross-metric reads, still called by Grafana's Gnocchi
datasource and older clients.

* ``GET|POST /v1/aggregation/metric?metric=ID&metric=ID...`` (or the ids
  as a JSON list in the POST body);
* ``GET|POST /v1/aggregation/resource/<type>/metric/<name>``, the metric
  *name* of the resources matching a JSON search (the POST body), with
  ``groupby=<attribute>`` (repeatable) answering one entry per group;
* ``GET /v1/resource``: the resource types and their listing URLs.

Query parameters: ``aggregation`` (the stored method read, default
``mean``), ``reaggregation`` (the method across metrics, default the
same), ``start``, ``stop``, ``granularity``, ``needed_overlap``
(default 100), ``fill``, ``resample`` (a granularity), ``refresh``
(accepted; measures are always aggregated on write here).

Each request is the ``/v1/aggregates`` operation Gnocchi rewrites it
to, ``(aggregate REAGGREGATION (metric (ID AGGREGATION)...))`` (with a
``resample`` inside when asked), evaluated by
:func:`api.v1.aggregates.compute`; a single metric is answered with its
stored points, unaggregated.  The answer is the bare list of
``[timestamp, granularity, value]``.
"""

from __future__ import annotations

from typing import Any

import flask

from alarmer.metrics import index as idx
from alarmer.metrics import query
from api import context, errors
from api.v1 import aggregates
from api.v1 import resources as resource_views
from api.v1 import validation as v

#: Most resources a ``groupby`` request may group.
MAX_GROUPED = 10_000


def _params() -> aggregates.Params:
    start = v.query_timestamp("start")
    stop = v.query_timestamp("stop")
    if start is not None and stop is not None and stop < start:
        raise v.bad("stop: must not be before start")
    overlap = v.query_float("needed_overlap", minimum=0.0, maximum=100.0)
    fill_raw = v.query_arg("fill")
    fill: str | float | None = None
    if fill_raw:
        fill = fill_raw if fill_raw in query.FILLS else v.query_float("fill")
    return aggregates.Params(
        start=start,
        stop=stop,
        granularity=v.query_granularity("granularity"),
        needed_overlap=100.0 if overlap is None else overlap,
        fill=fill,
        details=False,
    )


def _methods() -> tuple[str, str]:
    aggregation = v.query_arg("aggregation") or "mean"
    reaggregation = v.query_arg("reaggregation") or aggregation
    return aggregation, reaggregation


def _operations(refs: list[Any], aggregation: str, reagg: str) -> list[Any]:
    series: list[Any] = ["metric", *refs]
    resample = v.query_granularity("resample")
    if resample is not None:
        series = ["resample", aggregation, resample / v.NS, series]
    return ["aggregate", reagg, series]


def _single(measures: dict[str, Any]) -> list[Any]:
    """The one list of points in a per-series answer."""
    node: Any = measures
    while isinstance(node, dict):
        if len(node) != 1:
            return []
        (node,) = node.values()
    return list(node or [])


def _answer(
    body: dict[str, Any],
    refs: list[list[str]],
    count: int,
    aggregation: str,
    reagg: str,
) -> list[Any]:
    params = _params()
    if count == 1 and v.query_arg("resample") is None:
        result = aggregates.compute(body, ["metric", *refs], params)
        return _single(result["measures"])
    result = aggregates.compute(
        body, _operations(refs, aggregation, reagg), params
    )
    return list(result["measures"].get("aggregated", []))


def by_metrics() -> flask.Response:
    """``/v1/aggregation/metric``: several metrics by id."""
    v.require_reader()
    ids = flask.request.args.getlist("metric")
    if flask.request.method == "POST" and flask.request.content_length:
        body = v.json_body()
        if isinstance(body, str):
            body = [body]
        if not isinstance(body, list) or not all(
            isinstance(i, str) for i in body
        ):
            raise v.bad("metric: a list of metric ids is expected")
        ids.extend(body)
    ids = list(dict.fromkeys(i.strip() for i in ids if i.strip()))
    if not ids:
        raise v.bad("metric: at least one metric id is required")
    aggregation, reagg = _methods()
    refs = [[i, aggregation] for i in ids]
    return flask.jsonify(_answer({}, refs, len(ids), aggregation, reagg))


def _search_body() -> Any:
    if v.query_arg("filter"):
        raise v.bad("filter: only JSON searches in the body are supported")
    if flask.request.method != "POST" or not flask.request.content_length:
        return {}
    body = v.json_body(allow_empty=True)
    return {} if body is None else body


def _grouped(
    resource_type: str, search: Any, groupby: list[str]
) -> list[tuple[dict[str, Any], list[str]]]:
    """``(group attributes, resource ids)`` of the matching resources."""
    who = resource_views.caller(context.READER)
    index = v.indexer()
    with v.runtime().db.read_session() as session:
        rtype = resource_views.load_type(session, resource_type)
        try:
            rows = index.search_resources(
                session, rtype, who, search, limit=MAX_GROUPED + 1
            )
        except idx.QueryError as exc:
            raise errors.APIError(f"Invalid input for search: {exc}") from None
        if len(rows) > MAX_GROUPED:
            raise v.bad(
                f"groupby: more than {MAX_GROUPED} resources match; "
                "narrow the search"
            )
        shown = index.show_resources(session, rtype, rows, details=True)
    groups: dict[tuple[Any, ...], tuple[dict[str, Any], list[str]]] = {}
    for resource in shown:
        values = {name: resource.get(name) for name in groupby}
        key = tuple(str(values[name]) for name in groupby)
        groups.setdefault(key, (values, []))[1].append(resource["id"])
    return [groups[key] for key in sorted(groups)]


def by_resources(type_name: str, name: str) -> flask.Response:
    """``/v1/aggregation/resource/<type>/metric/<name>``."""
    v.require_reader()
    resource_type, metric_name = type_name, name
    search = _search_body()
    aggregation, reagg = _methods()
    refs = [[metric_name, aggregation]]
    groupby = [g for g in flask.request.args.getlist("groupby") if g]
    if not groupby:
        return flask.jsonify(
            _by_search(resource_type, search, refs, aggregation, reagg)
        )
    answer = []
    for group, ids in _grouped(resource_type, search, groupby):
        answer.append(
            {
                "group": group,
                "measures": _by_search(
                    resource_type,
                    {"in": {"id": ids}},
                    refs,
                    aggregation,
                    reagg,
                ),
            }
        )
    return flask.jsonify(answer)


def _by_search(
    resource_type: str,
    search: Any,
    refs: list[list[str]],
    aggregation: str,
    reagg: str,
) -> list[Any]:
    body = {"resource_type": resource_type, "search": search}
    resolved = aggregates.resolve_references(
        body, [(metric_name, method) for metric_name, method in refs]
    )
    count = sum(len(series) for series in resolved.values())
    return _answer(body, refs, count, aggregation, reagg)


def resource_index() -> flask.Response:
    """``GET /v1/resource``: each resource type and the URL listing it.

    As Gnocchi answers it; the first call of Grafana's "test
    connection".
    """
    resource_views.caller(context.READER)
    base = flask.request.host_url.rstrip("/")
    with v.runtime().db.read_session() as session:
        types = v.indexer().list_types(session)
    return flask.jsonify(
        {t.name: f"{base}/v1/resource/{t.name}" for t in types}
    )


def register(bp: flask.Blueprint) -> None:
    """Add the legacy routes to the v1 blueprint."""
    bp.add_url_rule(
        "/resource", "resource_index", resource_index, methods=["GET"]
    )
    bp.add_url_rule(
        "/aggregation/metric",
        "aggregation_metric",
        by_metrics,
        methods=["GET", "POST"],
    )
    bp.add_url_rule(
        "/aggregation/resource/<type_name>/metric/<name>",
        "aggregation_resource",
        by_resources,
        methods=["GET", "POST"],
    )
