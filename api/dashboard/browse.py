"""``/dashboard/resources`` and ``/dashboard/metrics/<id>``: browse the
metrics engine.

Resources are searched among those the caller may see (the v1 rules:
:func:`api.v1.resources.caller`), by type and by a part of their
original id; a metric (:func:`api.v1.metric.get_visible`) is plotted at
each granularity its archive policy keeps.
"""

from __future__ import annotations

import time
from typing import Any

import flask
import numpy as np

from alarmer.metrics import index as idx
from api import context, errors
from api.dashboard import plot as plot_mod
from api.dashboard.views import bp
from api.v1 import metric as metric_views
from api.v1 import resources as resource_views

#: Resources shown per search.
RESOURCES_SHOWN = 50
_NS = 1_000_000_000


@bp.route("/resources", methods=["GET"])
def resources() -> str:
    """Search the visible resources of a type."""
    who = context.require_reader()
    caller = resource_views.caller(context.READER)
    type_name = flask.request.args.get("type") or idx.GENERIC
    text = flask.request.args.get("q", "").strip()[:255]
    query: Any = None
    if text:
        escaped = text.replace("%", "").replace("_", "")
        query = {"like": {"original_resource_id": f"%{escaped}%"}}
    index = context.index()
    with context.runtime().db.read_session() as session:
        types = [t.name for t in index.list_types(session)]
        rtype = resource_views.load_type(session, type_name)
        rows = index.search_resources(
            session, rtype, caller, query, limit=RESOURCES_SHOWN
        )
        shown = index.show_resources(session, rtype, rows, details=False)
    return flask.render_template(
        "dashboard/resources.html",
        who=who,
        rows=shown,
        types=types,
        type_name=type_name,
        search=text,
    )


@bp.route("/metrics/<metric_id>", methods=["GET"])
def metric(metric_id: str) -> str:
    """One metric's measures at one of its granularities."""
    who = context.require_reader()
    info = metric_views.get_visible(metric_id)
    policy = info.archive_policy
    grans = sorted(item.granularity for item in policy.definition)
    method = flask.request.args.get("aggregation") or (
        "mean"
        if "mean" in policy.aggregation_methods
        else policy.aggregation_methods[0]
    )
    if method not in policy.aggregation_methods:
        raise errors.APIError(
            "aggregation must be one of "
            + ", ".join(policy.aggregation_methods),
            400,
        )
    raw = flask.request.args.get("granularity")
    try:
        gran = int(float(raw) * _NS) if raw else grans[0]
    except ValueError:
        gran = -1
    if gran not in grans:
        raise errors.APIError(
            "granularity must be one of "
            + ", ".join(f"{g / _NS:g}" for g in grans),
            400,
        )
    item = next(i for i in policy.definition if i.granularity == gran)
    points = min(item.points or plot_mod.MAX_POINTS, plot_mod.MAX_POINTS)
    start = (time.time_ns() - points * gran) // gran * gran
    (series,) = context.runtime().series.get_measures(
        info.id, method, gran, start, None
    )
    times, values = plot_mod.thin(
        np.asarray(series.timestamps), np.asarray(series.values, dtype=float)
    )
    document = {
        "times": (times / _NS).tolist(),
        "values": plot_mod.clean(values),
        "threshold": None,
        "operator": "",
        "problem": "" if len(series) else "no measures at this granularity",
        "marks": [],
    }
    return flask.render_template(
        "dashboard/metric.html",
        who=who,
        info=info,
        grans=[g / _NS for g in grans],
        gran=gran / _NS,
        methods=policy.aggregation_methods,
        method=method,
        problem=document["problem"],
        plot_json=plot_mod.script_json(document),
        count=len(series),
    )
