"""``/v1/resource``: Gnocchi's resources and their named metrics.

Resources are created with their typed attributes and, optionally, their
metrics (``"metrics": {"cpu": "<metric id>" | {"archive_policy_name":
...}}``), listed (paged, sorted, scoped to the caller's project unless
admin), shown, patched and deleted (with their metrics).  Bad input is a
400 naming the field; nothing is stored then.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import flask
import sqlalchemy as sa
from oslo_config import cfg
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from alarmer.metrics.index import indexer as idx
from alarmer.metrics.index import resources as res
from alarmer.metrics.index import search as srch
from api import context, errors, params

LOG = logging.getLogger(__name__)

blueprint = flask.Blueprint("v1_resources", __name__, url_prefix="/v1")
errors.GNOCCHI.install(blueprint)

DEFAULT_MAX_LIMIT = 1000
#: Keys a listing or a search can be sorted by.
SORT_KEYS = (
    "id",
    "type",
    "original_resource_id",
    "creator",
    "created_by_user_id",
    "created_by_project_id",
    "user_id",
    "project_id",
    "started_at",
    "ended_at",
    "revision_start",
)
DEFAULT_SORT = (("revision_start", "asc"), ("started_at", "asc"))
NULLABLE_SORT = frozenset(
    [
        "creator",
        "created_by_user_id",
        "created_by_project_id",
        "user_id",
        "project_id",
        "ended_at",
    ]
)


# ------------------------------------------------------------- helpers


def caller() -> res.Caller:
    """The caller of this request; a 401 when it is anonymous."""
    ident = context.caller()
    if ident.user_id is None and ident.project_id is None:
        raise errors.Unauthorized("Unable to determine current user")
    return res.Caller(ident.user_id, ident.project_id, ident.is_admin)


def visible(who: res.Caller) -> sa.ColumnElement[bool]:
    """Where-clause of the resources *who* may see."""
    if who.is_admin:
        return sa.true()
    if who.project_id is None:
        return res.ResourceModel.created_by_user_id == who.user_id
    return res.project_scope(who.project_id)


def load_type(session: orm.Session, name: str) -> res.TypeDef:
    """The resource type *name*, or a 404 naming it."""
    try:
        return res.get_type(session, name)
    except res.NoSuchResourceType as exc:
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

    Sort keys are checked against the searched type by
    :func:`find_resources`.
    """
    page = params.v1_page(max_limit(), default_sort=DEFAULT_SORT)
    return page.limit, page.marker, page.sorts


class _SortKey:
    """One sort key: its SQL expressions and how to read a marker's."""

    def __init__(
        self, rtype: res.TypeDef, key: str, direction: str, index: int
    ) -> None:
        self.key = key
        self.direction = direction
        self.join: tuple[Any, Any] | None = None
        self.attr: res.AttributeDef | None = None
        if key in SORT_KEYS:
            column: Any = getattr(res.ResourceModel, key)
            nullable = key in NULLABLE_SORT
        elif key in rtype.attributes:
            self.attr = rtype.attributes[key]
            alias = orm.aliased(
                res.ResourceAttributeModel, name=f"sort_{index}"
            )
            self.join = (
                alias,
                sa.and_(
                    alias.resource_id == res.ResourceModel.id,
                    alias.attribute_id == self.attr.id,
                ),
            )
            column = getattr(alias, res.VALUE_COLUMN[self.attr.type])
            nullable = True
        else:
            valid = ", ".join([*SORT_KEYS, *sorted(rtype.attributes)])
            raise errors.APIError(
                f"Invalid value for query parameter sort: unknown sort key "
                f"{key!r}, valid keys: {valid}"
            )
        # Nulls last in both directions, on every backend.
        self.parts: list[tuple[Any, str]] = [(column, direction)]
        if nullable:
            flag = sa.case((column.is_(None), 1), else_=0)
            self.parts.insert(0, (flag, "asc"))
        self.nullable = nullable

    def marker_values(
        self, session: orm.Session, mark: res.ResourceModel
    ) -> list[Any]:
        if self.attr is None:
            value = getattr(mark, self.key)
        else:
            table = res.ResourceAttributeModel
            value = session.scalar(
                sa.select(
                    getattr(table, res.VALUE_COLUMN[self.attr.type])
                ).where(
                    table.resource_id == mark.id,
                    table.attribute_id == self.attr.id,
                )
            )
        if self.nullable:
            return [1 if value is None else 0, value]
        return [value]

    def order(self) -> list[Any]:
        return [
            e.desc() if direction == "desc" else e.asc()
            for e, direction in self.parts
        ]


