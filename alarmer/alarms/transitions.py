"""Committing an alarm's state transition: the one fenced write.

Every change of an alarm's evaluated state goes through
:func:`record_transition`; a re-notification of an unchanged state goes
through :func:`record_repeat`.  Both run inside the caller's transaction
(the caller commits) and write, together:

* the ``alarm`` row, with a conditional ``UPDATE ... WHERE alarm_id = :id
  AND version = :expected`` that also increments ``version`` (and ``seq``
  when a notification is produced);
* for a transition, the ``state transition`` history row, with Aodh's
  detail ``{"state": ..., "transition_reason": ...}``;
* when the new state has actions, the outbox row (:class:`Notification`)
  numbered by the alarm's new ``seq``.

When the conditional update matches no row (the alarm was edited,
deleted or transitioned by someone else since *expected_version* was
read) nothing is written and the functions return ``False``: a worker
with a stale view or a lost partition can never transition an alarm
twice for one crossing.

:func:`record_batch` commits many such changes (an evaluator's tick) in
one transaction, each still fenced by its own version, and falls back to
one transaction per change when the batch as a whole fails.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer.alarms import model
from alarmer.alarms.tables import Alarm, AlarmHistory, Notification
from alarmer.db import UTCDateTime
from alarmer.db import dialect as db_dialect

LOG = logging.getLogger(__name__)

STATE_OK = model.OK
STATE_ALARM = model.ALARM
STATE_INSUFFICIENT = model.INSUFFICIENT_DATA
STATES = model.STATES


@dataclasses.dataclass(frozen=True, slots=True)
class AlarmSnapshot:
    """What a transition needs to know about an alarm at one version.

    A caller that already holds these values (the evaluator keeps them in
    memory) passes them to skip one ``SELECT``; the fence guarantees they
    are those of the row being updated.
    """

    alarm_id: str
    version: int
    seq: int
    state: str
    name: str
    severity: str
    project_id: str
    ok_actions: tuple[str, ...] = ()
    alarm_actions: tuple[str, ...] = ()
    insufficient_data_actions: tuple[str, ...] = ()
    #: The silences covering the alarm now (their notifications are
    #: held; see :mod:`alarmer.alarms.silences`).
    silenced: tuple[str, ...] = ()
    #: The state of the alarm's last queued notification.
    notified_state: str | None = None

    def actions_for(self, state: str) -> list[str]:
        """Return the action URLs of *state*, each once, order kept."""
        if state == STATE_ALARM:
            urls = self.alarm_actions
        elif state == STATE_OK:
            urls = self.ok_actions
        else:
            urls = self.insufficient_data_actions
        return list(dict.fromkeys(urls))

    @classmethod
    def from_row(cls, row: Any) -> AlarmSnapshot:
        """Build a snapshot from an :class:`Alarm` (or a row with its
        columns)."""
        return cls(
            alarm_id=row.alarm_id,
            version=row.version,
            seq=row.seq,
            state=row.state,
            name=row.name,
            severity=row.severity,
            project_id=row.project_id,
            ok_actions=tuple(row.ok_actions or ()),
            alarm_actions=tuple(row.alarm_actions or ()),
            insufficient_data_actions=tuple(
                row.insufficient_data_actions or ()
            ),
            silenced=tuple(getattr(row, "silenced", ()) or ()),
            notified_state=getattr(row, "notified_state", None),
        )


_SNAPSHOT_COLUMNS = (
    Alarm.alarm_id,
    Alarm.version,
    Alarm.seq,
    Alarm.state,
    Alarm.name,
    Alarm.severity,
    Alarm.project_id,
    Alarm.ok_actions,
    Alarm.alarm_actions,
    Alarm.insufficient_data_actions,
    Alarm.notified_state,
)


def _rowcount(result: sa.Result[Any]) -> int:
    """Rows an UPDATE matched (its result is typed as the general one)."""
    return cast(sa.CursorResult[Any], result).rowcount


def load_snapshot(session: orm.Session, alarm_id: str) -> AlarmSnapshot | None:
    """Read the current snapshot of *alarm_id* (``None`` if deleted)."""
    row = session.execute(
        sa.select(*_SNAPSHOT_COLUMNS).where(Alarm.alarm_id == alarm_id)
    ).one_or_none()
    return None if row is None else AlarmSnapshot.from_row(row)


def _resolve(
    session: orm.Session,
    alarm_id: str,
    expected_version: int,
    snapshot: AlarmSnapshot | None,
) -> AlarmSnapshot | None:
    if snapshot is not None:
        if (
            snapshot.alarm_id != alarm_id
            or snapshot.version != expected_version
        ):
            raise ValueError(
                f"snapshot of alarm {snapshot.alarm_id} at version "
                f"{snapshot.version} does not match {alarm_id} at "
                f"version {expected_version}"
            )
        return snapshot
    current = load_snapshot(session, alarm_id)
    if current is None or current.version != expected_version:
        return None
    return current


def _outbox_row(
    snap: AlarmSnapshot,
    *,
    seq: int,
    previous: str,
    current: str,
    reason: str,
    reason_data: dict[str, Any],
    actions: list[str],
    now: dt.datetime,
) -> Notification:
    return Notification(
        alarm_id=snap.alarm_id,
        seq=seq,
        alarm_name=snap.name,
        severity=snap.severity,
        previous=previous,
        current=current,
        reason=reason,
        reason_data=reason_data,
        actions=actions,
        project_id=snap.project_id,
        created_at=now,
    )


def record_transition(  # noqa: PLR0917 (the documented contract)
    session: orm.Session,
    alarm_id: str,
    expected_version: int,
    state: str,
    reason: str,
    reason_data: dict[str, Any],
    *,
    now: dt.datetime,
    notify: bool = True,
    history_user_id: str | None = None,
    history_project_id: str | None = None,
    history_detail: dict[str, Any] | None = None,
    snapshot: AlarmSnapshot | None = None,
) -> bool:
    """Move *alarm_id* to *state* if it is still at *expected_version*.

    Runs in the caller's transaction; the caller commits.  On success the
    alarm's ``state``, ``state_reason`` and ``state_timestamp`` (= *now*)
    change, ``version`` grows by one, a ``state transition`` history row
    is added and, when *notify* and the new state has actions, ``seq``
    grows by one and an outbox row numbered by it is added.

    :param history_user_id: user recorded in the history row (the
        evaluator's service user; ``None`` for the evaluator).
    :param history_project_id: project recorded in the history row.
    :param history_detail: history detail to store instead of Aodh's
        evaluator detail ``{"state", "transition_reason"}`` (the API uses
        ``{"state", "state_reason"}`` for a manual change).
    :param snapshot: the alarm as the caller read it at
        *expected_version*, to skip reading it again.
    :returns: ``True`` when committed-to-be, ``False`` when the alarm is
        gone or at another version (nothing was written).
    """
    if state not in STATES:
        raise ValueError(f"unknown alarm state {state!r}")
    snap = _resolve(session, alarm_id, expected_version, snapshot)
    if snap is None:
        LOG.debug(
            "alarm %s: no longer at version %d, transition to %s dropped",
            alarm_id,
            expected_version,
            state,
        )
        return False
    actions = snap.actions_for(state) if notify else []
    held = bool(actions and snap.silenced)
    if held:
        actions = []
    bump = 1 if actions else 0
    values: dict[str, Any] = {
        "state": state,
        "state_reason": reason,
        "state_timestamp": now,
        "version": Alarm.version + 1,
        "seq": Alarm.seq + bump,
        "notified_at": now if actions else None,
        "pending_since": None,
        "clearing_since": None,
    }
    if actions:
        values.update(notified_state=state, held=False)
    elif held:
        values["held"] = True
    result = session.execute(
        sa.update(Alarm)
        .where(Alarm.alarm_id == alarm_id, Alarm.version == expected_version)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        LOG.debug(
            "alarm %s: version %d was superseded, transition to %s dropped",
            alarm_id,
            expected_version,
            state,
        )
        return False
    detail = history_detail or {"state": state, "transition_reason": reason}
    if snap.silenced:
        detail = {**detail, "silenced": list(snap.silenced)}
    session.add(
        AlarmHistory(
            event_id=str(uuid.uuid4()),
            alarm_id=alarm_id,
            type="state transition",
            detail=json.dumps(detail),
            user_id=history_user_id,
            project_id=history_project_id,
            on_behalf_of=snap.project_id,
            severity=snap.severity,
            timestamp=now,
        )
    )
    if actions:
        session.add(
            _outbox_row(
                snap,
                seq=snap.seq + 1,
                previous=snap.state,
                current=state,
                reason=reason,
                reason_data=reason_data,
                actions=actions,
                now=now,
            )
        )
    session.flush()
    LOG.info("alarm %s: %s -> %s (%s)", alarm_id, snap.state, state, reason)
    return True


def record_repeat(
    session: orm.Session,
    alarm_id: str,
    expected_version: int,
    reason: str,
    reason_data: dict[str, Any],
    *,
    now: dt.datetime,
    snapshot: AlarmSnapshot | None = None,
) -> bool:
    """Re-notify the unchanged state of *alarm_id* (``repeat_actions``).

    Fenced like :func:`record_transition`: ``version`` and ``seq`` grow by
    one and an outbox row with ``previous == current`` is added; the
    state, its reason and the history are untouched (as in Aodh).  When
    the current state has no action nothing is written and ``True`` is
    returned.

    :returns: ``False`` when the alarm is gone or at another version.
    """
    snap = _resolve(session, alarm_id, expected_version, snapshot)
    if snap is None:
        return False
    actions = snap.actions_for(snap.state)
    if not actions:
        return True
    result = session.execute(
        sa.update(Alarm)
        .where(Alarm.alarm_id == alarm_id, Alarm.version == expected_version)
        .values(
            version=Alarm.version + 1,
            seq=Alarm.seq + 1,
            notified_at=now,
            notified_state=snap.state,
        )
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return False
    session.add(
        _outbox_row(
            snap,
            seq=snap.seq + 1,
            previous=snap.state,
            current=snap.state,
            reason=reason,
            reason_data=reason_data,
            actions=actions,
            now=now,
        )
    )
    session.flush()
    LOG.debug("alarm %s: re-notified %s", alarm_id, snap.state)
    return True


def record_memory(
    session: orm.Session,
    alarm_id: str,
    expected_version: int,
    *,
    pending_since: dt.datetime | None,
    clearing_since: dt.datetime | None,
) -> bool:
    """Store what the evaluator remembers between two evaluations.

    ``pending_since`` and ``clearing_since`` (see
    :mod:`alarmer.evaluator.lifecycle`) are written only while the alarm
    is at *expected_version*; ``version`` does not change (this is no
    change of the alarm, and a transition resets both).  Runs in the
    caller's transaction.

    :returns: ``False`` when the alarm is gone or at another version.
    """
    result = session.execute(
        sa.update(Alarm)
        .where(Alarm.alarm_id == alarm_id, Alarm.version == expected_version)
        .values(pending_since=pending_since, clearing_since=clearing_since)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def record_release(
    session: orm.Session,
    alarm_id: str,
    expected_version: int,
    *,
    now: dt.datetime,
    snapshot: AlarmSnapshot | None = None,
) -> bool | None:
    """Settle what a silence held back, once no silence covers the alarm.

    When the alarm's current state differs from the last one notified
    and has actions, one notification of it is queued (``previous`` is
    the state last notified).  Either way the alarm no longer owes one.
    Fenced like :func:`record_transition`: ``version`` grows by one (and
    ``seq`` when a notification is queued).

    :returns: ``True`` when a notification was queued, ``False`` when
        none was owed, ``None`` when the alarm is gone or at another
        version (nothing written).
    """
    snap = _resolve(session, alarm_id, expected_version, snapshot)
    if snap is None:
        return None
    previous = snap.notified_state
    actions = snap.actions_for(snap.state) if previous != snap.state else []
    values: dict[str, Any] = {"version": Alarm.version + 1, "held": False}
    if actions:
        values.update(
            seq=Alarm.seq + 1, notified_at=now, notified_state=snap.state
        )
    result = session.execute(
        sa.update(Alarm)
        .where(Alarm.alarm_id == alarm_id, Alarm.version == expected_version)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result) != 1:
        return None
    if actions:
        reason = (
            f"Silence ended: notifying the current state {snap.state} "
            f"(last notified: {previous or 'none'})"
        )
        session.add(
            _outbox_row(
                snap,
                seq=snap.seq + 1,
                previous=previous or snap.state,
                current=snap.state,
                reason=reason,
                reason_data={"type": "silence", "previous": previous},
                actions=actions,
                now=now,
            )
        )
    session.flush()
    LOG.info(
        "alarm %s: silence ended, %s",
        alarm_id,
        f"{snap.state} notified" if actions else "nothing owed",
    )
    return bool(actions)


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One fenced write of a batch (see :func:`record_batch`).

    :ivar snapshot: the alarm as the writer holds it; its ``version`` is
        the fence.
    :ivar state: the new state, or ``None`` to re-notify the unchanged
        one (``repeat_actions``).
    :ivar reason: the state reason (and the notification's).
    :ivar reason_data: the notification's ``reason_data``.
    :ivar now: the transition's timestamp.
    :ivar history_detail: history detail instead of the evaluator's.
    """

    snapshot: AlarmSnapshot
    state: str | None
    reason: str
    reason_data: dict[str, Any]
    now: dt.datetime
    history_detail: dict[str, Any] | None = None

    def after(self) -> AlarmSnapshot:
        """The snapshot once this change is committed."""
        snap = self.snapshot
        state = snap.state if self.state is None else self.state
        notified = bool(_notified_actions(snap, state, self.state is None))
        return dataclasses.replace(
            snap,
            version=snap.version + 1,
            seq=snap.seq + (1 if notified else 0),
            state=state,
            notified_state=state if notified else snap.notified_state,
        )


def _notified_actions(
    snap: AlarmSnapshot, state: str, repeat: bool
) -> list[str]:
    """The actions a change to *state* notifies now (none while silenced).

    A repeat is not held by a silence here: the evaluator does not decide
    repeats for a silenced alarm.
    """
    actions = snap.actions_for(state)
    if snap.silenced and not repeat:
        return []
    return actions


#: The values of one fenced transition (see :func:`_transition_update`).
_TRANSITION_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "b_alarm_id": sa.String(),
    "b_version": sa.Integer(),
    "b_state": sa.String(),
    "b_reason": sa.Text(),
    "b_now": UTCDateTime(),
    "b_bump": sa.Integer(),
    "b_notified_at": UTCDateTime(),
    "b_notified_state": sa.String(),
    "b_held": sa.Boolean(),
}
#: The values of one fenced repeat (see :func:`_repeat_update`).
_REPEAT_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    name: _TRANSITION_TYPES[name]
    for name in ("b_alarm_id", "b_version", "b_state", "b_now")
}


