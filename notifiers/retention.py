"""Retention: removing old history, deliveries and notifications.

What is removed, and when (each age in seconds; 0 or less keeps for
ever):

* alarm history entries older than ``[database]
  alarm_history_time_to_live`` (Aodh's option and meaning; the history
  of deleted alarms too);
* delivered deliveries older than ``[notifier] delivered_time_to_live``
  (from their last update), with their attempts;
* dead letters (deliveries that gave up) older than ``[notifier]
  dead_letter_time_to_live``, or all of them when purged explicitly;
* outbox rows (notifications) older than the delivered retention once
  none of their deliveries is left;
* silences ended longer ago than ``[database]
  expired_silence_time_to_live`` (kept until then for the audit trail).

Every pass deletes in batches of ``[notifier] expire_batch_size`` rows,
one short transaction per batch (one ``DELETE`` limited to the batch
for history and silences, see :func:`_delete_where`; select the keys,
then delete them by key for deliveries with their attempts), so that no
lock is held for long and the evaluator and the notifier keep going
while it runs.  ``alarmer expire`` runs one pass; the notifier service
runs one every ``[notifier] expire_interval`` seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, cast

import sqlalchemy as sa

from alarmer import timeutils
from alarmer.alarms.tables import AlarmHistory, Notification, Silence
from alarmer.db import Database
from notifiers import tables as models

LOG = logging.getLogger(__name__)

HISTORY = cast(sa.Table, AlarmHistory.__table__)
NOTIFICATION = cast(sa.Table, Notification.__table__)
DELIVERY = cast(sa.Table, models.Delivery.__table__)
ATTEMPT = cast(sa.Table, models.DeliveryAttempt.__table__)
EXPANSION = cast(sa.Table, models.NotificationExpansion.__table__)
SILENCE = cast(sa.Table, Silence.__table__)


@dataclasses.dataclass
class Removed:
    """How many rows one pass removed, per kind."""

    history: int = 0
    delivered: int = 0
    dead_letters: int = 0
    attempts: int = 0
    notifications: int = 0
    silences: int = 0

    def counts(self) -> dict[str, int]:
        """The counts by kind (the field names), in a fixed order."""
        return dataclasses.asdict(self)

    def total(self) -> int:
        """Every row removed."""
        return sum(dataclasses.astuple(self))

    def add(self, other: Removed) -> None:
        """Add *other*'s counts to these."""
        for field in dataclasses.fields(self):
            name = field.name
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclasses.dataclass(frozen=True)
class Ages:
    """The retention of each kind, in seconds (``None``: kept)."""

    history: float | None = None
    delivered: float | None = None
    dead_letters: float | None = None
    silences: float | None = None
    #: ``[notifier] max_age``: an outbox row younger than this may not be
    #: expanded into deliveries yet, and is never removed.
    unexpanded: float = 86400.0

    @classmethod
    def from_conf(cls, conf: Any) -> Ages:
        """Read ``[database]`` and ``[notifier]`` of *conf*."""

        def age(value: Any) -> float | None:
            return float(value) if value is not None and value > 0 else None

        return cls(
            history=age(conf.database.alarm_history_time_to_live),
            delivered=age(conf.notifier.delivered_time_to_live),
            dead_letters=age(conf.notifier.dead_letter_time_to_live),
            silences=age(conf.database.expired_silence_time_to_live),
            unexpanded=float(conf.notifier.max_age),
        )


def _batches(
    db: Database,
    select_keys: sa.Select[Any],
    delete: Callable[[Any, list[Any]], int],
    batch_size: int,
    stop: Callable[[], bool],
) -> int:
    """Delete what *select_keys* finds, *batch_size* keys per transaction.

    *delete(session, keys)* removes the rows of *keys* and returns how
    many it removed (of the main table).
    """
    removed = 0
    query = select_keys.limit(batch_size)
    while not stop():
        with db.session() as session, session.begin():
            keys = list(session.execute(query).scalars())
            if not keys:
                break
            removed += delete(session, keys)
        if len(keys) < batch_size:
            break
    return removed


def _delete_where(  # noqa: PLR0917 (one statement's parts)
    db: Database,
    table: sa.Table,
    key: sa.Column[Any],
    condition: sa.ColumnElement[bool],
    batch_size: int,
    stop: Callable[[], bool],
) -> int:
    """Delete the rows of *table* matching *condition*, in batches.

    One statement per batch, the keys never leave the server: ``DELETE
    ... WHERE key IN (SELECT key ... LIMIT n)``.  On PostgreSQL the
    batch is found by the rows' physical addresses, ``DELETE ... WHERE
    ctid = ANY(ARRAY(SELECT ctid ... LIMIT n))``, a TID scan: the key
    form there joins the batch with the whole table, a sequential scan
    per batch.  ``DELETE ... LIMIT n`` on MySQL, which refuses a limit
    in such a subquery.
    """
    dialect = db.engine.dialect.name
    if dialect == "mysql":
        statement = (
            sa.delete(table)
            .where(condition)
            .with_dialect_options(mysql_limit=batch_size)
        )
    elif dialect == "postgresql":
        ctid: sa.ColumnClause[Any] = sa.literal_column("ctid")
        found = sa.select(ctid).select_from(table).where(condition)
        statement = sa.delete(table).where(
            ctid
            == sa.func.any(
                sa.func.array(found.limit(batch_size).scalar_subquery())
            )
        )
    else:
        keys = sa.select(key).where(condition).limit(batch_size)
        statement = sa.delete(table).where(key.in_(keys.scalar_subquery()))
    removed = 0
    while not stop():
        with db.session() as session, session.begin():
            count = _rowcount(session.execute(statement))
        removed += count
        if count < batch_size:
            break
    return removed


