"""Silences: hold the notifications of matching alarms for a while.

A silence has *matchers* (``{field, op, value}``, all of which must
match), and either a fixed window (``starts_at``, ``ends_at``) or a
recurring one (``recurrence``: a cron ``start``, a ``duration`` in
seconds and an IANA ``timezone``, checked by the very code of time
constraints, :mod:`alarmer.alarms.time_constraints`), optionally bounded
by ``starts_at`` / ``ends_at``.  A member's silence covers the alarms of
its project; an administrator's covers one given project or all of them.

While an alarm is silenced its state and history keep being recorded
(the history entry names the silences), but no notification is queued;
when no silence covers it any more, its current state is notified once
if it differs from the last one notified.  Ended silences stay readable
until ``[database] expired_silence_time_to_live`` removes them.

Matcher fields: ``alarm_id``, ``name``, ``type``, ``severity``,
``project_id``, ``resource_id`` (a resource a rule reads) and ``metric``
(a metric name or id a rule reads).  Operators: ``=``, ``!=``, ``=~``
and ``!~`` (a Python regular expression matching the whole value).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from alarmer import timeutils
from alarmer.alarms import model, time_constraints
from alarmer.alarms.errors import RuleError, invalid
from alarmer.alarms.tables import Silence
from alarmer.db import Database

LOG = logging.getLogger(__name__)

FIELDS = (
    "alarm_id",
    "name",
    "type",
    "severity",
    "project_id",
    "resource_id",
    "metric",
)
OPERATORS = ("=", "!=", "=~", "!~")
MAX_MATCHERS = 32
MAX_VALUE = 1024
MAX_COMMENT = 4096

#: Statuses of a silence at a given time.
ACTIVE = "active"
PENDING = "pending"
EXPIRED = "expired"


@dataclasses.dataclass(frozen=True, slots=True)
class Matcher:
    """One condition on an alarm."""

    field: str
    op: str
    value: str

    def test(self, values: Sequence[str]) -> bool:
        """True when the alarm's *values* of the field satisfy this."""
        if self.op in ("=", "!="):
            hit = self.value in values
        else:
            pattern = re.compile(self.value)
            hit = any(pattern.fullmatch(v) for v in values)
        return hit if self.op in ("=", "=~") else not hit


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """When a silence holds: a fixed window, or a recurring one."""

    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    recurrence: Mapping[str, Any] | None = None

    def status(self, now: dt.datetime) -> str:
        """``active``, ``pending`` (not yet) or ``expired`` at *now*."""
        if self.ends_at is not None and now >= self.ends_at:
            return EXPIRED
        if self.starts_at is not None and now < self.starts_at:
            return PENDING
        if self.recurrence is None:
            return ACTIVE
        inside, _ = time_constraints.status([self.recurrence], now)
        return ACTIVE if inside else PENDING

    def in_force(self, now: dt.datetime) -> tuple[bool, dt.datetime | None]:
        """Whether the window holds at *now*, and until when that answer
        stands (``None``: for ever).

        :raises ValueError: for a recurrence croniter cannot iterate.
        """
        if self.ends_at is not None and now >= self.ends_at:
            return False, None
        if self.starts_at is not None and now < self.starts_at:
            return False, self.starts_at
        until = self.ends_at
        if self.recurrence is None:
            return True, until
        inside, valid = time_constraints.status([self.recurrence], now)
        if valid is not None and (until is None or valid < until):
            until = valid
        return inside, until


@dataclasses.dataclass(frozen=True, slots=True)
class SilenceDef:
    """A silence as the evaluator holds it."""

    silence_id: str
    project_id: str | None
    matchers: tuple[Matcher, ...]
    window: Window

    def covers(self, facts: Mapping[str, Sequence[str]]) -> bool:
        """True when the alarm of *facts* is in scope and matches all."""
        projects = facts.get("project_id", ())
        if self.project_id is not None and self.project_id not in projects:
            return False
        return all(m.test(facts.get(m.field, ())) for m in self.matchers)

    @classmethod
    def of(cls, row: Any) -> SilenceDef:
        """From a :class:`Silence` row."""
        return cls(
            silence_id=row.silence_id,
            project_id=row.project_id,
            matchers=tuple(Matcher(**m) for m in row.matchers or ()),
            window=Window(row.starts_at, row.ends_at, row.recurrence),
        )


