"""The pages of ``/dashboard`` and the cheap endpoints their script polls.

Every page starts with the same role check as the API
(:func:`api.context.require_reader`): a reader sees the alarms of its
project, an administrator every project's (and may filter by project).
The pages write nothing themselves: their buttons call the v2 API
(``/v2/alarms/<id>``, ``.../state``, ``.../deliveries/<id>/redeliver``),
whose rules apply; the buttons are only shown to callers who may write.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import flask
import sqlalchemy as sa
import werkzeug

import notifiers
from alarmer import timeutils
from alarmer.alarms import counters, model
from alarmer.alarms import store as store_mod
from alarmer.alarms.tables import Alarm, AlarmHistory, Notification
from api import context, errors
from api.dashboard import plot as plot_mod
from api.dashboard import words
from api.identity import DASHBOARD_COOKIE, Identity
from notifiers import tables as delivery_tables

LOG = logging.getLogger(__name__)

bp = flask.Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
)

PAGE_SIZE = 50
HISTORY_SIZE = 100
DELIVERIES_SIZE = 50
#: How often the pages ask whether something changed (milliseconds).
POLL_MS = 2000
SEVERITY_RANK = {s: i for i, s in enumerate(model.SEVERITIES)}


def _scope(who: Identity) -> str | None:
    return None if who.is_admin else who.project_id


def _age(value: dt.datetime | None) -> str:
    if value is None:
        return "never"
    seconds = (timeutils.utcnow() - timeutils.as_utc(value)).total_seconds()
    if seconds < 60:
        return f"{max(int(seconds), 0)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


@bp.app_template_filter("iso")
def _iso(value: dt.datetime | None) -> str:
    return timeutils.isoformat(value) or ""


@bp.app_template_filter("age")
def _age_filter(value: dt.datetime | None) -> str:
    return _age(value)


@bp.errorhandler(errors.APIError)
def _error(exc: errors.APIError) -> flask.Response:
    """The error page; a 401 also forgets the browser's sign-in.

    The cookie's key or token was refused (it expired, or was revoked):
    the browser is signed out, and the page links to the sign-in form.
    """
    page = flask.render_template(
        "dashboard/error.html", status=exc.status, message=exc.message
    )
    response = flask.make_response(page, exc.status, exc.headers)
    if exc.status == 401 and DASHBOARD_COOKIE in flask.request.cookies:
        forget_sign_in(response)
    return response


def forget_sign_in(response: werkzeug.Response) -> None:
    """Make the browser drop the dashboard's cookie."""
    response.delete_cookie(
        DASHBOARD_COOKIE,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=flask.request.is_secure,
    )


# -- the alarm list --------------------------------------------------------


def _filters(who: Identity) -> dict[str, Any]:
    args = flask.request.args
    chosen: dict[str, Any] = {}
    for name, allowed in (
        ("state", model.STATES),
        ("severity", model.SEVERITIES),
        ("type", model.ALARM_TYPES),
    ):
        value = args.get(name, "")
        if value:
            if value not in allowed:
                raise errors.APIError(
                    f"{name} must be one of {', '.join(allowed)}", 400
                )
            chosen[name] = value
    project = args.get("project", "").strip()
    if project:
        if not who.is_admin:
            raise errors.Forbidden(
                "Only an administrator may choose the project"
            )
        chosen["project_id"] = project
    return chosen


def _conditions(
    who: Identity, filters: Mapping[str, Any], search: str
) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = [
        getattr(Alarm, k) == v for k, v in filters.items()
    ]
    scope = _scope(who)
    if scope is not None:
        conditions.append(Alarm.project_id == scope)
    if search:
        dialect = context.runtime().db.dialect
        conditions.append(name_contains(search, dialect))
    return conditions


