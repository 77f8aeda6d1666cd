"""``/v1/metric``: create, list, show and delete metrics.

Non-admin callers see and touch only the metrics their project created
(others' answer 404); admins see every metric.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import flask

from alarmer.metrics import index as idx
from api import context, errors, params, policy
from api.v1 import resources
from api.v1 import validation as v

LOG = logging.getLogger(__name__)

#: Largest page of a listing (Gnocchi's ``[api] max_limit`` default).
MAX_LIMIT = 1000

_NULLABLE_NAME = {"type": ["string", "null"], "maxLength": 255}

CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "archive_policy_name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
        },
        "name": _NULLABLE_NAME,
        "unit": {"type": ["string", "null"], "maxLength": 31},
        "resource_id": {"type": ["string", "null"], "maxLength": 36},
    },
    "additionalProperties": False,
}

#: Query parameters of the listing that filter on a column.
_FILTERS = (
    "name",
    "unit",
    "archive_policy_name",
    "creator",
    "user_id",
    "resource_id",
)


def get_visible(metric_id: str) -> idx.MetricInfo:
    """The metric *metric_id* if the caller may act on it.

    404 when it does not exist or the ``get metric`` rule hides it from
    the caller; 403 when the caller may read it but the route's own
    rule refuses (e.g. deleting a metric of one's resource that another
    project created).
    """
    info = v.indexer().get_metric(metric_id)
    if info is None:
        raise errors.NotFound(f"Metric {metric_id} does not exist")
    target = metric_target(info)
    if not context.allows("get metric", target):
        raise errors.NotFound(f"Metric {metric_id} does not exist")
    context.authorize(target)
    return info


def metric_target(info: idx.MetricInfo) -> dict[str, Any]:
    """The policy target of a metric: its creator, and the project of
    the resource it belongs to (``resource.project_id``)."""
    attributes: dict[str, Any] = {
        "id": info.id,
        "name": info.name,
        "unit": info.unit,
        "archive_policy_name": info.archive_policy_name,
        "creator": info.creator,
        "created_by_user_id": info.created_by_user_id,
        "created_by_project_id": info.created_by_project_id,
        "resource_id": info.resource_id,
    }
    if info.resource_id is not None:
        attributes["resource.project_id"] = resources.project_of(
            info.resource_id
        )
    return policy.object_target(attributes)


def create() -> tuple[dict[str, Any], int, dict[str, str]]:
    """POST: create a metric; the policy comes from the rules if omitted."""
    caller = v.require_member()
    body = v.json_body()
    v.check_schema(CREATE_SCHEMA, body)
    name = body.get("name")
    resource_id = body.get("resource_id")
    if resource_id is not None:
        resource_id = _owning_resource(resource_id, name)
    try:
        info = v.indexer().create_metric(
            archive_policy_name=body.get("archive_policy_name"),
            name=name,
            unit=body.get("unit"),
            resource_id=resource_id,
            user_id=caller.user_id,
            project_id=caller.project_id,
        )
    except idx.NamedMetricAlreadyExists as exc:
        # Gnocchi answers this route (unlike the resource's own metric
        # route) with a 400 and a structured description.
        raise errors.APIError(
            str(exc),
            description={
                "cause": "Named metric already exists",
                "detail": exc.name,
            },
        ) from None
    except idx.IndexerError as exc:
        raise v.index_error(exc) from None
    location = flask.url_for(
        "v1.metric_show", metric_id=info.id, _external=True
    )
    return info.to_dict(), 201, {"Location": location}


def _owning_resource(given: str, name: str | None) -> str:
    """The stored id of the resource a new metric is attached to.

    As Gnocchi: the name is then required, the resource (any type) is
    found by the id the client gave (a non-UUID id is the caller's),
    404 when absent or out of sight, 403 when the caller may not update
    it.
    """
    if name is None:
        raise errors.APIError(
            "Name cannot be null if resource_id is not null",
            description={
                "cause": "Attribute value error",
                "detail": "name",
                "reason": "Name cannot be null if resource_id is not null",
            },
        )
    who = resources.caller(context.MEMBER)
    with v.runtime().db.read_session() as session:
        _, row = resources.find_one(session, "generic", given, who)
        resource_id: str = row.id
    return resource_id


def list_() -> flask.Response:
    """GET: the caller's metrics, filtered, sorted and paged."""
    caller = v.require_reader()
    page = params.v1_page(MAX_LIMIT, sort_keys=idx.METRIC_SORT_KEYS)
    limit, marker, sorts = page.limit, page.marker, page.sorts
    filters: dict[str, Any] = {key: v.query_arg(key) for key in _FILTERS}
    project = v.query_arg("project_id")
    if project is not None and (
        caller.is_admin or project == caller.project_id
    ):
        metric_filter = idx.MetricFilter(project_id=project, **filters)
    elif project is not None:
        return flask.jsonify([])
    else:
        metric_filter = v.metric_filter(**filters)
    try:
        infos = v.indexer().list_metrics(
            metric_filter, limit=limit, marker=marker, sorts=sorts
        )
    except idx.NoSuchMetric:
        raise v.bad(f"marker: no metric {marker} to continue from") from None
    response = flask.jsonify([info.to_dict() for info in infos])
    if len(infos) == limit:
        args = [
            (k, val)
            for k, values in flask.request.args.lists()
            if k not in ("marker", "limit")
            for val in values
        ]
        args += [("limit", str(limit)), ("marker", infos[-1].id)]
        url = (
            flask.url_for("v1.metric_list", _external=True)
            + "?"
            + urllib.parse.urlencode(args)
        )
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


def show(metric_id: str) -> dict[str, Any]:
    """GET one metric, with its archive policy."""
    v.require_reader()
    return get_visible(metric_id).to_dict()


def delete(metric_id: str) -> tuple[str, int]:
    """DELETE a metric and its series (204)."""
    v.require_member()
    info = get_visible(metric_id)
    if not v.indexer().delete_metric(info.id):
        raise errors.NotFound(f"Metric {metric_id} does not exist")
    v.runtime().series.delete_metric(info.id)
    LOG.info("metric %s deleted with its series", info.id)
    return "", 204


def register(bp: flask.Blueprint) -> None:
    """Add the routes to the v1 blueprint."""
    bp.add_url_rule("/metric", "metric_create", create, methods=["POST"])
    bp.add_url_rule("/metric", "metric_list", list_, methods=["GET"])
    bp.add_url_rule(
        "/metric/<metric_id>", "metric_show", show, methods=["GET"]
    )
    bp.add_url_rule(
        "/metric/<metric_id>", "metric_delete", delete, methods=["DELETE"]
    )
