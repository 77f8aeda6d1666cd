"""Alarm definitions in SQL: create, read, page, replace, delete, history.

Every write bumps ``alarm.version`` with a conditional ``UPDATE ... WHERE
alarm_id = :id AND version = :read`` so that an API edit and an evaluator
transition never overwrite each other; a replace that loses the race is
retried on the fresh row.  Lists are paged in SQL with a keyset on the
sort keys plus ``alarm_id`` (``event_id`` for history), so a page costs
the same whatever the table size.  Functions return plain dicts.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer import timeutils
from alarmer.alarms import model, transitions
from alarmer.alarms.tables import Alarm, AlarmHistory, Quota
from alarmer.db import Database, dialect
from alarmer.errors import AlarmerError

LOG = logging.getLogger(__name__)

#: Sort keys of alarm lists (Aodh's) and their default.
ALARM_SORT_KEYS = (
    "alarm_id",
    "enabled",
    "name",
    "type",
    "severity",
    "timestamp",
    "user_id",
    "project_id",
    "state",
    "repeat_actions",
    "state_timestamp",
)
HISTORY_SORT_KEYS = (
    "event_id",
    "alarm_id",
    "on_behalf_of",
    "project_id",
    "user_id",
    "type",
    "timestamp",
    "severity",
)
DEFAULT_SORT = (("timestamp", "desc"),)
SEVERITY_RANK = {"low": 1, "moderate": 2, "critical": 3}
MANUAL_REASON = "Manually set via API"
#: Attempts of a read-modify-write that lost a race before giving up.
MAX_ATTEMPTS = 5
#: Fields of the definition (what a PUT may change).
DEFINITION_FIELDS = (
    "name",
    "description",
    "type",
    "rule",
    "enabled",
    "severity",
    "ok_actions",
    "alarm_actions",
    "insufficient_data_actions",
    "repeat_actions",
    "time_constraints",
    "project_id",
    "user_id",
)
#: Optional lifecycle options (a PUT without them unsets them).
LIFECYCLE_FIELDS = (
    "repeat_interval",
    "missing_data",
    "keep_firing_for",
    "pending_for",
    "evaluation_interval",
)


class AlarmStoreError(AlarmerError):
    """Base of the errors of this module."""


class AlarmNotFound(AlarmStoreError):
    """No alarm with this id (visible to the caller)."""

    def __init__(self, alarm_id: str) -> None:
        super().__init__(f"Alarm {alarm_id} not found")
        self.alarm_id = alarm_id


class InvalidMarker(AlarmStoreError):
    """The marker of a page names no row the caller can see."""

    def __init__(self, marker: str) -> None:
        super().__init__(f"Invalid marker: {marker} not found")
        self.marker = marker


class QuotaExceeded(AlarmStoreError):
    """Creating the alarm would exceed a quota."""


class ConcurrentUpdate(AlarmStoreError):
    """The alarm kept changing under a read-modify-write."""


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who makes a change (recorded in history)."""

    user_id: str | None
    project_id: str | None


# -- representation ---------------------------------------------------------


def row_dict(alarm: Alarm) -> dict[str, Any]:
    """Return every column of *alarm* as a plain dict."""
    return {c.key: getattr(alarm, c.key) for c in Alarm.__table__.columns}