def name_contains(search: str, dialect: str) -> sa.ColumnElement[bool]:
    """Alarms whose name contains *search*, literally, in any case.

    ``%``, ``_`` and ``\\`` are escaped: they match themselves.  SQLite's
    and MariaDB's ``LIKE`` ignore the case already; on PostgreSQL it is
    ``ILIKE``, which the trigram index (migration ``t0005``) answers.

    :param dialect: the database's dialect name (``postgresql``...).
    """
    escaped = (
        search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    )
    pattern = f"%{escaped}%"
    if dialect == "postgresql":
        return Alarm.name.ilike(pattern, escape="\\")
    return Alarm.name.like(pattern, escape="\\")


#: Key of the counts cache in ``app.extensions``.
COUNTS_CACHE = "alarmer.dashboard.counts"
#: Counts kept (one per scope, filters and search).
COUNTS_KEPT = 256


def _counts(
    who: Identity,
    conditions: list[sa.ColumnElement[bool]],
    key: tuple[Any, ...],
) -> dict[str, int]:
    """Alarms per state, cached until an alarm of the scope changes.

    Counting reads every index entry of the scope
    (:data:`alarmer.alarms.counters.ALARM_COUNT_INDEX`); the answer is
    kept under the scope's last change (:func:`counters.last_change`,
    one index step), so pages and polls reuse it while nothing changed.
    """
    cache: collections.OrderedDict[tuple[Any, ...], dict[str, int]] = (
        flask.current_app.extensions.setdefault(
            COUNTS_CACHE, collections.OrderedDict()
        )
    )
    with context.runtime().db.read_session() as session:
        full_key = (counters.last_change(session, _scope(who)), *key)
        found = cache.get(full_key)
        if found is not None:
            return found
        rows = session.execute(
            sa.select(Alarm.state, sa.func.count())
            .where(*conditions)
            .group_by(Alarm.state)
        ).all()
    counted = {state: int(n) for state, n in rows}
    result = {state: counted.get(state, 0) for state in model.STATES}
    cache[full_key] = result
    while len(cache) > COUNTS_KEPT:
        try:
            cache.popitem(last=False)
        except KeyError:  # emptied by another request meanwhile
            break
    return result


def _list_page(
    conditions: list[sa.ColumnElement[bool]], marker: str | None
) -> list[dict[str, Any]]:
    """One page, newest change first, by keyset after *marker*."""
    table = Alarm.__table__
    columns = [
        table.c[name]
        for name in (
            "alarm_id",
            "name",
            "type",
            "state",
            "severity",
            "enabled",
            "state_timestamp",
            "timestamp",
            "project_id",
            "state_reason",
        )
    ]
    with context.runtime().db.read_session() as session:
        stmt = sa.select(*columns).where(*conditions)
        if marker:
            after = session.execute(
                sa.select(Alarm.timestamp).where(
                    Alarm.alarm_id == marker, *conditions
                )
            ).first()
            if after is None:
                raise errors.APIError("marker: not an alarm of this list", 400)
            # A row-value comparison: one range of the timestamp index.
            stmt = stmt.where(
                sa.tuple_(Alarm.timestamp, Alarm.alarm_id)
                < sa.tuple_(sa.literal(after[0], Alarm.timestamp.type), marker)
            )
        stmt = stmt.order_by(
            Alarm.timestamp.desc(), Alarm.alarm_id.desc()
        ).limit(PAGE_SIZE + 1)
        return [dict(r) for r in session.execute(stmt).mappings()]


@bp.route("/", methods=["GET"])
def alarms() -> str:
    """The alarm list: counts per state, filters, one page."""
    who = context.require_reader()
    filters = _filters(who)
    search = flask.request.args.get("q", "").strip()[:255]
    marker = flask.request.args.get("marker") or None
    conditions = _conditions(who, filters, search)
    rows = _list_page(conditions, marker)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    args = {k: v for k, v in flask.request.args.items() if k != "marker"}
    return flask.render_template(
        "dashboard/alarms.html",
        who=who,
        rows=rows,
        counts=_counts(
            who,
            conditions,
            (_scope(who), tuple(sorted(filters.items())), search),
        ),
        filters=filters,
        search=search,
        marker=marker,
        next_marker=rows[-1]["alarm_id"] if more else None,
        args=args,
        states=model.STATES,
        severities=model.SEVERITIES,
        types=model.ALARM_TYPES,
        token_url=flask.url_for("dashboard.token", **args),  # type: ignore[arg-type]
        alarm_base=flask.url_for("dashboard.alarms") + "alarms/",
        poll_ms=POLL_MS,
        sentence=words.sentence,
    )