def facts(alarm: Any) -> dict[str, list[str]]:
    """The values of each matcher field for *alarm*.

    *alarm* has the attributes of an alarm row (``alarm_id``, ``name``,
    ``type``, ``severity``, ``project_id``, ``rule``).
    """
    rule = alarm.rule or {}
    resources: list[str] = []
    metrics: list[str] = []
    for leaf in model.leaves(rule):
        if isinstance(leaf.get("resource_id"), str):
            resources.append(leaf["resource_id"])
        if isinstance(leaf.get("metric"), str):
            metrics.append(leaf["metric"])
        metrics.extend(
            m for m in leaf.get("metrics") or () if isinstance(m, str)
        )
    return {
        "alarm_id": [alarm.alarm_id],
        "name": [alarm.name],
        "type": [alarm.type],
        "severity": [alarm.severity],
        "project_id": [alarm.project_id],
        "resource_id": resources,
        "metric": metrics,
    }


# -- validation -------------------------------------------------------------


def _when(body: Mapping[str, Any], key: str) -> dt.datetime | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(key, value, "Value should be an ISO 8601 date and time")
    try:
        return timeutils.parse_datetime(value)
    except (ValueError, TypeError) as exc:
        raise invalid(
            key, value, "Value should be an ISO 8601 date and time"
        ) from exc


