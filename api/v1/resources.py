"""``/v1/resource``: Gnocchi's resources and their named metrics.

Resources are created with their typed attributes and, optionally, their
metrics (``"metrics": {"cpu": "<metric id>" | {"archive_policy_name":
...}}``), listed (paged, sorted, scoped to the caller's project unless
admin), shown, patched and deleted (with their metrics).  Bad input is a
400 naming the field; nothing is stored then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import flask
from oslo_config import cfg
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from alarmer.metrics import index as idx
from api import context, errors, params, policy

LOG = logging.getLogger(__name__)

blueprint = flask.Blueprint("v1_resources", __name__, url_prefix="/v1")
errors.GNOCCHI.install(blueprint)

DEFAULT_MAX_LIMIT = 1000


# ------------------------------------------------------------- helpers


def indexer() -> idx.Indexer:
    """The metric index of the application serving this request."""
    return context.index()


def caller(role: str) -> idx.Caller:
    """The caller of this request if it has at least *role*.

    :param role: ``context.READER``, ``context.MEMBER`` or
        ``context.ADMIN`` (see :func:`api.context.require`).
    :raises api.errors.APIError: 401 when it is anonymous, 403 when it
        lacks *role*.
    """
    ident = context.require(role, project_needed=False)
    return idx.Caller(ident.user_id, ident.project_id, ident.is_admin)


def load_type(session: orm.Session, name: str) -> idx.TypeDef:
    """The resource type *name*, or a 404 naming it."""
    try:
        return indexer().get_type(session, name)
    except idx.NoSuchResourceType as exc:
        raise errors.NotFound(str(exc)) from None


def max_limit() -> int:
    """``[api] max_limit`` of this process."""
    conf = context.runtime().conf
    try:
        return int(conf.api.max_limit)
    except (AttributeError, cfg.NoSuchOptError):
        return DEFAULT_MAX_LIMIT


def paging_args() -> tuple[int, str | None, list[tuple[str, str]]]:
    """Parse ``limit``, ``marker`` and ``sort`` query parameters.

    Sort keys are checked against the searched type by the index (see
    :func:`find_resources`).
    """
    page = params.v1_page(max_limit(), default_sort=idx.DEFAULT_SORT)
    return page.limit, page.marker, page.sorts


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


def project_of(resource_id: str) -> str | None:
    """The ``project_id`` of resource *resource_id* (None if unset or
    absent), whoever may see it."""
    anyone = idx.Caller(None, None, is_admin=True)
    with context.runtime().db.read_session() as session:
        rtype = load_type(session, "generic")
        try:
            row = indexer().find_resource(session, rtype, resource_id, anyone)
        except idx.NoSuchResource:
            return None
        project: str | None = row.project_id
        return project


def authorize(row: Any) -> None:
    """Check this route's rule against resource *row* (403 if refused).

    The target is what Gnocchi's owner rules read: the creator and the
    project the resource is for.
    """
    context.authorize(
        policy.object_target(
            {
                "id": row.id,
                "type": row.type,
                "creator": row.creator,
                "created_by_user_id": row.created_by_user_id,
                "created_by_project_id": row.created_by_project_id,
                "user_id": row.user_id,
                "project_id": row.project_id,
            }
        )
    )


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
    who = caller(context.MEMBER)
    body = params.v1_json_body()
    if not isinstance(body, dict):
        raise errors.APIError("Invalid input: the body must be a JSON object")
    rt = context.runtime()
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
    who = caller(context.READER)
    details = params.v1_bool("details")
    rt = context.runtime()
    with rt.db.read_session() as session:
        rtype = load_type(session, type_name)
        rows = find_resources(session, rtype, who)
        return flask.jsonify(render(session, rtype, rows, details=details))


def find_one(
    session: orm.Session,
    type_name: str,
    resource_id: str,
    who: idx.Caller,
    *,
    for_update: bool = False,
) -> tuple[idx.TypeDef, Any]:
    """The type and row of one resource the caller may see.

    :raises api.errors.APIError: 404 when the type or the resource is
        unknown (or out of the caller's sight), 403 when refused.
    """
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
    who = caller(context.READER)
    rt = context.runtime()
    with rt.db.read_session() as session:
        rtype, row = find_one(session, type_name, resource_id, who)
        authorize(row)
        return flask.jsonify(render(session, rtype, [row], details=True)[0])


@blueprint.patch("/resource/<string:type_name>/<string:resource_id>")
def update_resource(type_name: str, resource_id: str) -> flask.Response:
    """Update attributes (and the metrics) of one resource."""
    who = caller(context.MEMBER)
    body = params.v1_json_body()
    if not isinstance(body, dict):
        raise errors.APIError("Invalid input: the body must be a JSON object")
    rt = context.runtime()
    try:
        with rt.db.session() as session, session.begin():
            rtype, row = find_one(
                session, type_name, resource_id, who, for_update=True
            )
            authorize(row)
            indexer().update_resource(session, rtype, row, body, who)
            shown = render(session, rtype, [row], details=True)[0]
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    return flask.jsonify(shown)


def forget_metric_data(metric_ids: Sequence[str]) -> None:
    """Drop the stored series of deleted metrics."""
    series = context.runtime().series
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
    who = caller(context.MEMBER)
    rt = context.runtime()
    with rt.db.session() as session, session.begin():
        _, row = find_one(
            session, type_name, resource_id, who, for_update=True
        )
        authorize(row)
        metric_ids = indexer().delete_resources(session, [row.id])
    LOG.info("resource %s deleted with %d metrics", row.id, len(metric_ids))
    forget_metric_data(metric_ids)
    return flask.Response(status=204)


@blueprint.delete("/resource/<string:type_name>")
def delete_matching(type_name: str) -> flask.Response:
    """Delete the visible resources of a type matching a search body."""
    who = caller(context.MEMBER)
    query = params.v1_json_body(allow_empty=True)
    rt = context.runtime()
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
    who = caller(context.READER)
    rt = context.runtime()
    with rt.db.read_session() as session:
        _, row = find_one(session, type_name, resource_id, who)
        names = metrics_of(session, [row.id])[row.id]
    infos = context.index().get_metrics(names.values())
    return flask.jsonify(
        [infos[m].to_dict() for _, m in sorted(names.items()) if m in infos]
    )


@blueprint.post("/resource/<string:type_name>/<string:resource_id>/metric")
def add_resource_metrics(type_name: str, resource_id: str) -> flask.Response:
    """Create or attach named metrics to one resource."""
    who = caller(context.MEMBER)
    body = params.v1_json_body()
    rt = context.runtime()
    try:
        with rt.db.session() as session, session.begin():
            _, row = find_one(
                session, type_name, resource_id, who, for_update=True
            )
            attach_metrics(session, row.id, body, who)
            names = metrics_of(session, [row.id])[row.id]
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    infos = context.index().get_metrics(names.values())
    return flask.jsonify(
        [infos[m].to_dict() for _, m in sorted(names.items()) if m in infos]
    )


def named_metric_id(
    type_name: str, resource_id: str, name: str, role: str
) -> str:
    """The id of metric *name* of a resource, or a 404 naming it.

    The caller must have *role* (see :func:`caller`).
    """
    who = caller(role)
    rt = context.runtime()
    with rt.db.read_session() as session:
        _, row = find_one(session, type_name, resource_id, who)
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
    metric_id = named_metric_id(type_name, resource_id, name, context.READER)
    info = context.index().get_metric(metric_id)
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
    metric_id = named_metric_id(type_name, resource_id, name, context.MEMBER)
    indexer().delete_metric(metric_id)
    forget_metric_data([metric_id])
    return flask.Response(status=204)