def document(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return Aodh's JSON document of an alarm row (timestamps with +00:00).

    The rule goes under ``<type>_rule``; keys are in Aodh's order.
    """
    doc = {
        "alarm_actions": list(row["alarm_actions"]),
        "alarm_id": row["alarm_id"],
        "description": row["description"],
        "enabled": row["enabled"],
        "evaluate_timestamp": timeutils.isoformat(row["evaluate_timestamp"]),
        f"{row['type']}_rule": row["rule"],
        "insufficient_data_actions": list(row["insufficient_data_actions"]),
        "name": row["name"],
        "ok_actions": list(row["ok_actions"]),
        "project_id": row["project_id"],
        "repeat_actions": row["repeat_actions"],
        "severity": row["severity"],
        "state": row["state"],
        "state_reason": row["state_reason"],
        "state_timestamp": timeutils.isoformat(row["state_timestamp"]),
        "time_constraints": list(row["time_constraints"]),
        "timestamp": timeutils.isoformat(row["timestamp"]),
        "type": row["type"],
        "user_id": row["user_id"],
    }
    # Lifecycle options appear only when set: an alarm defined as Aodh
    # defines it has Aodh's document.
    for key in LIFECYCLE_FIELDS:
        if row.get(key) is not None:
            doc[key] = row[key]
    return doc


def history_dict(entry: AlarmHistory) -> dict[str, Any]:
    """Return Aodh's JSON document of a history entry."""
    return {
        "alarm_id": entry.alarm_id,
        "detail": entry.detail,
        "event_id": entry.event_id,
        "on_behalf_of": entry.on_behalf_of,
        "project_id": entry.project_id,
        "severity": entry.severity,
        "timestamp": timeutils.isoformat(entry.timestamp),
        "type": entry.type,
        "user_id": entry.user_id,
    }


def _history(
    row: Mapping[str, Any],
    kind: str,
    detail: Mapping[str, Any],
    actor: Actor,
    when: dt.datetime,
) -> AlarmHistory:
    return AlarmHistory(
        event_id=str(uuid.uuid4()),
        alarm_id=row["alarm_id"],
        type=kind,
        detail=json.dumps(detail, sort_keys=True),
        user_id=actor.user_id,
        project_id=actor.project_id,
        on_behalf_of=row["project_id"],
        severity=row["severity"],
        timestamp=when,
    )


# -- ordering and paging ----------------------------------------------------


def _alarm_key(name: str) -> sa.ColumnElement[Any]:
    if name == "severity":
        return sa.case(
            *((Alarm.severity == k, v) for k, v in SEVERITY_RANK.items()),
            else_=0,
        )
    return getattr(Alarm, name)


def _alarm_key_value(name: str, row: Mapping[str, Any]) -> Any:
    if name == "severity":
        return SEVERITY_RANK.get(row["severity"], 0)
    return row[name]


def _keyset(
    keys: Sequence[tuple[sa.ColumnElement[Any], str, Any]],
) -> sa.ColumnElement[bool]:
    """WHERE clause selecting the rows after a marker in *keys* order."""
    directions = {direction for _, direction, _ in keys}
    if len(directions) == 1:
        left = sa.tuple_(*(expr for expr, _, _ in keys))
        right = sa.tuple_(*(sa.literal(v, type_=e.type) for e, _, v in keys))
        return left < right if directions == {"desc"} else left > right
    clauses = []
    for i, (expr, direction, value) in enumerate(keys):
        equal = [e == v for e, _, v in keys[:i]]
        after = expr < value if direction == "desc" else expr > value
        clauses.append(sa.and_(*equal, after))
    return sa.or_(*clauses)


def _order(
    keys: Sequence[tuple[sa.ColumnElement[Any], str, Any]],
) -> list[sa.ColumnElement[Any]]:
    return [e.desc() if d == "desc" else e.asc() for e, d, _ in keys]


def _sort_plan(
    sort: Sequence[tuple[str, str]], tie: str
) -> list[tuple[str, str]]:
    plan = [(k, d) for k, d in (sort or DEFAULT_SORT)]
    names = [k for k, _ in plan]
    if tie not in names:
        plan.append((tie, plan[0][1]))
    else:
        plan = plan[: names.index(tie) + 1]
    return plan


# -- the store --------------------------------------------------------------


class AlarmStore:
    """Alarm definitions, history and quotas in the SQL database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sql = dialect.for_engine(db.engine)

    # reads

    def get(
        self, alarm_id: str, project_id: str | None = None
    ) -> dict[str, Any]:
        """Return the alarm row; *project_id* limits the visibility.

        :raises AlarmNotFound: no such alarm in the scope.
        """
        with self.db.read_session() as session:
            alarm = session.get(Alarm, alarm_id)
            if alarm is None or (
                project_id is not None and alarm.project_id != project_id
            ):
                raise AlarmNotFound(alarm_id)
            return row_dict(alarm)

    def exists(self, alarm_id: str) -> bool:
        """True when an alarm with *alarm_id* exists (in any project)."""
        with self.db.read_session() as session:
            return session.get(Alarm, alarm_id) is not None

    def list(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        sort: Sequence[tuple[str, str]] = (),
        limit: int | None = None,
        marker: str | None = None,
        where: sa.ColumnElement[bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Return one page of alarms.

        :param filters: ``{column: value}`` equality filters.
        :param sort: ``(key, "asc"|"desc")`` pairs from
            :data:`ALARM_SORT_KEYS`; ``alarm_id`` breaks ties.
        :param marker: id of the last alarm of the previous page; it must
            match *filters* and *where*.
        :param where: an extra SQL condition (complex queries).
        :raises InvalidMarker: *marker* is not in the filtered set.
        """
        conditions: list[sa.ColumnElement[bool]] = [
            getattr(Alarm, k) == v for k, v in (filters or {}).items()
        ]
        if where is not None:
            conditions.append(where)
        plan = _sort_plan(sort, "alarm_id")
        table = Alarm.__table__
        with self.db.read_session() as session:
            # Core rows, not ORM objects: a page is read-only and this
            # halves the cost of loading it.
            stmt = sa.select(table).where(*conditions)
            keys: list[tuple[sa.ColumnElement[Any], str, Any]]
            if marker is not None:
                found = (
                    session.execute(
                        sa.select(table).where(
                            Alarm.alarm_id == marker, *conditions
                        )
                    )
                    .mappings()
                    .first()
                )
                if found is None:
                    raise InvalidMarker(marker)
                row = dict(found)
                keys = [
                    (_alarm_key(k), d, _alarm_key_value(k, row))
                    for k, d in plan
                ]
                stmt = stmt.where(_keyset(keys))
            else:
                keys = [(_alarm_key(k), d, None) for k, d in plan]
            stmt = stmt.order_by(*_order(keys))
            if limit is not None:
                stmt = stmt.limit(limit)
            return [dict(r) for r in session.execute(stmt).mappings()]

    def count(self, project_id: str, user_id: str | None = None) -> int:
        """Number of alarms of *project_id* (and *user_id* when given)."""
        with self.db.read_session() as session:
            return self._count(session, project_id, user_id)

    @staticmethod
    def _count(
        session: orm.Session, project_id: str, user_id: str | None
    ) -> int:
        stmt = sa.select(sa.func.count()).where(Alarm.project_id == project_id)
        if user_id is not None:
            stmt = stmt.where(Alarm.user_id == user_id)
        return int(session.scalar(stmt) or 0)

    # writes

    def create(
        self,
        values: Mapping[str, Any],
        actor: Actor,
        *,
        project_quota: int | None = None,
        user_quota: int | None = None,
    ) -> dict[str, Any]:
        """Insert an alarm and its ``creation`` history entry.

        *values* holds :data:`DEFINITION_FIELDS` and optionally
        ``state``.  Quotas (``None`` or negative: unlimited) are checked in
        the same transaction: a stored per-project limit wins over
        *project_quota*.

        :raises QuotaExceeded: the project or user is at its limit.
        """
        when = timeutils.utcnow()
        row = {k: values[k] for k in DEFINITION_FIELDS}
        row.update({k: values.get(k) for k in LIFECYCLE_FIELDS})
        row.update(
            alarm_id=str(uuid.uuid4()),
            version=1,
            seq=0,
            state=values.get("state") or model.INSUFFICIENT_DATA,
            state_reason="Not evaluated yet",
            state_timestamp=when,
            timestamp=when,
            evaluate_timestamp=when,
        )
        # The stored limit is read before the writing transaction, whose
        # first statement must be the lock (see _lock_project).
        with self.db.read_session() as session:
            limit = self._project_limit(session, row["project_id"])
        if limit is None:
            limit = project_quota
        checks = [(limit, None), (user_quota, row["user_id"])]
        with self.db.session() as session, session.begin():
            if any(q is not None and q >= 0 for q, _ in checks):
                self._lock_project(session, row["project_id"])
            for quota, user in checks:
                if quota is not None and quota >= 0:
                    used = self._count(session, row["project_id"], user)
                    if used >= quota:
                        raise QuotaExceeded(
                            f"Alarm quota exceeded for user "
                            f"{row['user_id']} on project "
                            f"{row['project_id']}"
                        )
            session.add(Alarm(**row))
            session.add(_history(row, "creation", document(row), actor, when))
        LOG.info(
            "alarm %s created in project %s",
            row["alarm_id"],
            row["project_id"],
        )
        return row

    def _lock_project(self, session: orm.Session, project_id: str) -> None:
        # Serialize the quota checks of one project until the transaction
        # ends, whether or not the project has a quota row.  Taken first:
        # on MySQL (repeatable read) the count that follows then sees the
        # alarms the previous holder committed.
        self.sql.lock(session, f"alarmer-quota:{project_id}")

    def replace(
        self,
        alarm_id: str,
        build: Callable[[dict[str, Any]], Mapping[str, Any]],
        actor: Actor,
        *,
        project_id: str | None = None,
    ) -> dict[str, Any]:
        """Replace the definition of an alarm (a PUT), fenced by version.

        *build* receives the current row and returns the new definition
        (:data:`DEFINITION_FIELDS`, optionally ``state``); it may raise to
        abort, and is called again if the row changed meanwhile.  The
        evaluation bookkeeping (``evaluate_timestamp``, ``seq``) is kept;
        a state change sets ``state_reason`` and ``state_timestamp``.
        History: a ``rule change`` entry with the changed keys, and a
        ``state transition`` entry when the state changed.

        :raises AlarmNotFound: no such alarm in the scope.
        :raises ConcurrentUpdate: it kept changing (never in practice).
        """
        for _attempt in range(MAX_ATTEMPTS):
            current = self.get(alarm_id, project_id)
            new = dict(build(dict(current)))
            when = timeutils.utcnow()
            values: dict[str, Any] = {
                k: new[k] for k in DEFINITION_FIELDS if k in new
            }
            values.update({k: new.get(k) for k in LIFECYCLE_FIELDS})
            values["timestamp"] = when
            state = new.get("state")
            state_changed = state is not None and state != current["state"]
            if state_changed:
                values.update(
                    state=state,
                    state_reason=MANUAL_REASON,
                    state_timestamp=when,
                )
            updated = {**current, **values}
            before, after = document(current), document(updated)
            changes = {
                k: v
                for k, v in after.items()
                if before.get(k) != v and k != "timestamp"
            }
            values["version"] = current["version"] + 1
            with self.db.session() as session, session.begin():
                result = session.execute(
                    sa.update(Alarm)
                    .where(
                        Alarm.alarm_id == alarm_id,
                        Alarm.version == current["version"],
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
                if cast(sa.CursorResult[Any], result).rowcount != 1:
                    LOG.debug("alarm %s changed meanwhile, retrying", alarm_id)
                    continue
                if changes:
                    session.add(
                        _history(updated, "rule change", changes, actor, when)
                    )
                if state_changed:
                    session.add(
                        _history(
                            updated,
                            "state transition",
                            {
                                "state": state,
                                "transition_reason": MANUAL_REASON,
                            },
                            actor,
                            when,
                        )
                    )
            updated["version"] = values["version"]
            LOG.info("alarm %s replaced", alarm_id)
            return updated
        raise ConcurrentUpdate(f"Alarm {alarm_id} is being changed")

    def set_state(
        self,
        alarm_id: str,
        state: str,
        actor: Actor,
        *,
        project_id: str | None = None,
        notify: bool = False,
    ) -> dict[str, Any]:
        """Set the state by hand, fenced by version; history if it changed.

        With *notify* (``[notifier] notify_on_manual_state_change``), the
        actions of the new state are notified: an outbox row numbered by
        the alarm's next ``seq`` is written in the same transaction.

        :raises AlarmNotFound: no such alarm in the scope.
        """
        for _attempt in range(MAX_ATTEMPTS):
            current = self.get(alarm_id, project_id)
            if current["state"] == state:
                return current
            with self.db.session() as session, session.begin():
                done = transitions.record_transition(
                    session,
                    alarm_id,
                    current["version"],
                    state,
                    MANUAL_REASON,
                    {"type": "manual"},
                    now=timeutils.utcnow(),
                    notify=notify,
                    history_user_id=actor.user_id,
                    history_project_id=actor.project_id,
                )
            if not done:
                LOG.debug("alarm %s changed meanwhile, retrying", alarm_id)
                continue
            LOG.info("alarm %s manually set to %s", alarm_id, state)
            return self.get(alarm_id, project_id)
        raise ConcurrentUpdate(f"Alarm {alarm_id} is being changed")

    def delete(
        self, alarm_id: str, actor: Actor, *, project_id: str | None = None
    ) -> None:
        """Delete an alarm; its history stays, plus a ``deletion`` entry.

        :raises AlarmNotFound: no such alarm in the scope.
        """
        with self.db.session() as session, session.begin():
            alarm = session.get(Alarm, alarm_id)
            if alarm is None or (
                project_id is not None and alarm.project_id != project_id
            ):
                raise AlarmNotFound(alarm_id)
            row = row_dict(alarm)
            session.execute(sa.delete(Alarm).where(Alarm.alarm_id == alarm_id))
            session.add(
                _history(
                    row, "deletion", document(row), actor, timeutils.utcnow()
                )
            )
        LOG.info("alarm %s deleted", alarm_id)

    # history

    def history(
        self,
        *,
        conditions: Sequence[sa.ColumnElement[bool]] = (),
        sort: Sequence[tuple[str, str]] = (),
        limit: int | None = None,
        marker: str | None = None,
    ) -> builtins.list[dict[str, Any]]:  # "list" is a method here
        """Return one page of history entries (``event_id`` breaks ties).

        :raises InvalidMarker: *marker* is not in the filtered set.
        """
        plan = _sort_plan(sort, "event_id")
        with self.db.read_session() as session:
            stmt = sa.select(AlarmHistory).where(*conditions)
            if marker is not None:
                found = session.scalars(
                    sa.select(AlarmHistory).where(
                        AlarmHistory.event_id == marker, *conditions
                    )
                ).first()
                if found is None:
                    raise InvalidMarker(marker)
                keys = [
                    (
                        _history_key(k),
                        d,
                        SEVERITY_RANK.get(found.severity or "", 0)
                        if k == "severity"
                        else getattr(found, k),
                    )
                    for k, d in plan
                ]
                stmt = stmt.where(_keyset(keys))
            else:
                keys = [(_history_key(k), d, None) for k, d in plan]
            stmt = stmt.order_by(*_order(keys))
            if limit is not None:
                stmt = stmt.limit(limit)
            return [history_dict(h) for h in session.scalars(stmt)]

    # quotas

    def _project_limit(
        self, session: orm.Session, project_id: str
    ) -> int | None:
        return session.scalar(
            sa.select(Quota.limit).where(
                Quota.project_id == project_id, Quota.resource == "alarms"
            )
        )

    def get_quotas(self, project_id: str) -> dict[str, int]:
        """Return ``{resource: limit}`` stored for *project_id*."""
        with self.db.read_session() as session:
            rows = session.execute(
                sa.select(Quota.resource, Quota.limit).where(
                    Quota.project_id == project_id
                )
            )
            return {r: lim for r, lim in rows}

    def set_quotas(self, project_id: str, limits: Mapping[str, int]) -> None:
        """Store *limits* (``{resource: limit}``) of *project_id*."""
        with self.db.session() as session, session.begin():
            for resource, limit in limits.items():
                existing = session.get(Quota, (project_id, resource))
                if existing is None:
                    session.add(
                        Quota(
                            project_id=project_id,
                            resource=resource,
                            limit=limit,
                        )
                    )
                else:
                    existing.limit = limit
        LOG.info("quotas of project %s set to %s", project_id, dict(limits))

    def delete_quotas(self, project_id: str) -> None:
        """Forget every stored limit of *project_id*."""
        with self.db.session() as session, session.begin():
            session.execute(
                sa.delete(Quota).where(Quota.project_id == project_id)
            )
        LOG.info("quotas of project %s deleted", project_id)


def _history_key(name: str) -> sa.ColumnElement[Any]:
    if name == "severity":
        return sa.case(
            *(
                (AlarmHistory.severity == k, v)
                for k, v in SEVERITY_RANK.items()
            ),
            else_=0,
        )
    return getattr(AlarmHistory, name)