def _after_marker(
    session: orm.Session,
    keys: Sequence[_SortKey],
    mark: res.ResourceModel,
) -> sa.ColumnElement[bool]:
    parts: list[tuple[Any, Any, str]] = []
    for key in keys:
        for (expr, direction), value in zip(
            key.parts, key.marker_values(session, mark), strict=True
        ):
            if value is None:  # both null: equal, nothing to compare
                continue
            parts.append((expr, value, direction))
    clauses = []
    for i, (expr, value, direction) in enumerate(parts):
        equal = [e == v for e, v, _ in parts[:i]]
        step = expr > value if direction == "asc" else expr < value
        clauses.append(sa.and_(*equal, step))
    return sa.or_(*clauses) if clauses else sa.false()


def find_resources(
    session: orm.Session,
    rtype: res.TypeDef,
    who: res.Caller,
    where: sa.ColumnElement[bool],
) -> list[res.ResourceModel]:
    """The visible resources of *rtype* matching *where*, one page.

    Sorted by generic columns or the type's attributes (``sort=host:desc``),
    then by id; ``marker`` is the id of the last resource of the previous
    page.
    """
    limit, marker, sorts = paging_args()
    if not any(key == "id" for key, _ in sorts):
        sorts = [*sorts, ("id", "asc")]
    keys = [
        _SortKey(rtype, key, direction, i)
        for i, (key, direction) in enumerate(sorts)
    ]
    stmt = sa.select(res.ResourceModel)
    for key in keys:
        if key.join is not None:
            stmt = stmt.outerjoin(*key.join)
    stmt = stmt.where(srch.type_clause(rtype), visible(who), where)
    if marker is not None:
        try:
            mark_id = res.resource_uuid(marker, who.creator)
        except res.ResourceError:
            mark_id = None
        mark = (
            None
            if mark_id is None
            else session.get(res.ResourceModel, mark_id)
        )
        if mark is None:
            raise errors.APIError(
                f"Invalid value for query parameter marker: resource "
                f"{marker} does not exist"
            )
        stmt = stmt.where(_after_marker(session, keys, mark))
    order = [expr for key in keys for expr in key.order()]
    stmt = stmt.order_by(*order).limit(limit)
    return list(session.scalars(stmt))


def metrics_of(
    session: orm.Session, resource_ids: Sequence[str]
) -> dict[str, dict[str, str]]:
    """``{resource id: {metric name: metric id}}`` of *resource_ids*."""
    found: dict[str, dict[str, str]] = {rid: {} for rid in resource_ids}
    for start in range(0, len(resource_ids), 500):
        chunk = list(resource_ids[start : start + 500])
        rows = session.execute(
            sa.select(
                idx.Metric.resource_id, idx.Metric.name, idx.Metric.id
            ).where(idx.Metric.resource_id.in_(chunk))
        )
        for rid, name, mid in rows:
            if rid is not None and name is not None:
                found[rid][name] = mid
    return found


def render(
    session: orm.Session,
    rtype: res.TypeDef,
    rows: list[res.ResourceModel],
    *,
    details: bool,
) -> list[dict[str, Any]]:
    """Resources as the API shows them.

    A listing of a type shows that type's attributes; a ``generic``
    listing shows each resource's own attributes with ``details=true``.
    """
    attributes: dict[str, dict[str, Any]] = {}
    if rtype.name != res.GENERIC or details:
        attributes = res.load_attributes(session, rows, [rtype])
    metrics = metrics_of(session, [r.id for r in rows])
    return [
        res.resource_dict(r, attributes.get(r.id, {}), metrics[r.id])
        for r in rows
    ]


def metric_name(name: Any) -> str:
    if not isinstance(name, str) or not name or "/" in name:
        raise errors.APIError(
            f"Invalid metric name {name!r}: a non-empty string without '/'"
        )
    if len(name) > res.STRING_MAX:
        raise errors.APIError(
            f"Invalid metric name {name[:40]}...: at most 255 characters"
        )
    return name


def _policy_for(session: orm.Session, name: str, given: Any) -> str:
    if given is not None:
        if not isinstance(given, str):
            raise errors.APIError(
                f"Invalid input for metrics/{name}/archive_policy_name: "
                "must be a string"
            )
        if session.get(idx.ArchivePolicyRow, given) is None:
            raise errors.APIError(f"Archive policy {given} does not exist")
        return given
    rules = [
        idx.Rule(r.name, r.archive_policy_name, r.metric_pattern)
        for r in session.scalars(sa.select(idx.ArchivePolicyRule))
    ]
    rule = idx.match_rule(rules, name)
    if rule is None:
        raise errors.APIError(
            f"No archive policy given and no archive policy rule matches "
            f"metric {name}"
        )
    return rule.archive_policy_name


