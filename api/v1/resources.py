"""``/v1/resource``: Gnocchi's resources and their named metrics.

Resources are created with their typed attributes and, optionally, their
metrics (``"metrics": {"cpu": "<metric id>" | {"archive_policy_name":
...}}``), listed (paged, sorted, scoped to the caller's project unless
admin), shown, patched and deleted (with their metrics).  Bad input is a
400 naming the field; nothing is stored then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import flask
from oslo_config import cfg
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from alarmer.metrics import index as idx
from api import app as app_mod
from api import errors, identity

LOG = logging.getLogger(__name__)

blueprint = flask.Blueprint("v1_resources", __name__, url_prefix="/v1")

DEFAULT_MAX_LIMIT = 1000


# ------------------------------------------------------------- helpers


def json_body(*, allow_empty: bool = False) -> Any:
    """The request's JSON body; a 400 when it is not JSON."""
    data = flask.request.get_data(cache=True)
    if not data.strip():
        if allow_empty:
            return None
        raise errors.APIError("Invalid input: a JSON body is required")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.APIError(
            f"Invalid input: body is not JSON: {exc}"
        ) from None


def indexer() -> idx.Indexer:
    """The metric index of the application serving this request."""
    return app_mod.runtime().index


def caller() -> idx.Caller:
    """The caller of this request; a 401 when it is anonymous."""
    ident = identity.current()
    if ident.user_id is None and ident.project_id is None:
        raise errors.Unauthorized("Unable to determine current user")
    return idx.Caller(ident.user_id, ident.project_id, ident.is_admin)


def load_type(session: orm.Session, name: str) -> idx.TypeDef:
    """The resource type *name*, or a 404 naming it."""
    try:
        return indexer().get_type(session, name)
    except idx.NoSuchResourceType as exc:
        raise errors.NotFound(str(exc)) from None


def max_limit() -> int:
    """``[api] max_limit`` of this process."""
    conf = app_mod.runtime().conf
    try:
        return int(conf.api.max_limit)
    except (AttributeError, cfg.NoSuchOptError):
        return DEFAULT_MAX_LIMIT


def bool_arg(name: str, default: bool = False) -> bool:
    value = flask.request.args.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise errors.APIError(
        f"Invalid value for query parameter {name}: {value!r} is not a boolean"
    )


def paging_args() -> tuple[int, str | None, list[tuple[str, str]]]:
    """Parse ``limit``, ``marker`` and ``sort`` query parameters.

    Sort keys are checked against the searched type by the index (see
    :func:`find_resources`).
    """
    args = flask.request.args
    top = max_limit()
    limit = top
    if "limit" in args:
        raw = args["limit"]
        try:
            limit = int(raw)
        except ValueError:
            raise errors.APIError(
                f"Invalid value for query parameter limit: {raw!r} is not "
                "an integer"
            ) from None
        if not 1 <= limit <= top:
            raise errors.APIError(
                "Invalid value for query parameter limit: must be between "
                f"1 and {top}"
            )
    sorts: list[tuple[str, str]] = []
    for raw in args.getlist("sort"):
        key, _, direction = raw.partition(":")
        direction = direction or "asc"
        if direction not in ("asc", "desc"):
            raise errors.APIError(
                f"Invalid value for query parameter sort: direction of "
                f"{key} must be asc or desc, not {direction!r}"
            )
        sorts.append((key, direction))
    return limit, args.get("marker"), sorts or list(idx.DEFAULT_SORT)


def find_resources(
    session: orm.Session,
    rtype: idx.TypeDef,
    who: idx.Caller,
    query: Any = None,
) -> list[Any]:
    """The visible resources of *rtype* matching a JSON *query*, one page.

    Paged by the ``limit``, ``marker`` and ``sort`` query parameters
    (``sort=host:desc`` sorts by an attribute of the type).
    """
    limit, marker, sorts = paging_args()
    try:
        return indexer().search_resources(
            session, rtype, who, query, limit=limit, marker=marker, sorts=sorts
        )
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None