def _rowcount(result: Any) -> int:
    return int(cast(sa.CursorResult[Any], result).rowcount)


def expire_history(
    db: Database,
    before: dt.datetime,
    batch_size: int,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Delete the history entries older than *before*; return how many."""
    return _delete_where(
        db,
        HISTORY,
        HISTORY.c.event_id,
        HISTORY.c.timestamp < before,
        batch_size,
        stop,
    )


def expire_deliveries(
    db: Database,
    status: str,
    before: dt.datetime | None,
    batch_size: int,
    stop: Callable[[], bool] = lambda: False,
) -> tuple[int, int]:
    """Delete the deliveries in *status* last updated before *before*.

    ``None`` for *before*: all of them (an explicit purge).  Their
    attempts go with them.

    :returns: (deliveries removed, attempts removed).
    """
    attempts = 0

    def delete(session: Any, keys: list[Any]) -> int:
        nonlocal attempts
        attempts += _rowcount(
            session.execute(
                sa.delete(ATTEMPT).where(ATTEMPT.c.delivery_id.in_(keys))
            )
        )
        return _rowcount(
            session.execute(
                sa.delete(DELIVERY).where(
                    DELIVERY.c.id.in_(keys), DELIVERY.c.status == status
                )
            )
        )

    query = sa.select(DELIVERY.c.id).where(DELIVERY.c.status == status)
    if before is not None:
        query = query.where(DELIVERY.c.updated_at < before)
    removed = _batches(db, query, delete, batch_size, stop)
    return removed, attempts


def expire_notifications(
    db: Database,
    before: dt.datetime,
    batch_size: int,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Delete the outbox rows older than *before* without deliveries.

    A row whose deliveries were all removed (or that had no target) is
    removed with its expansion mark; a row with a delivery left stays.
    """
    orphan = ~sa.exists().where(
        DELIVERY.c.notification_id == NOTIFICATION.c.id
    )

    def delete(session: Any, keys: list[Any]) -> int:
        session.execute(
            sa.delete(EXPANSION).where(EXPANSION.c.notification_id.in_(keys))
        )
        return _rowcount(
            session.execute(
                sa.delete(NOTIFICATION).where(
                    NOTIFICATION.c.id.in_(keys), orphan
                )
            )
        )

    return _batches(
        db,
        sa.select(NOTIFICATION.c.id)
        .where(NOTIFICATION.c.created_at < before, orphan)
        .order_by(NOTIFICATION.c.id),
        delete,
        batch_size,
        stop,
    )


def expire_silences(
    db: Database,
    before: dt.datetime,
    batch_size: int,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Delete the silences that ended before *before*; return how many."""
    return _delete_where(
        db,
        SILENCE,
        SILENCE.c.silence_id,
        SILENCE.c.ends_at < before,
        batch_size,
        stop,
    )


def expire(
    db: Database,
    ages: Ages,
    *,
    batch_size: int = 5000,
    purge_dead_letters: bool = False,
    now: dt.datetime | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Removed:
    """Run one retention pass; return the counts removed (and log them).

    :param purge_dead_letters: remove every dead letter, whatever its age.
    :param stop: polled between batches; a true answer ends the pass.
    """
    now = now or timeutils.utcnow()
    removed = Removed()

    def cutoff(age: float | None) -> dt.datetime | None:
        return None if age is None else now - dt.timedelta(seconds=age)

    history_before = cutoff(ages.history)
    if history_before is not None:
        removed.history = expire_history(db, history_before, batch_size, stop)
    delivered_before = cutoff(ages.delivered)
    if delivered_before is not None:
        removed.delivered, attempts = expire_deliveries(
            db, models.DELIVERED, delivered_before, batch_size, stop
        )
        removed.attempts += attempts
    dead_before = cutoff(ages.dead_letters)
    if purge_dead_letters or dead_before is not None:
        removed.dead_letters, attempts = expire_deliveries(
            db,
            models.DEAD,
            None if purge_dead_letters else dead_before,
            batch_size,
            stop,
        )
        removed.attempts += attempts
    if delivered_before is not None:
        young = now - dt.timedelta(seconds=ages.unexpanded)
        removed.notifications = expire_notifications(
            db, min(delivered_before, young), batch_size, stop
        )
    silences_before = cutoff(ages.silences)
    if silences_before is not None:
        removed.silences = expire_silences(
            db, silences_before, batch_size, stop
        )
    if removed.total():
        LOG.info(
            "retention: removed %d history entries, %d delivered and %d "
            "dead deliveries, %d attempts, %d notifications, %d silences",
            removed.history,
            removed.delivered,
            removed.dead_letters,
            removed.attempts,
            removed.notifications,
            removed.silences,
        )
    return removed
