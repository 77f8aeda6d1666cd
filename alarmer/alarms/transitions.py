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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer.alarms import model
from alarmer.alarms.tables import Alarm, AlarmHistory, Notification

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