def metrics_of(
    session: orm.Session, resource_ids: Sequence[str]
) -> dict[str, dict[str, str]]:
    """``{resource id: {metric name: metric id}}`` of *resource_ids*."""
    return indexer().metric_names(session, resource_ids)


def render(
    session: orm.Session,
    rtype: idx.TypeDef,
    rows: list[Any],
    *,
    details: bool,
) -> list[dict[str, Any]]:
    """Resources as the API shows them.

    A listing of a type shows that type's attributes; a ``generic``
    listing shows each resource's own attributes with ``details=true``.
    """
    return indexer().show_resources(session, rtype, rows, details=details)


def metric_name(name: Any) -> str:
    """*name* if it can name a metric of a resource, else a 400."""
    try:
        return idx.check_name(name)
    except idx.ResourceError as exc:
        raise errors.APIError(str(exc)) from None


def attach_metrics(
    session: orm.Session,
    resource_id: str,
    metrics: Any,
    who: idx.Caller,
    *,
    replace: bool = False,
) -> None:
    """Create or attach the named metrics of a resource (caller commits).

    Each value is the id of an existing metric of the caller, or an
    object ``{"archive_policy_name", "unit"}`` creating one.
    """
    try:
        indexer().attach_metrics(
            session, resource_id, metrics, who, replace=replace
        )
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None


def translate(exc: Exception) -> errors.APIError:
    """The API error answering an index exception."""
    if isinstance(exc, idx.NoSuchResourceType | idx.NoSuchResource):
        return errors.NotFound(str(exc))
    if isinstance(exc, PermissionError):
        return errors.Forbidden()
    if isinstance(
        exc, idx.ResourceAlreadyExists | idx.NamedMetricAlreadyExists
    ):
        return errors.Conflict(str(exc))
    return errors.APIError(str(exc))


ENGINE_ERRORS = (
    idx.ResourceError,
    idx.NoSuchResourceType,
    idx.NoSuchResource,
    idx.ResourceAlreadyExists,
    idx.ResourceTypeInUse,
    idx.IndexerError,
    PermissionError,
)


def _created(body: Mapping[str, Any]) -> flask.Response:
    response = flask.jsonify(body)
    response.status_code = 201
    response.headers["Location"] = (
        f"{flask.request.host_url.rstrip('/')}/v1/resource/"
        f"{body['type']}/{body['id']}"
    )
    return response


# ------------------------------------------------------------- views


@blueprint.post("/resource/<string:type_name>")
def create_resource(type_name: str) -> flask.Response:
    """Create a resource of *type_name*, with its metrics."""
    who = caller()
    body = json_body()
    if not isinstance(body, dict):
        raise errors.APIError("Invalid input: the body must be a JSON object")
    rt = app_mod.runtime()
    try:
        with rt.db.session() as session, session.begin():
            rtype = load_type(session, type_name)
            row = indexer().create_resource(session, rtype, body, who)
            shown = render(session, rtype, [row], details=True)[0]
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    except sa_exc.IntegrityError:
        raise errors.Conflict(
            f"Resource {body.get('id')} already exists"
        ) from None
    return _created(shown)


@blueprint.get("/resource/<string:type_name>")
def list_resources(type_name: str) -> flask.Response:
    """List the visible resources of *type_name*, paged."""
    who = caller()
    details = bool_arg("details")
    rt = app_mod.runtime()
    with rt.db.read_session() as session:
        rtype = load_type(session, type_name)
        rows = find_resources(session, rtype, who)
        return flask.jsonify(render(session, rtype, rows, details=details))


def _one(
    session: orm.Session,
    type_name: str,
    resource_id: str,
    who: idx.Caller,
    *,
    for_update: bool = False,
) -> tuple[idx.TypeDef, Any]:
    rtype = load_type(session, type_name)
    try:
        row = indexer().find_resource(
            session, rtype, resource_id, who, for_update=for_update
        )
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    return rtype, row


@blueprint.get("/resource/<string:type_name>/<string:resource_id>")
def show_resource(type_name: str, resource_id: str) -> flask.Response:
    """Show one resource."""
    who = caller()
    rt = app_mod.runtime()
    with rt.db.read_session() as session:
        rtype, row = _one(session, type_name, resource_id, who)
        return flask.jsonify(render(session, rtype, [row], details=True)[0])