def _fenced(table: sa.Table, v: Mapping[str, Any]) -> sa.Update:
    return sa.update(table).where(
        table.c.alarm_id == v["b_alarm_id"],
        table.c.version == v["b_version"],
    )


def _transition_update(v: Mapping[str, Any]) -> sa.Update:
    """The fenced ``UPDATE`` of a transition, from the values *v*.

    *v* maps each name of :data:`_TRANSITION_TYPES` to a column
    expression: bound parameters, or the columns of a set of rows
    (:meth:`alarmer.db.dialect.Dialect.update_rows`).
    """
    table = cast(sa.Table, Alarm.__table__)
    return _fenced(table, v).values(
        state=v["b_state"],
        state_reason=v["b_reason"],
        state_timestamp=v["b_now"],
        version=table.c.version + 1,
        seq=table.c.seq + v["b_bump"],
        notified_at=v["b_notified_at"],
        pending_since=None,
        clearing_since=None,
        notified_state=sa.func.coalesce(
            v["b_notified_state"], table.c.notified_state
        ),
        held=sa.func.coalesce(v["b_held"], table.c.held),
    )


def _repeat_update(v: Mapping[str, Any]) -> sa.Update:
    """The fenced ``UPDATE`` of a repeat (see :func:`_transition_update`)."""
    table = cast(sa.Table, Alarm.__table__)
    return _fenced(table, v).values(
        version=table.c.version + 1,
        seq=table.c.seq + 1,
        notified_at=v["b_now"],
        notified_state=v["b_state"],
    )


