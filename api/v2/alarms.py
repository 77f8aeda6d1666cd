"""``/v2/alarms``: Aodh's alarm resource, its state and its history."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

import flask
import sqlalchemy as sa

import notifiers
from alarmer import timeutils
from alarmer.alarms import scoping
from alarmer.alarms import store as store_mod
from alarmer.alarms import validation as rules
from alarmer.alarms.tables import AlarmHistory
from alarmer.alarms.validation import RuleError
from api import context, errors, params, policy
from api.context import require_member, require_reader
from api.identity import Identity
from api.v2 import common, trusts, types

LOG = logging.getLogger(__name__)

bp = flask.Blueprint("v2_alarms", __name__)
errors.AODH.install(bp)

#: Fields of GET /v2/alarms simple queries (Aodh's).
LIST_FIELDS = (
    "all_projects",
    "user_id",
    "project_id",
    "type",
    "name",
    "enabled",
    "state",
    "severity",
    "timestamp",
    "repeat_actions",
)
HISTORY_FIELDS = (
    "project",
    "project_id",
    "search_offset",
    "severity",
    "timestamp",
    "type",
    "user",
    "user_id",
)
TIME_OPS = {"lt": "__lt__", "le": "__le__", "gt": "__gt__", "ge": "__ge__"}
ACTION_FIELDS = ("ok_actions", "alarm_actions", "insufficient_data_actions")


def store() -> store_mod.AlarmStore:
    """The alarm store of this process."""
    return store_mod.AlarmStore(context.runtime().db)


def actor(identity: Identity) -> store_mod.Actor:
    """The history author of a request."""
    return store_mod.Actor(identity.user_id, identity.project_id)


def scope(identity: Identity) -> str | None:
    """Project an identity is limited to (None for an administrator)."""
    return None if identity.is_admin else identity.project_id


def render_alarm(row: dict[str, Any]) -> dict[str, Any]:
    """Aodh's JSON document of a stored alarm, through :class:`Alarm`.

    Trust ids are never shown.
    """
    return types.render(
        types.Alarm, types.alarm_from_row(trusts.scrub_alarm(row))
    )


def render_change(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry's JSON document, through :class:`AlarmChange`.

    Trust ids in the recorded actions are never shown.
    """
    detail = entry.get("detail")
    if isinstance(detail, str) and "trust+" in detail:
        try:
            recorded = json.loads(detail)
        except ValueError:
            recorded = None
        if isinstance(recorded, dict):
            entry = {
                **entry,
                "detail": json.dumps(
                    trusts.scrub_alarm(recorded), sort_keys=True
                ),
            }
    return types.render(
        types.AlarmChange, types.parse(types.AlarmChange, entry)
    )


# -- validation ---------------------------------------------------------------


def _action_checker(identity: Identity) -> Callable[[str, str], None]:
    conf = context.runtime().conf

    def check(field: str, url: str) -> None:
        try:
            scheme = notifiers.parse_action(url).scheme.lower()
        except notifiers.InvalidAction as exc:
            raise RuleError(f"{field}: {exc.message}", field) from exc
        if scheme.startswith("trust+") and conf.api.auth_mode != "keystone":
            raise RuleError(
                f"{field}: a trust+ action delegates the caller's Keystone "
                "roles and needs [api] auth_mode = keystone: "
                f"{notifiers.redact(url)}",
                field,
            )
        if scheme == "log" and not identity.is_admin:
            raise RuleError(
                f"You are not authorized to create action: {url}",
                field,
                status=401,
            )
        try:
            notifiers.validate_action(url, conf, identity)
        except notifiers.InvalidAction as exc:
            raise RuleError(f"{field}: {exc.message}", field) from exc

    return check