@bp.route("/token", methods=["GET"])
def token() -> flask.Response:
    """Whether something changed: a value the pages poll.

    The time of the newest change of an alarm of the caller's scope
    (one index step, :func:`alarmer.alarms.counters.last_change`), or
    the version of one alarm and the newest update of its deliveries
    (``?alarm=``).
    """
    who = context.require_reader()
    alarm_id = flask.request.args.get("alarm")
    with context.runtime().db.read_session() as session:
        if alarm_id:
            conditions = [Alarm.alarm_id == alarm_id]
            scope = _scope(who)
            if scope is not None:
                conditions.append(Alarm.project_id == scope)
            version = session.scalar(
                sa.select(Alarm.version).where(*conditions)
            )
            if version is None:
                raise errors.NotFound(f"Alarm {alarm_id} not found")
            last = session.scalar(
                sa.select(
                    sa.func.max(delivery_tables.Delivery.updated_at)
                ).where(delivery_tables.Delivery.alarm_id == alarm_id)
            )
            value = f"{version}:{timeutils.isoformat(last)}"
        else:
            _filters(who)  # the same checks as the page
            value = counters.last_change(session, _scope(who))
    response = flask.jsonify({"token": value})
    response.headers["Cache-Control"] = "no-store"
    return response


# -- one alarm -------------------------------------------------------------


def _get_alarm(who: Identity, alarm_id: str) -> dict[str, Any]:
    try:
        return store_mod.AlarmStore(context.runtime().db).get(
            alarm_id, _scope(who)
        )
    except store_mod.AlarmNotFound:
        raise errors.NotFound(f"Alarm {alarm_id} not found") from None


def _history(alarm_id: str) -> list[dict[str, Any]]:
    store = store_mod.AlarmStore(context.runtime().db)
    entries = store.history(
        conditions=[AlarmHistory.alarm_id == alarm_id],
        sort=[("timestamp", "desc")],
        limit=HISTORY_SIZE,
    )
    for entry in entries:
        try:
            parsed = json.loads(entry["detail"] or "null")
        except (TypeError, ValueError):
            parsed = None
        entry["parsed"] = parsed if isinstance(parsed, dict) else {}
    return entries


def _deliveries(
    who: Identity, alarm_id: str | None, status: str | None = None
) -> list[dict[str, Any]]:
    d = delivery_tables.Delivery
    a = delivery_tables.DeliveryAttempt
    with context.runtime().db.read_session() as session:
        stmt = sa.select(
            d.id,
            d.alarm_id,
            d.seq,
            d.target,
            d.status,
            d.attempts,
            d.last_status_code,
            d.last_error,
            d.created_at,
            d.updated_at,
            Notification.current,
            Alarm.name,
            Alarm.project_id,
        ).join(Notification, Notification.id == d.notification_id)
        stmt = stmt.join(Alarm, Alarm.alarm_id == d.alarm_id)
        if alarm_id is not None:
            stmt = stmt.where(d.alarm_id == alarm_id)
        if status:
            stmt = stmt.where(d.status == status)
        scope = _scope(who)
        if scope is not None:
            stmt = stmt.where(Alarm.project_id == scope)
        stmt = stmt.order_by(d.created_at.desc()).limit(DELIVERIES_SIZE)
        rows = [dict(r) for r in session.execute(stmt).mappings()]
        ids = [r["id"] for r in rows]
        latency: dict[str, float] = {}
        if ids:
            for delivery_id, ms in session.execute(
                sa.select(a.delivery_id, sa.func.max(a.duration_ms))
                .where(a.delivery_id.in_(ids))
                .group_by(a.delivery_id)
            ):
                latency[delivery_id] = float(ms or 0)
    for row in rows:
        row["target"] = notifiers.redact(row["target"])
        row["latency_ms"] = latency.get(row["id"])
    return rows