def attach_metrics(
    session: orm.Session,
    resource_id: str,
    metrics: Any,
    who: res.Caller,
    *,
    replace: bool = False,
) -> None:
    """Create or attach the named metrics of a resource (caller commits).

    Each value is the id of an existing metric of the caller, or an
    object ``{"archive_policy_name", "unit"}`` creating one.
    """
    if not isinstance(metrics, dict):
        raise errors.APIError(
            "Invalid input for metrics: must be an object mapping metric "
            "names to metric ids or definitions"
        )
    current = metrics_of(session, [resource_id])[resource_id]
    if replace:
        dropped = [mid for n, mid in current.items() if n not in metrics]
        if dropped:
            session.execute(
                sa.update(idx.Metric)
                .where(idx.Metric.id.in_(dropped))
                .values(resource_id=None)
            )
        current = {n: m for n, m in current.items() if n in metrics}
    for raw_name, spec in metrics.items():
        name = metric_name(raw_name)
        if isinstance(spec, str):
            try:
                metric_id = str(uuid.UUID(spec))
            except ValueError:
                raise errors.APIError(
                    f"Invalid input for metrics/{name}: {spec!r} is not a "
                    "metric id"
                ) from None
            if current.get(name) == metric_id:
                continue
            if name in current:
                raise errors.Conflict(f"Named metric {name} already exists")
            row = session.get(idx.Metric, metric_id)
            if row is None or not (
                who.is_admin
                or row.created_by_project_id in (who.project_id, None)
            ):
                raise errors.APIError(f"Metric {metric_id} does not exist")
            row.resource_id = resource_id
            row.name = name
        elif isinstance(spec, dict):
            unknown = sorted(set(spec) - {"archive_policy_name", "unit"})
            if unknown:
                raise errors.APIError(
                    f"Invalid input for metrics/{name}: unknown field "
                    f"{unknown[0]}"
                )
            if name in current:
                raise errors.Conflict(f"Named metric {name} already exists")
            unit = spec.get("unit")
            if unit is not None and (
                not isinstance(unit, str) or len(unit) > 31
            ):
                raise errors.APIError(
                    f"Invalid input for metrics/{name}/unit: a string of "
                    "at most 31 characters"
                )
            policy = _policy_for(
                session, name, spec.get("archive_policy_name")
            )
            session.add(
                idx.Metric(
                    id=str(uuid.uuid4()),
                    archive_policy_name=policy,
                    name=name,
                    unit=unit,
                    resource_id=resource_id,
                    creator=who.creator,
                    created_by_user_id=who.user_id,
                    created_by_project_id=who.project_id,
                    created_at=res.timeutils.utcnow(),
                )
            )
        else:
            raise errors.APIError(
                f"Invalid input for metrics/{name}: a metric id or an "
                "object with archive_policy_name"
            )
    session.flush()
    res.bump_generation(session)


def translate(exc: Exception) -> errors.APIError:
    """The API error answering an engine exception."""
    if isinstance(exc, res.NoSuchResourceType | res.NoSuchResource):
        return errors.NotFound(str(exc))
    if isinstance(exc, PermissionError):
        return errors.Forbidden()
    if isinstance(exc, res.ResourceAlreadyExists):
        return errors.Conflict(str(exc))
    if isinstance(exc, res.ResourceTypeInUse):
        return errors.APIError(str(exc))
    return errors.APIError(str(exc))