def validate_body(identity: Identity, body: Any) -> dict[str, Any]:
    """Validate a POST/PUT body.

    :raises alarmer.alarms.errors.RuleError: the definition is invalid
        (the v2 error table answers it).
    :raises api.errors.APIError: another project or user named by a
        non-admin.
    """
    rt = context.runtime()
    values = rules.validate_alarm(
        body,
        check_action=_action_checker(identity),
        limits=rules.Limits.from_options(rt.conf.api),
    )
    if "project_id" in values:
        common.check_project_access(identity, values["project_id"])
    if "user_id" in values:
        common.check_user_access(identity, values["user_id"])
    scoping.scope_alarm(
        rt.db,
        values,
        project_id=identity.project_id,
        is_admin=identity.is_admin,
    )
    return values


# -- collection ---------------------------------------------------------------


def _list_filters(identity: Identity) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    all_projects = False
    for query in common.parse_queries():
        field, op = query["field"], query["op"]
        if field not in LIST_FIELDS:
            raise errors.APIError(
                f"Invalid input for field/attribute field. Value: "
                f"'{field}'. only fields {', '.join(LIST_FIELDS)} are "
                "allowed"
            )
        if op != "eq":
            raise errors.APIError(
                f"Invalid input for field/attribute op. Value: '{op}'. "
                "only operations eq are allowed"
            )
        raw = query["value"]
        if field in ("all_projects", "enabled", "repeat_actions"):
            value: Any = params.v2_bool(field, raw)
        elif field == "timestamp":
            try:
                value = timeutils.parse_datetime(raw)
            except ValueError as exc:
                raise errors.APIError(
                    f"Invalid input for field/attribute timestamp. Value: "
                    f"'{raw}'. Not an ISO 8601 timestamp"
                ) from exc
        else:
            value = raw
        if field == "all_projects":
            all_projects = value
        else:
            filters[field] = value
    every_project = all_projects and policy.allowed(
        context.enforcer(), "telemetry:get_alarms:all_projects", identity
    )
    if all_projects and not every_project:
        raise errors.Forbidden()
    if "project_id" in filters:
        common.check_project_access(identity, filters["project_id"])
    elif not (identity.is_admin or every_project) or (
        not all_projects and identity.project_id is not None
    ):
        filters["project_id"] = identity.project_id
    return filters


@bp.get("/v2/alarms")
def list_alarms() -> flask.Response:
    """List alarms (filters, sort, limit, marker)."""
    identity = require_reader()
    filters = _list_filters(identity)
    sort = params.v2_sort(store_mod.ALARM_SORT_KEYS)
    limit = params.v2_limit(context.runtime().conf.api.max_limit)
    rows = store().list(
        filters=filters, sort=sort, limit=limit, marker=params.v2_marker()
    )
    return common.respond(
        [render_alarm(r) for r in rows],
        next_link=params.v2_next_link(rows, limit, "alarm_id"),
    )


@bp.post("/v2/alarms")
def create_alarm() -> flask.Response:
    """Create an alarm: 201 with an absolute Location."""
    identity = require_member()
    values = validate_body(identity, params.v2_json_body())
    values = types.alarm_values(types.alarm_from_values(values))
    values.setdefault("project_id", identity.project_id)
    values.setdefault("user_id", identity.user_id)
    if values["project_id"] is None or values["user_id"] is None:
        raise errors.APIError(
            "Invalid input for field/attribute project_id. Value: 'None'. "
            "The alarm needs a project_id and a user_id"
        )
    scoping.check_references(
        context.runtime().db, values, owner=values["project_id"]
    )
    api_conf = context.runtime().conf.api
    created = _resolve_trusts(identity, values, [])
    try:
        row = store().create(
            values,
            actor(identity),
            project_quota=api_conf.project_alarm_quota,
            user_quota=api_conf.user_alarm_quota,
        )
    except BaseException:
        trusts.release(created)
        raise
    response = common.respond(render_alarm(row), 201)
    response.headers["Location"] = (
        flask.request.host_url.rstrip("/") + f"/v2/alarms/{row['alarm_id']}"
    )
    return response


# -- trusts -------------------------------------------------------------------


def _keystone_mode() -> bool:
    return bool(context.runtime().conf.api.auth_mode == "keystone")