def _bound(types: Mapping[str, sa.types.TypeEngine[Any]]) -> dict[str, Any]:
    return {name: sa.bindparam(name, type_=t) for name, t in types.items()}


class _FenceMissed(Exception):
    """A multi-row fenced UPDATE matched fewer rows than it had."""


def _apply_batch(
    session: orm.Session, changes: list[Change], *, many: bool
) -> list[bool]:
    """Write *changes* in the caller's transaction; the caller commits.

    The alarm rows are updated with fenced statements in the order of
    *changes*, in runs of the same kind where each alarm appears once
    (a multi-row statement sees the rows as they were before it).  With
    *many*, one multi-row statement per run
    (:meth:`alarmer.db.dialect.Dialect.update_rows`), whose total of
    matched rows must be the run's length (else :class:`_FenceMissed` is
    raised: the caller rolls back and runs the batch again without
    *many*); without, one statement per row, which tells each fence
    apart.  The history and outbox rows of the changes that passed their
    fence are then inserted with few statements per table
    (:meth:`alarmer.db.dialect.Dialect.insert_rows`).
    """
    conn = session.connection()
    sql = db_dialect.for_name(conn.dialect.name)
    done: list[bool | None] = []
    runs: list[tuple[bool, list[int], list[dict[str, Any]], set[str]]] = []
    for position, change in enumerate(changes):
        snap = change.snapshot
        repeat = change.state is None
        state = snap.state if change.state is None else change.state
        if state not in STATES:
            raise ValueError(f"unknown alarm state {state!r}")
        actions = _notified_actions(snap, state, repeat)
        if repeat and not actions:
            done.append(True)
            continue
        done.append(None)
        params: dict[str, Any] = {
            "b_alarm_id": snap.alarm_id,
            "b_version": snap.version,
        }
        if repeat:
            params.update(b_state=state, b_now=change.now)
        else:
            held = bool(snap.silenced and snap.actions_for(state))
            params.update(
                b_state=state,
                b_reason=change.reason,
                b_now=change.now,
                b_bump=1 if actions else 0,
                b_notified_at=change.now if actions else None,
                b_notified_state=state if actions else None,
                b_held=False if actions else (True if held else None),
            )
        if not runs or runs[-1][0] != repeat or snap.alarm_id in runs[-1][3]:
            runs.append((repeat, [], [], set()))
        runs[-1][1].append(position)
        runs[-1][2].append(params)
        runs[-1][3].add(snap.alarm_id)
    for repeat, positions, rows, _ in runs:
        build = _repeat_update if repeat else _transition_update
        types = _REPEAT_TYPES if repeat else _TRANSITION_TYPES
        if many and len(rows) > 1:
            key = "alarm.repeat" if repeat else "alarm.transition"
            if sql.update_rows(conn, key, build, types, rows) != len(rows):
                raise _FenceMissed
            for position in positions:
                done[position] = True
            continue
        stmt = build(_bound(types))
        for position, params in zip(positions, rows, strict=True):
            done[position] = _rowcount(conn.execute(stmt, params)) == 1
    history: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    for change, ok in zip(changes, done, strict=True):
        snap = change.snapshot
        repeat = change.state is None
        if not ok or (repeat and not snap.actions_for(snap.state)):
            continue
        state = snap.state if change.state is None else change.state
        actions = _notified_actions(snap, state, repeat)
        if change.state is not None:
            detail = change.history_detail or {
                "state": state,
                "transition_reason": change.reason,
            }
            if snap.silenced:
                detail = {**detail, "silenced": list(snap.silenced)}
            history.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "alarm_id": snap.alarm_id,
                    "type": "state transition",
                    "detail": json.dumps(detail),
                    "user_id": None,
                    "project_id": None,
                    "on_behalf_of": snap.project_id,
                    "severity": snap.severity,
                    "timestamp": change.now,
                }
            )
        if actions:
            outbox.append(
                {
                    "alarm_id": snap.alarm_id,
                    "seq": snap.seq + 1,
                    "alarm_name": snap.name,
                    "severity": snap.severity,
                    "previous": snap.state,
                    "current": state,
                    "reason": change.reason,
                    "reason_data": change.reason_data,
                    "actions": actions,
                    "project_id": snap.project_id,
                    "created_at": change.now,
                }
            )
    # Few statements per table (one executemany, or one multi-row
    # statement), without the ORM's or the Core's per-row bookkeeping.
    sql.insert_rows(conn, cast(sa.Table, AlarmHistory.__table__), history)
    sql.insert_rows(conn, cast(sa.Table, Notification.__table__), outbox)
    return [bool(ok) for ok in done]