@blueprint.patch("/resource/<string:type_name>/<string:resource_id>")
def update_resource(type_name: str, resource_id: str) -> flask.Response:
    """Update attributes (and the metrics) of one resource."""
    who = caller()
    body = json_body()
    if not isinstance(body, dict):
        raise errors.APIError("Invalid input: the body must be a JSON object")
    rt = app_mod.runtime()
    try:
        with rt.db.session() as session, session.begin():
            rtype, row = _one(
                session, type_name, resource_id, who, for_update=True
            )
            indexer().update_resource(session, rtype, row, body, who)
            shown = render(session, rtype, [row], details=True)[0]
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    return flask.jsonify(shown)


def forget_metric_data(metric_ids: Sequence[str]) -> None:
    """Drop the stored series of deleted metrics."""
    series = app_mod.runtime().series
    if series is None:
        return
    for metric_id in metric_ids:
        try:
            series.delete_metric(metric_id)
        except Exception:
            LOG.exception("could not delete the data of metric %s", metric_id)


@blueprint.delete("/resource/<string:type_name>/<string:resource_id>")
def delete_resource(type_name: str, resource_id: str) -> flask.Response:
    """Delete one resource and its metrics."""
    who = caller()
    rt = app_mod.runtime()
    with rt.db.session() as session, session.begin():
        _, row = _one(session, type_name, resource_id, who, for_update=True)
        metric_ids = indexer().delete_resources(session, [row.id])
    LOG.info("resource %s deleted with %d metrics", row.id, len(metric_ids))
    forget_metric_data(metric_ids)
    return flask.Response(status=204)


@blueprint.delete("/resource/<string:type_name>")
def delete_matching(type_name: str) -> flask.Response:
    """Delete the visible resources of a type matching a search body."""
    who = caller()
    query = json_body(allow_empty=True)
    rt = app_mod.runtime()
    try:
        with rt.db.session() as session, session.begin():
            rtype = load_type(session, type_name)
            deleted, metric_ids = indexer().delete_matching(
                session, rtype, who, query or {}
            )
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    forget_metric_data(metric_ids)
    return flask.jsonify({"deleted": deleted})


# --------------------------------------------------- named metrics


@blueprint.get("/resource/<string:type_name>/<string:resource_id>/metric")
def list_resource_metrics(type_name: str, resource_id: str) -> flask.Response:
    """The metrics of one resource."""
    who = caller()
    rt = app_mod.runtime()
    with rt.db.read_session() as session:
        _, row = _one(session, type_name, resource_id, who)
        names = metrics_of(session, [row.id])[row.id]
    infos = indexer().get_metrics(names.values())
    return flask.jsonify(
        [infos[m].to_dict() for _, m in sorted(names.items()) if m in infos]
    )


@blueprint.post("/resource/<string:type_name>/<string:resource_id>/metric")
def add_resource_metrics(type_name: str, resource_id: str) -> flask.Response:
    """Create or attach named metrics to one resource."""
    who = caller()
    body = json_body()
    rt = app_mod.runtime()
    try:
        with rt.db.session() as session, session.begin():
            _, row = _one(
                session, type_name, resource_id, who, for_update=True
            )
            attach_metrics(session, row.id, body, who)
            names = metrics_of(session, [row.id])[row.id]
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    infos = indexer().get_metrics(names.values())
    return flask.jsonify(
        [infos[m].to_dict() for _, m in sorted(names.items()) if m in infos]
    )


def named_metric_id(type_name: str, resource_id: str, name: str) -> str:
    """The id of metric *name* of a resource, or a 404 naming it."""
    who = caller()
    rt = app_mod.runtime()
    with rt.db.read_session() as session:
        _, row = _one(session, type_name, resource_id, who)
        metric_id = metrics_of(session, [row.id])[row.id].get(name)
    if metric_id is None:
        raise errors.NotFound(
            f"Metric {name} does not exist for resource {resource_id}"
        )
    return metric_id