def _resolve_trusts(
    identity: Identity, values: dict[str, Any], stored: list[str]
) -> list[str]:
    """Give the trust actions of *values* their trusts (keystone mode)."""
    if not _keystone_mode():
        return []
    return trusts.resolve(identity, values, stored)


# -- one alarm ----------------------------------------------------------------


@bp.get("/v2/alarms/<alarm_id>")
def get_alarm(alarm_id: str) -> flask.Response:
    """Return one alarm."""
    identity = require_reader()
    row = store().get(alarm_id, scope(identity))
    return common.respond(render_alarm(row))


def _leaves(rule: Any) -> list[dict[str, Any]]:
    if not isinstance(rule, dict):
        return []
    for op in ("and", "or"):
        if isinstance(rule.get(op), list):
            return [leaf for item in rule[op] for leaf in _leaves(item)]
    return [rule]


def _keep_stored_queries(
    body: dict[str, Any], new: dict[str, Any], current: dict[str, Any]
) -> None:
    """Do not scope again a resource query the client read back.

    aodhclient's update PUTs back the whole document it read, whose
    by-resources queries are already limited to the project; scoping
    them again would nest the project filter once per update.
    """
    stored = {leaf.get("query") for leaf in _leaves(current["rule"])} - {None}
    if not stored:
        return
    raw = _leaves(body.get(f"{new['type']}_rule"))
    validated = _leaves(new["rule"])
    for sent, leaf in zip(raw, validated, strict=False):
        if isinstance(sent, dict) and sent.get("query") in stored:
            leaf["query"] = sent["query"]


@bp.put("/v2/alarms/<alarm_id>")
def replace_alarm(alarm_id: str) -> flask.Response:
    """Replace an alarm's definition (the evaluation bookkeeping stays)."""
    identity = require_member()
    body = params.v2_json_body()
    values = validate_body(identity, body)
    values = types.alarm_values(types.alarm_from_values(values))
    stored: list[str] = []
    if _keystone_mode():
        stored = trusts.action_urls(store().get(alarm_id, scope(identity)))
    created = _resolve_trusts(identity, values, stored)

    def build(current: dict[str, Any]) -> dict[str, Any]:
        new = dict(values)
        _keep_stored_queries(body, new, current)
        new.setdefault("project_id", current["project_id"])
        new.setdefault("user_id", current["user_id"])
        # The owner is the stored alarm's project unless the body moves
        # the alarm: an administrator's update of another project's
        # alarm is checked for that project.
        scoping.check_references(
            context.runtime().db, new, owner=new["project_id"]
        )
        return new

    try:
        row = store().replace(
            alarm_id, build, actor(identity), project_id=scope(identity)
        )
    except BaseException:
        trusts.release(created)
        raise
    trusts.release(trusts.unused(stored, trusts.action_urls(row)))
    return common.respond(render_alarm(row))


@bp.delete("/v2/alarms/<alarm_id>")
def delete_alarm(alarm_id: str) -> flask.Response:
    """Delete an alarm (its history stays)."""
    identity = require_member()
    stored: list[str] = []
    if _keystone_mode():
        stored = trusts.action_urls(store().get(alarm_id, scope(identity)))
    store().delete(alarm_id, actor(identity), project_id=scope(identity))
    trusts.release(trusts.unused(stored, ()))
    return flask.Response(status=204)


@bp.get("/v2/alarms/<alarm_id>/state")
def get_state(alarm_id: str) -> flask.Response:
    """Return the state as a bare JSON string."""
    identity = require_reader()
    row = store().get(alarm_id, scope(identity))
    return common.respond(types.render(types.AlarmState, row["state"]))


