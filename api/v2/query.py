"""``POST /v2/query/alarms`` and ``/v2/query/alarms/history``.

The body is ``{"filter": "<JSON>", "orderby": "<JSON>", "limit": N}``:
``filter`` and ``orderby`` are JSON documents encoded as strings inside
the JSON body (what aodhclient sends); all three are optional.
"""

from __future__ import annotations

from typing import Any

import flask
import sqlalchemy as sa

from alarmer import jsontext
from alarmer.alarms import query as query_mod
from alarmer.alarms import store as store_mod
from alarmer.alarms.tables import Alarm, AlarmHistory
from api import context, errors, params
from api.context import require_reader
from api.v2 import common
from api.v2.alarms import render_alarm, render_change

bp = flask.Blueprint("v2_query", __name__)
errors.AODH.install(bp)

_FIELDS = ("filter", "orderby", "limit")


def _decode(body: dict[str, Any], key: str) -> Any:
    """The JSON document given as text in *key* (bounded and strict)."""
    raw = body.get(key)
    if raw is None:
        return None
    if isinstance(raw, str):
        max_depth = context.runtime().conf.api.max_json_depth
        try:
            return jsontext.loads(raw, max_depth=max_depth)
        except jsontext.JSONTextError as exc:
            where = f"{key}.{exc.path}" if exc.path else key
            raise params.v2_invalid(
                where,
                jsontext.shown(raw),
                f"Not a JSON document: {exc.reason}",
            ) from exc
    return raw


def _parse(
    target: query_mod.Target,
) -> tuple[sa.ColumnElement[bool] | None, list[tuple[str, str]], int]:
    body = params.v2_json_body()
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise errors.APIError(
            "Invalid input for field/attribute data. The body must be an "
            "object with optional filter, orderby and limit"
        )
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise errors.APIError(
            f"Unknown attribute for argument data: {unknown[0]}"
        )
    max_limit = context.runtime().conf.api.max_limit
    limit = body.get("limit")
    if limit is None:
        limit = max_limit
    elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise errors.APIError(
            f"Invalid input for field/attribute limit. Value: '{limit}'. "
            "Limit should be positive"
        )
    where = None
    orderby: list[tuple[str, str]] = []
    filter_expr = _decode(body, "filter")
    if filter_expr is not None:
        try:
            where = query_mod.build_filter(target, filter_expr)
        except query_mod.QueryError as exc:
            raise errors.APIError(
                f"Filter expression not valid: {exc}"
            ) from exc
    orderby_expr = _decode(body, "orderby")
    if orderby_expr is not None:
        try:
            orderby = query_mod.build_orderby(target, orderby_expr)
        except query_mod.QueryError as exc:
            raise errors.APIError(
                f"Order-by expression not valid: {exc}"
            ) from exc
    return where, orderby, min(limit, max_limit)


@bp.post("/v2/query/alarms")
def query_alarms() -> flask.Response:
    """Alarms matching a complex query (non-admins: own project only)."""
    identity = require_reader()
    where, orderby, limit = _parse(query_mod.ALARMS)
    conditions = [c for c in (where,) if c is not None]
    if not identity.is_admin:
        conditions.append(Alarm.project_id == identity.project_id)
    rows = store_mod.AlarmStore(context.runtime().db).list(
        sort=orderby,
        limit=limit,
        where=sa.and_(*conditions) if conditions else None,
    )
    return common.respond([render_alarm(r) for r in rows])


@bp.post("/v2/query/alarms/history")
def query_history() -> flask.Response:
    """History entries matching a complex query."""
    identity = require_reader()
    where, orderby, limit = _parse(query_mod.HISTORY)
    conditions = [c for c in (where,) if c is not None]
    if not identity.is_admin:
        conditions.append(AlarmHistory.on_behalf_of == identity.project_id)
    entries = store_mod.AlarmStore(context.runtime().db).history(
        conditions=conditions, sort=orderby, limit=limit
    )
    return common.respond([render_change(e) for e in entries])