def _record_one(session: orm.Session, change: Change) -> bool:
    snap = change.snapshot
    if change.state is None:
        return record_repeat(
            session,
            snap.alarm_id,
            snap.version,
            change.reason,
            change.reason_data,
            now=change.now,
            snapshot=snap,
        )
    return record_transition(
        session,
        snap.alarm_id,
        snap.version,
        change.state,
        change.reason,
        change.reason_data,
        now=change.now,
        history_detail=change.history_detail,
        snapshot=snap,
    )


def record_batch(
    open_session: Callable[[], orm.Session], changes: Sequence[Change]
) -> list[bool | None]:
    """Commit many fenced changes together, in one transaction.

    Each change is fenced by its snapshot's version exactly as
    :func:`record_transition` / :func:`record_repeat` fence it: one whose
    alarm moved on writes nothing and reports ``False``.  Several changes
    of one alarm must follow each other with successive versions (see
    :meth:`Change.after`).  When the batch fails as a whole (a row the
    database refuses, a lost connection), it is rolled back and each
    change is committed on its own, so that one bad row cannot hold
    back the others (a batch of one is that single commit, not retried).

    :param open_session: opens a new session (a transaction).
    :returns: per change, ``True`` (committed), ``False`` (fenced out)
        or ``None`` (its own commit failed; logged).
    """
    items = list(changes)
    if len(items) <= 1:
        return _one_by_one(open_session, items)
    try:
        done = _batch_transaction(open_session, items)
    except Exception as exc:
        LOG.warning(
            "a batch of %d alarm changes failed (%s); committing them one "
            "by one",
            len(items),
            exc,
        )
    else:
        for change, ok in zip(items, done, strict=True):
            if ok and change.state is not None:
                LOG.info(
                    "alarm %s: %s -> %s (%s)",
                    change.snapshot.alarm_id,
                    change.snapshot.state,
                    change.state,
                    change.reason,
                )
        return list(done)
    return _one_by_one(open_session, items)


def _batch_transaction(
    open_session: Callable[[], orm.Session], items: list[Change]
) -> list[bool]:
    """One transaction for *items*: multi-row fenced updates when the
    database counts their rows, else (or when a fence missed) one
    fenced update per row."""
    with open_session() as session:
        many = bool(session.get_bind().dialect.supports_sane_multi_rowcount)
        if many:
            try:
                done = _apply_batch(session, items, many=True)
            except _FenceMissed:
                session.rollback()
            else:
                session.commit()
                return done
        done = _apply_batch(session, items, many=False)
        session.commit()
        return done


def _one_by_one(
    open_session: Callable[[], orm.Session], items: list[Change]
) -> list[bool | None]:
    """Commit each change in its own transaction (see record_batch)."""
    results: list[bool | None] = []
    for change in items:
        try:
            with open_session() as session:
                ok = _record_one(session, change)
                session.commit()
        except Exception:
            LOG.exception(
                "alarm %s: committing %s failed",
                change.snapshot.alarm_id,
                change.state or "a repeat",
            )
            results.append(None)
            continue
        results.append(ok)
    return results