@bp.put("/v2/alarms/<alarm_id>/state")
def set_state(alarm_id: str) -> flask.Response:
    """Set the state from a bare JSON string such as ``"ok"``."""
    identity = require_member()
    state = params.v2_json_body()
    if not isinstance(state, str) or state not in rules.STATES:
        raise errors.APIError(
            f"Invalid input for field/attribute state. Value: '{state}'. "
            "Value should be one of: " + ", ".join(rules.STATES)
        )
    notifier_conf = context.runtime().conf.notifier
    row = store().set_state(
        alarm_id,
        state,
        actor(identity),
        project_id=scope(identity),
        notify=notifier_conf.notify_on_manual_state_change,
    )
    return common.respond(types.render(types.AlarmState, row["state"]))


# -- history ------------------------------------------------------------------


def _history_conditions(identity: Identity) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    timestamps: list[tuple[str, dt.datetime]] = []
    offset = 0
    for query in common.parse_queries():
        field, op, raw = query["field"], query["op"], query["value"]
        if field not in HISTORY_FIELDS:
            raise errors.APIError(
                f'Unknown argument: "{field}": unrecognized field in '
                f"query, valid keys: {', '.join(HISTORY_FIELDS)}"
            )
        if field == "timestamp":
            if op not in TIME_OPS and op != "eq":
                raise errors.APIError(
                    f"Invalid input for field/attribute op. Value: '{op}'. "
                    "timestamp takes lt, le, gt, ge or eq"
                )
            try:
                timestamps.append((op, timeutils.parse_datetime(raw)))
            except ValueError as exc:
                raise errors.APIError(
                    f"Invalid input for field/attribute timestamp. Value: "
                    f"'{raw}'. Not an ISO 8601 timestamp"
                ) from exc
            continue
        if op != "eq":
            raise errors.APIError(
                f"Invalid input for field/attribute op. Value: '{op}'. "
                f"only operations eq are allowed for {field}"
            )
        if field == "search_offset":
            try:
                offset = int(raw)
            except ValueError as exc:
                raise errors.APIError(
                    f"Invalid input for field/attribute search_offset. "
                    f"Value: '{raw}'. it should be an integer (minutes)"
                ) from exc
            continue
        column = {"user": "user_id", "project": "project_id"}.get(field, field)
        conditions.append(getattr(AlarmHistory, column) == raw)
    if offset and not timestamps:
        raise errors.APIError(
            "Invalid input for field/attribute search_offset. "
            "search_offset needs a timestamp query"
        )
    delta = dt.timedelta(minutes=offset)
    for op, when in timestamps:
        if op == "eq":
            conditions.append(AlarmHistory.timestamp >= when - delta)
            conditions.append(AlarmHistory.timestamp <= when + delta)
        elif op in ("lt", "le"):
            conditions.append(
                getattr(AlarmHistory.timestamp, TIME_OPS[op])(when + delta)
            )
        else:
            conditions.append(
                getattr(AlarmHistory.timestamp, TIME_OPS[op])(when - delta)
            )
    if not identity.is_admin:
        conditions.append(AlarmHistory.on_behalf_of == identity.project_id)
    return conditions


@bp.get("/v2/alarms/<alarm_id>/history")
def alarm_history(alarm_id: str) -> flask.Response:
    """History of one alarm, also after its deletion."""
    identity = require_reader()
    conditions = [
        AlarmHistory.alarm_id == alarm_id,
        *_history_conditions(identity),
    ]
    sort = params.v2_sort(store_mod.HISTORY_SORT_KEYS)
    limit = params.v2_limit(context.runtime().conf.api.max_limit)
    alarms = store()
    try:
        alarms.get(alarm_id, scope(identity))
    except store_mod.AlarmNotFound:
        # A deleted alarm still has its history.
        visible = [AlarmHistory.alarm_id == alarm_id]
        if not identity.is_admin:
            visible.append(AlarmHistory.on_behalf_of == identity.project_id)
        if not alarms.history(conditions=visible, limit=1):
            raise
    entries = alarms.history(
        conditions=conditions,
        sort=sort,
        limit=limit,
        marker=params.v2_marker(),
    )
    return common.respond(
        [render_change(e) for e in entries],
        next_link=params.v2_next_link(entries, limit, "event_id"),
    )