def _matchers(raw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise invalid(
            "matchers", raw, "Value should be a non-empty list of matchers"
        )
    if len(raw) > MAX_MATCHERS:
        raise invalid(
            "matchers",
            f"<{len(raw)} matchers>",
            f"A silence has at most {MAX_MATCHERS} matchers",
        )
    result = []
    for index, item in enumerate(raw):
        where = f"matchers[{index}]"
        if not isinstance(item, dict) or set(item) - {"field", "op", "value"}:
            raise invalid(
                where, item, "A matcher is an object {field, op, value}"
            )
        field, op = item.get("field"), item.get("op", "=")
        value = item.get("value")
        if field not in FIELDS:
            raise invalid(
                f"{where}.field",
                field,
                "Value should be one of: " + ", ".join(FIELDS),
            )
        if op not in OPERATORS:
            raise invalid(
                f"{where}.op", op, "Value should be one of: =, !=, =~, !~"
            )
        if not isinstance(value, str) or len(value) > MAX_VALUE:
            raise invalid(
                f"{where}.value",
                value,
                f"Value should be a string of at most {MAX_VALUE} characters",
            )
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise invalid(
                    f"{where}.value",
                    value,
                    f"Not a valid regular expression: {exc}",
                ) from exc
        result.append({"field": field, "op": op, "value": value})
    return result


def _recurrence(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {
        "start",
        "duration",
        "timezone",
    }:
        raise invalid(
            "recurrence",
            raw,
            "A recurrence is an object {start, duration, timezone}",
        )
    start, duration = raw.get("start"), raw.get("duration")
    if not isinstance(start, str) or not start:
        raise invalid("recurrence.start", start, "A cron expression is needed")
    if (
        isinstance(duration, bool)
        or not isinstance(duration, int)
        or not 0 < duration <= 365 * 86400
    ):
        raise invalid(
            "recurrence.duration",
            duration,
            "Value should be an integer of seconds, 1 to one year",
        )
    timezone = raw.get("timezone") or ""
    if not isinstance(timezone, str):
        raise invalid("recurrence.timezone", timezone, "Not a time zone")
    # The very checks of time constraints, reported under this field.
    time_constraints.check_cron(start, "recurrence.start")
    try:
        time_constraints.zone(timezone)
    except RuleError as exc:
        raise invalid(
            "recurrence.timezone", timezone, "Not an IANA time zone"
        ) from exc
    (normal,) = time_constraints.normalize(
        [
            {
                "name": "recurrence",
                "start": start,
                "duration": duration,
                "timezone": timezone,
            }
        ]
    )
    return normal


def validate(
    body: Any,
    *,
    project_id: str | None,
    is_admin: bool,
    now: dt.datetime,
) -> dict[str, Any]:
    """Validate a POST body; return the silence's values.

    :param project_id: the caller's project (the silence's scope, unless
        an administrator names another one or none: every project).
    :raises RuleError: naming the bad field.
    """
    if not isinstance(body, dict):
        raise invalid("", body, "The body should be a JSON object")
    allowed = {
        "matchers",
        "starts_at",
        "ends_at",
        "recurrence",
        "comment",
        "project_id",
    }
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid(unknown[0], body[unknown[0]], "Unknown attribute")
    matchers = _matchers(body.get("matchers"))
    starts_at = _when(body, "starts_at") or now
    ends_at = _when(body, "ends_at")
    recurrence = _recurrence(body.get("recurrence"))
    if recurrence is None and ends_at is None:
        raise invalid(
            "ends_at", None, "A silence needs an end, or a recurrence"
        )
    if ends_at is not None and ends_at <= starts_at:
        raise invalid(
            "ends_at", body.get("ends_at"), "Value should be after starts_at"
        )
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise invalid(
            "comment",
            "...",
            f"Value should be a string of at most {MAX_COMMENT} characters",
        )
    scope = project_id
    if "project_id" in body:
        wanted = body["project_id"]
        if wanted is not None and not isinstance(wanted, str):
            raise invalid("project_id", wanted, "Value should be a string")
        if wanted != project_id and not is_admin:
            raise RuleError(
                "Only an administrator may silence another project's alarms",
                "project_id",
                403,
            )
        scope = wanted
    return {
        "matchers": matchers,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "recurrence": recurrence,
        "comment": comment,
        "project_id": scope,
    }


# -- storage ----------------------------------------------------------------


def document(row: Any, now: dt.datetime) -> dict[str, Any]:
    """The JSON document of a silence row."""
    return {
        "silence_id": row.silence_id,
        "project_id": row.project_id,
        "created_by": row.created_by,
        "comment": row.comment,
        "matchers": list(row.matchers),
        "starts_at": timeutils.isoformat(row.starts_at),
        "ends_at": timeutils.isoformat(row.ends_at),
        "recurrence": row.recurrence,
        "status": SilenceDef.of(row).window.status(now),
        "created_at": timeutils.isoformat(row.created_at),
        "updated_at": timeutils.isoformat(row.updated_at),
    }


def create(
    db: Database, values: Mapping[str, Any], created_by: str | None
) -> Silence:
    """Store a validated silence; return its row."""
    when = timeutils.utcnow()
    row = Silence(
        silence_id=str(uuid.uuid4()),
        created_by=created_by,
        created_at=when,
        updated_at=when,
        **values,
    )
    with db.session() as session, session.begin():
        session.add(row)
    LOG.info(
        "silence %s created in project %s", row.silence_id, row.project_id
    )
    return row


def _scoped(query: Any, project_id: str | None) -> Any:
    if project_id is None:
        return query
    return query.where(Silence.project_id == project_id)


def get(db: Database, silence_id: str, project_id: str | None) -> Silence:
    """One silence (*project_id*: the caller's scope, None for all).

    :raises LookupError: none visible with this id.
    """
    with db.read_session() as session:
        row = session.execute(
            _scoped(
                sa.select(Silence).where(Silence.silence_id == silence_id),
                project_id,
            )
        ).scalar_one_or_none()
    if row is None:
        raise LookupError(f"Silence {silence_id} not found")
    return row


def list_silences(
    db: Database, project_id: str | None, limit: int = 1000
) -> list[Silence]:
    """The silences in scope, newest first."""
    with db.read_session() as session:
        return list(
            session.execute(
                _scoped(
                    sa.select(Silence).order_by(
                        Silence.created_at.desc(), Silence.silence_id
                    ),
                    project_id,
                ).limit(limit)
            ).scalars()
        )


def expire(db: Database, silence_id: str, project_id: str | None) -> Silence:
    """End a silence now (it is kept for the audit trail).

    :raises LookupError: none visible with this id.
    """
    get(db, silence_id, project_id)
    when = timeutils.utcnow()
    with db.session() as session, session.begin():
        session.execute(
            sa.update(Silence)
            .where(
                Silence.silence_id == silence_id,
                sa.or_(Silence.ends_at.is_(None), Silence.ends_at > when),
            )
            .values(ends_at=when, updated_at=when)
        )
    LOG.info("silence %s expired", silence_id)
    return get(db, silence_id, project_id)


class SilenceCache:
    """The silences that have not ended, reread every *ttl* seconds.

    Thread-safe; one query per *ttl* whatever the number of alarms.
    """

    def __init__(self, db: Database, ttl: float = 1.0) -> None:
        self.db = db
        self.ttl = ttl
        self._lock = threading.Lock()
        self._silences: list[SilenceDef] = []
        self._read_at = -float("inf")
        # The silences in force, for the list read last, from *since*
        # until *until* (windows are checked once per change, not once
        # per evaluation).
        self._active: list[SilenceDef] = []
        self._active_of: list[SilenceDef] | None = None
        self._active_span: tuple[dt.datetime, dt.datetime | None] = (
            dt.datetime.max.replace(tzinfo=dt.UTC),
            None,
        )

    def current(self) -> list[SilenceDef]:
        """The silences not ended at the last read."""
        with self._lock:
            if time.monotonic() - self._read_at < self.ttl:
                return self._silences
            now = timeutils.utcnow()
            try:
                with self.db.read_session() as session:
                    rows = session.execute(
                        sa.select(Silence).where(
                            sa.or_(
                                Silence.ends_at.is_(None),
                                Silence.ends_at > now,
                            )
                        )
                    ).scalars()
                    read = [SilenceDef.of(r) for r in rows]
                # The same list while nothing changed: what was derived
                # from it (windows in force, alarms covered) still holds.
                if read != self._silences:
                    self._silences = read
            except Exception:
                LOG.exception("silences: reading them failed; kept")
            self._read_at = time.monotonic()
            return self._silences

    def matching(
        self, alarm_facts: Mapping[str, Sequence[str]], now: dt.datetime
    ) -> tuple[str, ...]:
        """Ids of the silences covering an alarm at *now*."""
        return self.covering(self.active(now), alarm_facts)

    @staticmethod
    def covering(
        active: Sequence[SilenceDef], alarm_facts: Mapping[str, Sequence[str]]
    ) -> tuple[str, ...]:
        """Ids of the silences of *active* covering an alarm."""
        found = []
        for silence in active:
            try:
                if silence.covers(alarm_facts):
                    found.append(silence.silence_id)
            except re.error:
                LOG.warning("silence %s: invalid, ignored", silence.silence_id)
        return tuple(found)

    def active(self, now: dt.datetime) -> list[SilenceDef]:
        """The silences whose window holds at *now*."""
        silences = self.current()
        with self._lock:
            since, until = self._active_span
            if (
                silences is self._active_of
                and since <= now
                and (until is None or now < until)
            ):
                return self._active
            active: list[SilenceDef] = []
            until = None
            for silence in silences:
                try:
                    inside, valid = silence.window.in_force(now)
                except ValueError:
                    LOG.warning(
                        "silence %s: invalid, ignored", silence.silence_id
                    )
                    continue
                if inside:
                    active.append(silence)
                if valid is not None and (until is None or valid < until):
                    until = valid
            self._active, self._active_of = active, silences
            self._active_span = (now, until)
            return active