def _plots(
    row: Mapping[str, Any], seconds: int
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The alarm's plot (threshold rules) or its leaves (composite)."""
    rt = context.runtime()
    with rt.db.read_session() as session:
        if row["type"] != model.COMPOSITE:
            p = plot_mod.plot(
                rt.index,
                rt.series,
                session,
                alarm_type=row["type"],
                rule=row["rule"],
                project_id=row["project_id"],
                seconds=seconds,
            )
            return p.document(), []
        leaves = []
        for i, leaf in enumerate(model.leaves(row["rule"]), start=1):
            p = plot_mod.plot(
                rt.index,
                rt.series,
                session,
                alarm_type=str(leaf.get("type")),
                rule=leaf,
                project_id=row["project_id"],
                seconds=seconds,
            )
            leaves.append(
                {
                    "name": f"rule{i}",
                    "sentence": words.threshold_sentence(
                        str(leaf.get("type")), leaf
                    ),
                    "state": plot_mod.leaf_state(
                        p, int(leaf.get("evaluation_periods") or 1)
                    ),
                    "problem": p.problem,
                }
            )
        return None, leaves


def _tree(rule: Any, states: list[str]) -> dict[str, Any]:
    """The composite rule as nested nodes, each leaf with its state."""
    counter = iter(range(len(states)))

    def leaf(sub: Mapping[str, Any]) -> dict[str, Any]:
        i = next(counter)
        return {
            "leaf": True,
            "name": f"rule{i + 1}",
            "sentence": words.threshold_sentence(str(sub.get("type")), sub),
            "state": states[i],
        }

    def join(word: str, items: Any) -> dict[str, Any]:
        return {"leaf": False, "word": word.upper(), "items": list(items)}

    return model.fold(rule, leaf, join)


@bp.route("/alarms/<alarm_id>", methods=["GET"])
def alarm(alarm_id: str) -> str:
    """One alarm: rule in words, state, plot or tree, history, deliveries."""
    who = context.require_reader()
    row = _get_alarm(who, alarm_id)
    chosen = flask.request.args.get("range", plot_mod.DEFAULT_RANGE)
    if chosen not in plot_mod.RANGES:
        raise errors.APIError(
            f"range must be one of {', '.join(plot_mod.RANGES)}", 400
        )
    started = time.perf_counter()
    plot, leaves = _plots(row, plot_mod.RANGES[chosen])
    history = _history(alarm_id)
    marks = plot_mod.transitions(history)
    LOG.debug(
        "dashboard: plot of %s in %.1f ms",
        alarm_id,
        (time.perf_counter() - started) * 1000,
    )
    tree = (
        _tree(row["rule"], [leaf["state"] for leaf in leaves])
        if leaves
        else None
    )
    return flask.render_template(
        "dashboard/alarm.html",
        who=who,
        alarm=row,
        sentence=words.sentence(row["type"], row["rule"]),
        plot=plot,
        plot_json=plot_mod.script_json({**(plot or {}), "marks": marks}),
        marks=marks,
        tree=tree,
        history=history,
        deliveries=_deliveries(who, alarm_id),
        ranges=list(plot_mod.RANGES),
        chosen=chosen,
        states=model.STATES,
        token_url=flask.url_for("dashboard.token", alarm=alarm_id),
        poll_ms=POLL_MS,
    )


# -- deliveries ------------------------------------------------------------


@bp.route("/deliveries", methods=["GET"])
def deliveries() -> str:
    """Recent deliveries of every visible alarm; dead letters first."""
    who = context.require_reader()
    status = flask.request.args.get("status") or None
    if status is not None and status not in delivery_tables.STATUSES:
        raise errors.APIError(
            f"status must be one of {', '.join(delivery_tables.STATUSES)}",
            400,
        )
    return flask.render_template(
        "dashboard/deliveries.html",
        who=who,
        rows=_deliveries(who, None, status),
        dead=_deliveries(who, None, delivery_tables.DEAD),
        status=status,
        statuses=delivery_tables.STATUSES,
    )