ENGINE_ERRORS = (
    res.ResourceError,
    res.NoSuchResourceType,
    res.NoSuchResource,
    res.ResourceAlreadyExists,
    res.ResourceTypeInUse,
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
    body = params.v1_json_body()
    if not isinstance(body, dict):
        raise errors.APIError("Invalid input: the body must be a JSON object")
    rt = context.runtime()
    try:
        with rt.db.session() as session, session.begin():
            rtype = load_type(session, type_name)
            row = res.create_resource(session, rtype, body, who)
            if "metrics" in body:
                attach_metrics(session, row.id, body["metrics"], who)
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
    details = params.v1_bool("details")
    rt = context.runtime()
    with rt.db.read_session() as session:
        rtype = load_type(session, type_name)
        rows = find_resources(session, rtype, who, sa.true())
        return flask.jsonify(render(session, rtype, rows, details=details))


def _one(
    session: orm.Session,
    type_name: str,
    resource_id: str,
    who: res.Caller,
    *,
    for_update: bool = False,
) -> tuple[res.TypeDef, res.ResourceModel]:
    rtype = load_type(session, type_name)
    try:
        row = res.find_resource(
            session, rtype, resource_id, who, for_update=for_update
        )
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    return rtype, row


@blueprint.get("/resource/<string:type_name>/<string:resource_id>")
def show_resource(type_name: str, resource_id: str) -> flask.Response:
    """Show one resource."""
    who = caller()
    rt = context.runtime()
    with rt.db.read_session() as session:
        rtype, row = _one(session, type_name, resource_id, who)
        return flask.jsonify(render(session, rtype, [row], details=True)[0])


@blueprint.patch("/resource/<string:type_name>/<string:resource_id>")
def update_resource(type_name: str, resource_id: str) -> flask.Response:
    """Update attributes (and the metrics) of one resource."""
    who = caller()
    body = params.v1_json_body()
    if not isinstance(body, dict):
        raise errors.APIError("Invalid input: the body must be a JSON object")
    rt = context.runtime()
    try:
        with rt.db.session() as session, session.begin():
            rtype, row = _one(
                session, type_name, resource_id, who, for_update=True
            )
            res.update_resource(session, rtype, row, body)
            if "metrics" in body:
                attach_metrics(
                    session, row.id, body["metrics"], who, replace=True
                )
            shown = render(session, rtype, [row], details=True)[0]
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    return flask.jsonify(shown)


def delete_resources(session: orm.Session, ids: list[str]) -> list[str]:
    """Delete resources and their metrics; return the metric ids."""
    metric_ids = list(
        session.scalars(
            sa.select(idx.Metric.id).where(idx.Metric.resource_id.in_(ids))
        )
    )
    if metric_ids:
        session.execute(
            sa.delete(idx.Metric).where(idx.Metric.id.in_(metric_ids))
        )
    res.delete_resource_rows(session, ids)
    return metric_ids


def forget_metric_data(metric_ids: Sequence[str]) -> None:
    """Drop the stored series of deleted metrics, when the engine can."""
    engine = getattr(context.runtime(), "engine", None)
    drop = getattr(engine, "delete_metric", None)
    if drop is None:
        return
    for metric_id in metric_ids:
        try:
            drop(metric_id)
        except Exception:
            LOG.exception("could not delete the data of metric %s", metric_id)


@blueprint.delete("/resource/<string:type_name>/<string:resource_id>")
def delete_resource(type_name: str, resource_id: str) -> flask.Response:
    """Delete one resource and its metrics."""
    who = caller()
    rt = context.runtime()
    with rt.db.session() as session, session.begin():
        _, row = _one(session, type_name, resource_id, who, for_update=True)
        metric_ids = delete_resources(session, [row.id])
    LOG.info("resource %s deleted with %d metrics", row.id, len(metric_ids))
    forget_metric_data(metric_ids)
    return flask.Response(status=204)


@blueprint.delete("/resource/<string:type_name>")
def delete_matching(type_name: str) -> flask.Response:
    """Delete the visible resources of a type matching a search body."""
    who = caller()
    query = params.v1_json_body(allow_empty=True)
    rt = context.runtime()
    try:
        with rt.db.session() as session, session.begin():
            rtype = load_type(session, type_name)
            where = srch.compile_query(query or {}, rtype, who.creator)
            ids = list(
                session.scalars(
                    sa.select(res.ResourceModel.id).where(
                        srch.type_clause(rtype), visible(who), where
                    )
                )
            )
            metric_ids = delete_resources(session, ids)
    except ENGINE_ERRORS as exc:
        raise translate(exc) from None
    forget_metric_data(metric_ids)
    return flask.jsonify({"deleted": len(ids)})


# --------------------------------------------------- named metrics


@blueprint.get("/resource/<string:type_name>/<string:resource_id>/metric")
def list_resource_metrics(type_name: str, resource_id: str) -> flask.Response:
    """The metrics of one resource."""
    who = caller()
    rt = context.runtime()
    with rt.db.read_session() as session:
        _, row = _one(session, type_name, resource_id, who)
        names = metrics_of(session, [row.id])[row.id]
    infos = context.index().get_metrics(names.values())
    return flask.jsonify(
        [infos[m].to_dict() for _, m in sorted(names.items()) if m in infos]
    )


@blueprint.post("/resource/<string:type_name>/<string:resource_id>/metric")
def add_resource_metrics(type_name: str, resource_id: str) -> flask.Response:
    """Create or attach named metrics to one resource."""
    who = caller()
    body = params.v1_json_body()
    rt = context.runtime()
    try:
        with rt.db.session() as session, session.begin():
            _, row = _one(
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


def named_metric_id(type_name: str, resource_id: str, name: str) -> str:
    """The id of metric *name* of a resource, or a 404 naming it."""
    who = caller()
    rt = context.runtime()
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
    metric_id = named_metric_id(type_name, resource_id, name)
    rt = context.runtime()
    with rt.db.session() as session, session.begin():
        session.execute(
            sa.delete(idx.Metric).where(idx.Metric.id == metric_id)
        )
        res.bump_generation(session)
    forget_metric_data([metric_id])
    return flask.Response(status=204)
