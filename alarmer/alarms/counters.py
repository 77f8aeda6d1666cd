"""Evaluation results per alarm and state: what Aodh's ``/v2/metrics``
shows (``[DEFAULT] enable_evaluation_results_metrics``); and the index
that counts alarms per project and state cheaply
(:data:`ALARM_COUNT_INDEX`).

An evaluator counts in memory (:class:`EvaluationCounts`, bounded by
the alarms it owns) and adds its counts to the ``alarm_counter`` table
in one transaction per flush, every refresh interval: the database sees
one write per alarm and state per flush, never one per evaluation.  The
counters of a deleted alarm are no longer listed (the list joins the
alarm table); a flush that still counts for one deletes them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer.alarms import model
from alarmer.alarms.tables import Alarm, AlarmHistory
from alarmer.db import Base, Database

LOG = logging.getLogger(__name__)

_BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class AlarmCounter(Base):
    """How many evaluations of an alarm ended in each state."""

    __tablename__ = "alarm_counter"

    alarm_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), primary_key=True
    )
    state: orm.Mapped[str] = orm.mapped_column(sa.String(32), primary_key=True)
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    value: orm.Mapped[int] = orm.mapped_column(_BIGINT, default=0)

    __table_args__ = (sa.Index("ix_alarm_counter_project_id", "project_id"),)


#: Counting alarms per project and state (the dashboard's counts and
#: change token, the ``alarmer_alarms`` gauge) reads this index only,
#: never the wide alarm rows.  Declared here, beside the other tables
#: of the operator's view, with its migration in the ``telemetry``
#: branch.
ALARM_COUNT_INDEX = sa.Index(
    "ix_alarm_project_id_state",
    Alarm.project_id,
    Alarm.state,
    Alarm.enabled,
    Alarm.version,
)


def last_change(session: orm.Session, project_id: str | None) -> str:
    """When an alarm of *project_id* (of any project: None) last changed.

    Creation, definition change, state transition and deletion each
    write a history entry, so this moves on every change; it is read
    from an index (``on_behalf_of, timestamp`` or ``timestamp``).
    """
    stmt = sa.select(sa.func.max(AlarmHistory.timestamp))
    if project_id is not None:
        stmt = stmt.where(AlarmHistory.on_behalf_of == project_id)
    found = session.scalar(stmt)
    return "" if found is None else str(found)


class EvaluationCounts:
    """Counts of one evaluator not yet written (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, str], int] = {}

    def add(self, alarm_id: str, project_id: str, state: str) -> None:
        """Count one evaluation of *alarm_id* that ended in *state*."""
        key = (alarm_id, project_id, state)
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + 1

    def flush(self, db: Database) -> int:
        """Add the pending counts to the table; return the rows touched.

        On a database error the counts are kept for the next flush.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            add_counts(db, pending)
        except Exception:
            LOG.warning(
                "evaluation counters not written; kept for the next flush",
                exc_info=True,
            )
            with self._lock:
                for key, n in pending.items():
                    self._pending[key] = self._pending.get(key, 0) + n
            return 0
        return len(pending)


def add_counts(db: Database, counts: dict[tuple[str, str, str], int]) -> None:
    """Add ``{(alarm_id, project_id, state): n}`` to the table."""
    c = AlarmCounter
    with db.session() as session, session.begin():
        for (alarm_id, project_id, state), n in counts.items():
            done = session.execute(
                sa.update(c)
                .where(c.alarm_id == alarm_id, c.state == state)
                .values(value=c.value + n)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount:  # type: ignore[attr-defined]
                continue
            session.execute(
                sa.insert(c).values(
                    alarm_id=alarm_id,
                    state=state,
                    project_id=project_id,
                    value=n,
                )
            )
        # Counters of alarms deleted since: gone.
        session.execute(
            sa.delete(c)
            .where(
                c.alarm_id.in_([k[0] for k in counts]),
                ~sa.exists().where(Alarm.alarm_id == c.alarm_id),
            )
            .execution_options(synchronize_session=False)
        )


def results(db: Database, project_id: str | None) -> list[dict[str, Any]]:
    """Aodh's ``evaluation_results``: per alarm, the count per state.

    :param project_id: only this project's alarms (None: every one).
    """
    c = AlarmCounter
    stmt = (
        sa.select(c.alarm_id, Alarm.project_id, c.state, c.value)
        .join(Alarm, Alarm.alarm_id == c.alarm_id)
        .order_by(c.alarm_id)
    )
    if project_id is not None:
        stmt = stmt.where(Alarm.project_id == project_id)
    found: dict[str, dict[str, Any]] = {}
    with db.read_session() as session:
        for alarm_id, project, state, value in session.execute(stmt):
            entry = found.setdefault(
                alarm_id,
                {
                    "alarm_id": alarm_id,
                    "project_id": project,
                    "state_counters": dict.fromkeys(model.STATES, 0),
                },
            )
            entry["state_counters"][state] = int(value)
    return list(found.values())