@blueprint.get(
    "/resource/<string:type_name>/<string:resource_id>/metric/<string:name>"
)
def show_resource_metric(
    type_name: str, resource_id: str, name: str
) -> flask.Response:
    """One named metric of a resource."""
    metric_id = named_metric_id(type_name, resource_id, name)
    info = indexer().get_metric(metric_id)
    if info is None:
        raise errors.NotFound(f"Metric {name} does not exist")
    return flask.jsonify(info.to_dict())


@blueprint.delete(
    "/resource/<string:type_name>/<string:resource_id>/metric/<string:name>"
)
def delete_resource_metric(
    type_name: str, resource_id: str, name: str
) -> flask.Response:
    """Delete one named metric of a resource."""
    metric_id = named_metric_id(type_name, resource_id, name)
    indexer().delete_metric(metric_id)
    forget_metric_data([metric_id])
    return flask.Response(status=204)


# --------------------------------------------------- aggregates


def resolve_search_references(
    body: Mapping[str, Any], refs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[Any]]:
    """Series of ``/v1/aggregates`` with ``search`` and ``resource_type``.

    Each ``(metric name or pattern, method)`` of the operations becomes
    one series per matching metric of the visible resources matching the
    search now, keyed ``(resource id, metric name)`` in the output.
    """
    from api.v1 import aggregates
    from api.v1 import measures as measures_views

    who = caller()
    type_name = body.get("resource_type", idx.GENERIC)
    query = body.get("search", {})
    if isinstance(query, str):
        raise errors.APIError(
            "Invalid input for search: only JSON queries are supported"
        )
    project = None if who.is_admin else (who.project_id or "")
    names = list(dict.fromkeys(ref for ref, _ in refs))
    found: dict[str, list[tuple[str, str, str]]] = {}
    index = indexer()
    with app_mod.runtime().db.read_session() as session:
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
    infos = index.get_metrics(
        mid for rows in found.values() for _, _, mid in rows
    )
    result: dict[tuple[str, str], list[Any]] = {}
    for name, method in refs:
        series = []
        for rid, metric_name, mid in found[name]:
            info = infos.get(mid)
            if info is None:  # deleted meanwhile
                continue
            measures_views.check_method(info, method)
            series.append(
                aggregates.Reference(
                    key=(name, method),
                    path=(rid, metric_name),
                    metric=info,
                    aggregation=method,
                )
            )
        result[(name, method)] = series
    return result


# --------------------------------------------------- alarms

BY_RESOURCES = "gnocchi_aggregation_by_resources_threshold"


def _by_resources_rules(alarm_type: str | None, rule: Any) -> list[dict]:
    if not isinstance(rule, dict):
        return []
    if alarm_type == BY_RESOURCES:
        return [rule]
    found: list[dict] = []
    if alarm_type == "composite" or alarm_type is None:
        for op in ("and", "or"):
            for item in rule.get(op) or ():
                if isinstance(item, dict):
                    found += _by_resources_rules(item.get("type"), item)
    return found


def scope_alarm(ident: identity.Identity, values: dict[str, Any]) -> None:
    """Check and scope the by-resources queries of a validated alarm.

    Each query must compile against its resource type (a 400 naming the
    culprit otherwise; an undeclared type is accepted as Aodh does).  For
    a non-admin, or an admin creating for another project, the query is
    rewritten as Aodh does so that only that project's resources count:
    ``{"and": [{"or": [created_by_project_id = P, project_id = P]}, q]}``.
    """
    rules = _by_resources_rules(values.get("type"), values.get("rule"))
    if not rules:
        return
    target = values.get("project_id") or ident.project_id
    scoped = not ident.is_admin or target != ident.project_id
    index = indexer()
    with app_mod.runtime().db.read_session() as session:
        for rule in rules:
            query = rule.get("query", "")
            try:
                index.check_rule_query(session, rule["resource_type"], query)
            except idx.QueryError as exc:
                raise errors.APIError(
                    f"Invalid input for field/attribute query. Value: "
                    f"'{query}'. {exc}"
                ) from None
            if scoped and target:
                rule["query"] = idx.scope_query(query, target)
