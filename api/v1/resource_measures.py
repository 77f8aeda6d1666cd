"""Measures by resource: ``/v1/resource/{type}/{id}/metric/{name}/measures``
and ``/v1/batch/resources/metrics/measures``.

Metrics are named within their resource; the caller must be allowed to
see the resource.  Measures are validated whole before anything is
written (a 400 naming the first bad one stores nothing), then stored
through :func:`api.v1.measures.write` like every v1 write (aggregated by
the engine, metrics announced on the metric channel, 503 when concurrent
writers kept winning).
"""

from __future__ import annotations

import contextlib
from typing import Any

import flask
import sqlalchemy as sa

from alarmer.metrics import index as idx
from alarmer.metrics.index import resources as res
from alarmer.metrics.series import store as series_mod
from api import context, errors, params
from api.v1 import measures as measures_views
from api.v1 import validation as v
from api.v1.resources import (
    attach_metrics,
    caller,
    metric_name,
    metrics_of,
    named_metric_id,
)

blueprint = flask.Blueprint("v1_resource_measures", __name__, url_prefix="/v1")
errors.GNOCCHI.install(blueprint)


def _named_metric_info(
    type_name: str, resource_id: str, name: str, role: str
) -> idx.MetricInfo:
    metric_id = named_metric_id(type_name, resource_id, name, role)
    info = context.index().get_metric(metric_id)
    if info is None:
        raise errors.NotFound(
            f"Metric {name} does not exist for resource {resource_id}"
        )
    return info


@blueprint.post(
    "/resource/<string:type_name>/<string:resource_id>/metric/<string:name>"
    "/measures"
)
def add_named_measures(
    type_name: str, resource_id: str, name: str
) -> tuple[dict[str, int], int]:
    """POST measures to the metric *name* of a resource."""
    info = _named_metric_info(type_name, resource_id, name, context.MEMBER)
    stamps, values = v.measures(v.measures_body(), "measures")
    return measures_views.write(
        [(measures_views.metric_ref(info), stamps, values)]
    )


@blueprint.get(
    "/resource/<string:type_name>/<string:resource_id>/metric/<string:name>"
    "/measures"
)
def get_named_measures(
    type_name: str, resource_id: str, name: str
) -> flask.Response:
    """GET the aggregated measures of the metric *name* of a resource."""
    info = _named_metric_info(type_name, resource_id, name, context.READER)
    method = v.query_arg("aggregation") or "mean"
    start = v.query_timestamp("start")
    stop = v.query_timestamp("stop")
    granularity = v.query_granularity("granularity")
    v.query_bool("refresh")  # measures are aggregated on write
    if v.query_arg("resample"):
        raise v.bad("resample: resampling is not supported")
    if start is not None and stop is not None and stop < start:
        raise v.bad("stop: must not be before start")
    measures_views.check_method(info, method)
    if granularity is not None:
        measures_views.check_granularity(info, method, granularity)
    series = context.runtime().series.get_measures(
        info.id, method, granularity=granularity, start=start, stop=stop
    )
    return flask.jsonify(measures_views.series_to_json(series))


@blueprint.post("/batch/resources/metrics/measures")
def add_batch_by_resources() -> tuple[dict[str, int], int]:
    """POST ``{resource id: {metric name: measures}}`` at once.

    A metric is given as a list of measures or as ``{"measures": [...],
    "archive_policy_name": ..., "unit": ...}``; with
    ``create_metrics=true`` missing metrics are created (policy from the
    object or the archive policy rules).  All or nothing: any unknown
    resource or metric, or any bad measure, is a 400 and nothing is
    stored.
    """
    who = caller(context.MEMBER)
    create = params.v1_bool("create_metrics")
    body = v.measures_body()
    if not isinstance(body, dict):
        raise errors.APIError(
            "Invalid input: an object mapping resource ids to "
            "{metric name: measures} is required"
        )
    parsed: list[tuple[str, str, Any, Any, Any]] = []
    for given, metrics in body.items():
        if not isinstance(metrics, dict):
            raise errors.APIError(
                f"Invalid input for {given}: an object mapping metric names "
                "to measures is required"
            )
        for name, spec in metrics.items():
            field = f"{given}/{name}"
            definition: dict[str, Any] = {}
            raw = spec
            if isinstance(spec, dict):
                unknown = sorted(
                    set(spec) - {"measures", "archive_policy_name", "unit"}
                )
                if unknown or "measures" not in spec:
                    raise errors.APIError(
                        f"Invalid input for {field}: an object has "
                        "measures and optionally archive_policy_name, unit"
                    )
                raw = spec["measures"]
                definition = {k: spec[k] for k in spec if k != "measures"}
            parsed.append((given, metric_name(name), definition, raw, field))
    arrays = v.measures_many([(raw, field) for *_, raw, field in parsed])
    rt = context.runtime()
    targets: list[tuple[str, Any, Any]] = []
    with rt.db.session() as session, session.begin():
        rows: dict[str, res.ResourceModel] = {}
        unknown_resources = []
        uuids: dict[str, str] = {}
        for given in body:
            with contextlib.suppress(res.ResourceError):
                uuids[given] = res.resource_uuid(given, who.creator)
        # One query for every resource of the request.
        loaded = {
            row.id: row
            for row in session.scalars(
                sa.select(res.ResourceModel).where(
                    res.ResourceModel.id.in_(set(uuids.values()))
                )
            )
        }
        for given in body:
            rid = uuids.get(given)
            row = None if rid is None else loaded.get(rid)
            if row is None or not res.can_access(who, row):
                unknown_resources.append((str(rid or given), given))
            else:
                rows[given] = row
        if unknown_resources:
            raise errors.UnknownResources(unknown_resources)
        existing = metrics_of(session, [r.id for r in rows.values()])
        missing: dict[str, dict[str, Any]] = {}
        for (given, name, definition, _, _), (stamps, values) in zip(
            parsed, arrays, strict=True
        ):
            row = rows[given]
            metric_id = existing[row.id].get(name)
            if metric_id is None:
                if not create:
                    raise errors.APIError(
                        f"Unknown metrics: {name} of resource {given}"
                    )
                missing.setdefault(row.id, {})[name] = definition
            targets.append((f"{row.id}/{name}", stamps, values))
        for rid, definitions in missing.items():
            attach_metrics(session, rid, definitions, who)
        names = metrics_of(
            session, list(dict.fromkeys(r.id for r in rows.values()))
        )
    ids = {
        f"{rid}/{name}": mid
        for rid, metrics in names.items()
        for name, mid in metrics.items()
    }
    found = context.index().get_metric_policies(ids.values())
    return measures_views.write(
        [
            (series_mod.MetricRef(ids[key], found[ids[key]]), stamps, values)
            for key, stamps, values in targets
            if stamps.size
        ]
    )
