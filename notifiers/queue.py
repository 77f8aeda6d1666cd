"""The delivery queue in SQL: expand, claim, sweep, record, promote.

* :meth:`DeliveryQueue.expand` turns outbox rows
  (:class:`~alarmer.alarms.tables.Notification`) that have no deliveries
  yet into one :class:`~notifiers.tables.Delivery` per action URL.  It is
  idempotent (stable ids, inserts that skip existing keys, a unique
  expansion mark) and serialized across processes by the lock
  :data:`OUTBOX_LOCK`, so that the deliveries of a later notification
  never commit before those of an earlier one.  A delivery behind an
  open (waiting, pending or in flight) delivery of its stream (same
  alarm, same target) is created ``waiting``.
* :meth:`DeliveryQueue.expand_claiming` is the wave path: it expands no
  more outbox rows than the notifier has room for, and inserts the new
  deliveries that nothing holds back already claimed (one write before
  the attempt instead of two).
* :meth:`DeliveryQueue.claim` takes due ``pending`` deliveries in
  ``next_attempt_at`` order, skipping the rows other notifiers lock, and
  marks them ``in_flight`` under a claim token and an expiry.
* :meth:`DeliveryQueue.sweep` puts back the deliveries whose claim
  expired (their notifier died).
* :meth:`DeliveryQueue.reclaim` puts back at once, when a notifier
  starts, the claims of the previous process of its slot (its
  ``owner``): that process is dead, its claims need not expire.
* :meth:`DeliveryQueue.record` writes outcomes and attempts in one
  transaction and promotes (:func:`promote`) the deliveries that waited
  for the ones that ended, claiming as many of them as it is asked to in
  the same transaction; it holds :data:`OUTBOX_LOCK` shared, so that a
  delivery expanded as ``waiting`` behind one that ends now is always
  seen by one side or the other.
* :func:`redeliver` queues a dead-lettered delivery again.

The SQL that differs between backends comes from
:mod:`alarmer.db.dialect`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm

import notifiers
from alarmer import timeutils
from alarmer.alarms.tables import Notification
from alarmer.db import Database
from alarmer.db import dialect as dialect_mod
from notifiers import tables as models
from notifiers.jobs import DeliveryOutcome, Job
from notifiers.wakeup import OUTBOX_CHANNEL, Wakeup

LOG = logging.getLogger(__name__)

#: Seconds after which the highest outbox id seen goes under the floor.
FLOOR_DELAY = 10.0
#: Seconds between two outbox scans that ignore the floor.
FULL_SCAN_INTERVAL = 60.0
#: Longest time between two looks for expired claims (seconds).
SWEEP_INTERVAL = 5.0
#: Exclusive for expansions, shared for recorders ending deliveries.
OUTBOX_LOCK = "alarmer-outbox"

DELIVERY = cast(sa.Table, models.Delivery.__table__)
ATTEMPT = cast(sa.Table, models.DeliveryAttempt.__table__)
EXPANSION = cast(sa.Table, models.NotificationExpansion.__table__)
NOTIFICATION = cast(sa.Table, Notification.__table__)

#: Returns the signing secrets of ``(alarm_id, project_id)``.
Secrets = Callable[[str, str], tuple[str, ...]]


def _no_secrets(alarm_id: str, project_id: str) -> tuple[str, ...]:
    return ()


class DeliveryQueue:
    """The deliveries of the database *db*, seen by one notifier.

    :param opts: the ``[notifier]`` options (read when used:
        ``batch_size``, ``max_age``, ``claim_timeout``).
    :param worker_id: recorded as the claimer and in the attempts.
    :param secrets: the signing secrets of the messages of claimed jobs.
    :param owner: the lasting identity of this notifier's slot, recorded
        with its claims (None: claims only expire).
    """

    def __init__(
        self,
        db: Database,
        opts: Any,
        worker_id: str,
        secrets: Secrets = _no_secrets,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.opts = opts
        self.worker_id = worker_id
        self.owner = owner
        self.secrets = secrets
        self.sql = dialect_mod.for_engine(db.engine)
        # Outbox rows with an id up to the floor are all expanded; see
        # expand().
        self._floor = 0
        self._floor_candidate: tuple[float, int] | None = None
        self._next_full_scan = 0.0
        self._next_sweep = 0.0

    # -- expansion --------------------------------------------------------

    def expand(self) -> int:
        """Create the deliveries of outbox rows that have none yet.

        :returns: the number of outbox rows expanded.
        """
        return self.expand_claiming(0)[0]

    def expand_claiming(self, limit: int) -> tuple[int, list[Job], int]:
        """:meth:`expand`, claiming at once up to *limit* new deliveries.

        The wave path: a new delivery that nothing holds back is
        inserted claimed by this notifier (as :meth:`claim` would leave
        it, in the same transaction as its expansion), so that it is
        written once before its attempt instead of twice.

        With a *limit*, no more than *limit* outbox rows are expanded:
        the others wait in the outbox (durable, in order) for the room
        to claim them, rather than being written once as pending and
        again when claimed.

        :returns: the number of outbox rows expanded, the claimed jobs,
            and the number of new deliveries left pending.
        """
        now = timeutils.utcnow()
        window = now - dt.timedelta(seconds=self.opts.max_age)
        batch_size = self.opts.batch_size
        if limit > 0:
            batch_size = min(batch_size, limit)
        # Scanning every outbox row of the last max_age at each wake-up
        # would cost O(rows): scans start above a floor below which every
        # row is known to be expanded.  A row is only put under the floor
        # FLOOR_DELAY after it was seen as the highest id (so transactions
        # that got a lower id but committed later are still found), and
        # every FULL_SCAN_INTERVAL a scan ignores the floor altogether.
        monotonic = time.monotonic()
        full = monotonic >= self._next_full_scan
        floor = 0 if full else self._floor
        query = (
            sa.select(
                NOTIFICATION.c.id,
                NOTIFICATION.c.alarm_id,
                NOTIFICATION.c.seq,
                NOTIFICATION.c.actions,
                NOTIFICATION.c.created_at,
                *_MESSAGE_COLUMNS,
            )
            .select_from(
                NOTIFICATION.outerjoin(
                    EXPANSION,
                    EXPANSION.c.notification_id == NOTIFICATION.c.id,
                )
            )
            .where(
                EXPANSION.c.notification_id.is_(None),
                NOTIFICATION.c.created_at >= window,
                NOTIFICATION.c.id > floor,
            )
            .order_by(NOTIFICATION.c.id)
            .limit(batch_size)
        )
        with self.db.session() as session:
            self.sql.lock(session, OUTBOX_LOCK)
            rows = list(session.execute(query).all())
            seen_all = len(rows) < batch_size
            if not rows:
                if seen_all:
                    self._advance_floor(session, monotonic, full)
                session.rollback()
                return 0, [], 0
            max_age = dt.timedelta(seconds=self.opts.max_age)
            deliveries: list[dict[str, Any]] = []
            sources: dict[str, Any] = {}
            for row in rows:
                seen: set[str] = set()
                for target in row.actions or ():
                    if not isinstance(target, str) or target in seen:
                        continue
                    seen.add(target)
                    delivery_id = models.delivery_id(
                        row.alarm_id, row.seq, target
                    )
                    sources[delivery_id] = row
                    deliveries.append(
                        {
                            "id": delivery_id,
                            "notification_id": row.id,
                            "alarm_id": row.alarm_id,
                            "seq": row.seq,
                            "stream": models.stream_id(row.alarm_id, target),
                            "target": target,
                            "status": models.PENDING,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "dead_after": row.created_at + max_age,
                            "claimed_by": None,
                            "claim_owner": None,
                            "claim_token": None,
                            "claim_expires_at": None,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
            claimed: list[dict[str, Any]] = []
            token = str(uuid.uuid4())
            sources_rows = rows
            conn = session.connection()
            written = 0
            if deliveries:
                _hold_back(session, deliveries)
                if limit > 0:
                    rows, deliveries = _within(rows, deliveries, limit)
                    seen_all = seen_all and len(rows) == len(sources_rows)
                    claimed = [
                        d for d in deliveries if d["status"] == models.PENDING
                    ][:limit]
                    expires = now + dt.timedelta(
                        seconds=self.opts.claim_timeout
                    )
                    for delivery in claimed:
                        delivery["status"] = models.IN_FLIGHT
                        delivery["claimed_by"] = self.worker_id
                        delivery["claim_owner"] = self.owner
                        delivery["claim_token"] = token
                        delivery["claim_expires_at"] = expires
                written = self.sql.insert_rows_ignore(
                    conn, DELIVERY, deliveries
                )
            self.sql.insert_rows_ignore(
                conn,
                EXPANSION,
                [{"notification_id": r.id, "expanded_at": now} for r in rows],
            )
            if seen_all:
                # Every row above the floor is expanded now.
                self._advance_floor(session, monotonic, full)
            if claimed and (
                written != len(deliveries) or self.sql.name == "mysql"
            ):
                # Only the rows this transaction inserted are ours (an
                # existing delivery of the same id is left as it is).
                mine = set(
                    session.execute(
                        _CLAIMED_IDS,
                        {
                            "b_ids": [d["id"] for d in claimed],
                            "b_token": token,
                        },
                    ).scalars()
                )
                claimed = [d for d in claimed if d["id"] in mine]
            session.commit()
        LOG.debug(
            "expanded %d notifications into %d deliveries (%d claimed)",
            len(rows),
            len(deliveries),
            len(claimed),
        )
        jobs = [self._new_job(d, sources[d["id"]], token) for d in claimed]
        left = sum(d["status"] == models.PENDING for d in deliveries)
        return len(rows), jobs, left

    def _advance_floor(
        self, session: orm.Session, monotonic: float, full: bool
    ) -> None:
        """Every row above the floor is expanded (or being): move it."""
        if full:
            self._next_full_scan = monotonic + FULL_SCAN_INTERVAL
        candidate = self._floor_candidate
        if candidate is not None and monotonic - candidate[0] >= FLOOR_DELAY:
            self._floor = max(self._floor, candidate[1])
            candidate = None
        if candidate is None:
            highest = session.execute(
                sa.select(sa.func.max(NOTIFICATION.c.id))
            ).scalar()
            self._floor_candidate = (monotonic, int(highest or 0))

    # -- claims -----------------------------------------------------------

    def claim(self, limit: int) -> list[Job]:
        """Claim up to *limit* due deliveries for this notifier."""
        now = timeutils.utcnow()
        # Pending rows only (later deliveries of a stream wait as
        # ``waiting``), in next_attempt_at order: the index walk stops at
        # the limit.  Where the lock can be limited to the delivery rows
        # (and on SQLite, which locks the database), the rows are read
        # with their notification in the locking query itself.
        joined = self.sql.locks_one_table
        query = self.sql.skip_locked(
            (_CLAIM_JOINED if joined else _CLAIM_IDS)
            .where(DELIVERY.c.next_attempt_at <= now)
            .limit(limit),
            of=DELIVERY,
        )
        token = str(uuid.uuid4())
        monotonic = time.monotonic()
        with self.db.session() as session:
            if monotonic >= self._next_sweep:
                self._next_sweep = monotonic + min(
                    SWEEP_INTERVAL, self.opts.claim_timeout / 2
                )
                self.sweep(session, now)
            if joined:
                rows = session.execute(query).all()
                ids = [row.id for row in rows]
            else:
                ids = list(session.execute(query).scalars())
            if not ids:
                session.rollback()
                return []
            session.execute(
                _CLAIM_UPDATE,
                {
                    "b_ids": ids,
                    "claimed_by": self.worker_id,
                    "claim_owner": self.owner,
                    "claim_token": token,
                    "claim_expires_at": now
                    + dt.timedelta(seconds=self.opts.claim_timeout),
                    "updated_at": now,
                },
            )
            if not joined:
                rows = session.execute(
                    _CLAIM_COLUMNS.where(DELIVERY.c.id.in_(ids))
                ).all()
            session.commit()
        return [self._job(row, token) for row in rows]

    def sweep(self, session: orm.Session, now: dt.datetime) -> int:
        """Put back the deliveries whose notifier died (claim expired).

        The claim token stays, so that the outcome of a notifier that was
        only slow is still recorded if nobody claimed the delivery since.
        """
        expired = (
            DELIVERY.c.status == models.IN_FLIGHT,
            DELIVERY.c.claim_expires_at < now,
        )
        # By id (update_in): on MySQL, an UPDATE scanning the in-flight
        # rows would lock the index range that concurrent claims write.
        swept = self.sql.update_in(
            session,
            DELIVERY.update()
            .where(*expired)
            .values(
                status=models.PENDING,
                claimed_by=None,
                claim_owner=None,
                updated_at=now,
            ),
            DELIVERY.c.id,
            sa.select(DELIVERY.c.id).where(*expired),
        )
        if swept:
            LOG.warning(
                "%d deliveries whose claim expired are queued again", swept
            )
        promote(session, self.sql, now)
        return swept

    def reclaim(self) -> int:
        """Queue again, at once, the in-flight claims of :attr:`owner`.

        Called when a notifier starts: the process that held its slot
        before is gone (the slot is held for the life of a process), so
        its claims are dead and need not wait for ``claim_timeout``.
        They keep their delivery id (at least once).  The claims of
        other owners are left to expire.

        :returns: the number of deliveries queued again.
        """
        if self.owner is None:
            return 0
        now = timeutils.utcnow()
        mine = (
            DELIVERY.c.status == models.IN_FLIGHT,
            DELIVERY.c.claim_owner == self.owner,
        )
        with self.db.session() as session:
            reclaimed = self.sql.update_in(
                session,
                DELIVERY.update()
                .where(*mine)
                .values(
                    status=models.PENDING,
                    claimed_by=None,
                    claim_owner=None,
                    claim_token=None,
                    claim_expires_at=None,
                    next_attempt_at=now,
                    updated_at=now,
                ),
                DELIVERY.c.id,
                sa.select(DELIVERY.c.id).where(*mine),
            )
            session.commit()
        if reclaimed:
            LOG.warning(
                "%d deliveries claimed by the previous process of %s are "
                "queued again",
                reclaimed,
                self.owner,
            )
        return reclaimed

    def _new_job(self, delivery: dict[str, Any], row: Any, token: str) -> Job:
        """The job of a *delivery* being inserted claimed, from the *row*
        of its notification."""
        return Job(
            id=delivery["id"],
            token=token,
            target=delivery["target"],
            stream=delivery["stream"],
            attempts=0,
            dead_after=delivery["dead_after"],
            message=self._message(delivery["id"], row),
        )

    def _job(self, row: Any, token: str) -> Job:
        return Job(
            id=row.id,
            token=token,
            target=row.target,
            stream=row.stream,
            attempts=row.attempts,
            dead_after=row.dead_after,
            message=self._message(row.id, row),
        )

    def _message(self, delivery_id: str, row: Any) -> notifiers.Message:
        """The message of *delivery_id* from its notification's *row*."""
        return notifiers.Message(
            delivery_id=delivery_id,
            alarm_id=row.alarm_id,
            seq=row.seq,
            alarm_name=row.alarm_name,
            severity=row.severity,
            previous=row.previous,
            current=row.current,
            reason=row.reason,
            reason_data=row.reason_data or {},
            project_id=row.project_id,
            secrets=self.secrets(row.alarm_id, row.project_id),
        )

    # -- outcomes ---------------------------------------------------------

    def record(
        self, outcomes: Iterable[DeliveryOutcome], claim: int = 0
    ) -> tuple[list[Job], int]:
        """Write outcomes and attempts in one transaction.

        Outcomes that write the same values (typically: delivered at the
        first attempt, from one claim) share one ``UPDATE ... WHERE id IN
        (...) AND claim_token = ...`` instead of one statement each.

        The deliveries that waited for the ones that ended are made
        pending; up to *claim* of them are claimed instead, in the same
        transaction (the next notification of an alarm is not written
        once as pending and again as claimed).

        :returns: the jobs claimed, and the number of deliveries made
            pending.
        """
        outcomes = list(outcomes)
        now = timeutils.utcnow()
        groups: dict[tuple[Any, ...], list[str]] = {}
        attempt_rows = []
        for outcome in outcomes:
            job = outcome.job
            last = outcome.attempts[-1].result if outcome.attempts else None
            delivered = outcome.status == models.DELIVERED
            key = (
                job.token,
                outcome.status,
                len(outcome.attempts),
                # Not looked at once delivered: the time of the record.
                now if delivered else outcome.next_attempt_at,
                now if delivered else None,
                last.status_code if last else None,
                _truncate(last.error) if last else None,
            )
            groups.setdefault(key, []).append(job.id)
            for attempt in outcome.attempts:
                result = attempt.result
                attempt_rows.append(
                    {
                        "delivery_id": job.id,
                        "attempted_at": attempt.at,
                        "status_code": result.status_code,
                        "error": _truncate(result.error),
                        "duration_ms": round(result.duration * 1000.0, 3),
                        "outcome": "delivered"
                        if result.delivered
                        else ("retry" if result.retryable else "failed"),
                        "worker": self.worker_id,
                    }
                )
        updates = []
        for key, ids in groups.items():
            token, status, n, next_at, delivered_at, code, error = key
            for i in range(0, len(ids), 500):
                updates.append(
                    {
                        "b_ids": ids[i : i + 500],
                        "b_token": token,
                        "status": status,
                        "n": n,
                        "next_attempt_at": next_at,
                        "updated_at": now,
                        "delivered_at": delivered_at,
                        "last_status_code": code,
                        "last_error": error,
                    }
                )
        ended = {o.job.stream for o in outcomes if o.status in models.FINAL}
        with self.db.session() as session:
            if ended:
                self.sql.lock(session, OUTBOX_LOCK, shared=True)
            for params in updates:
                session.execute(_RECORD, params)
            self.sql.insert_rows(session.connection(), ATTEMPT, attempt_rows)
            jobs: list[Job] = []
            promoted = 0
            if ended and claim > 0:
                jobs, promoted = self._promote_claiming(
                    session, now, sorted(ended), claim
                )
            elif ended:
                promoted = promote(session, self.sql, now, sorted(ended))
            session.commit()
        return jobs, promoted

    def _promote_claiming(
        self,
        session: orm.Session,
        now: dt.datetime,
        streams: list[str],
        limit: int,
    ) -> tuple[list[Job], int]:
        """:func:`promote` *streams*, claiming up to *limit* of them.

        :returns: the jobs claimed, and the number made pending.
        """
        ids: list[str] = []
        for i in range(0, len(streams), 500):
            ids.extend(
                session.execute(
                    _PROMOTABLE_OF, {"b_streams": streams[i : i + 500]}
                ).scalars()
            )
        if not ids:
            return [], 0
        take, rest = ids[:limit], ids[limit:]
        for i in range(0, len(rest), 500):
            session.execute(
                _PROMOTE_IDS,
                {"b_ids": rest[i : i + 500], "now": now},
            )
        token = str(uuid.uuid4())
        session.execute(
            _CLAIM_WAITING,
            {
                "b_ids": take,
                "claimed_by": self.worker_id,
                "claim_owner": self.owner,
                "claim_token": token,
                "claim_expires_at": now
                + dt.timedelta(seconds=self.opts.claim_timeout),
                "now": now,
            },
        )
        # Another notifier's sweep may have promoted some meanwhile.
        rows = session.execute(
            _CLAIM_COLUMNS.where(
                DELIVERY.c.id.in_(take), DELIVERY.c.claim_token == token
            )
        ).all()
        return [self._job(row, token) for row in rows], len(rest)


def _within(
    rows: list[Any], deliveries: list[dict[str, Any]], limit: int
) -> tuple[list[Any], list[dict[str, Any]]]:
    """The first *rows* (and their *deliveries*) whose deliveries that
    nothing holds back number at most *limit* (one row at least).

    The others are not expanded now: they wait in the outbox rather
    than be written pending, then written again when claimed.
    """
    pending: dict[int, int] = {}
    for delivery in deliveries:
        if delivery["status"] == models.PENDING:
            key = delivery["notification_id"]
            pending[key] = pending.get(key, 0) + 1
    kept = 0
    total = 0
    for row in rows:
        total += pending.get(row.id, 0)
        if kept and total > limit:
            break
        kept += 1
    if kept == len(rows):
        return rows, deliveries
    ids = {row.id for row in rows[:kept]}
    return rows[:kept], [d for d in deliveries if d["notification_id"] in ids]


def _hold_back(session: orm.Session, deliveries: list[dict[str, Any]]) -> None:
    """Make ``waiting`` every new delivery behind an open one."""
    streams = sorted({d["stream"] for d in deliveries})
    busy: set[str] = set()
    for start in range(0, len(streams), 500):
        chunk = streams[start : start + 500]
        busy.update(
            session.execute(_OPEN_STREAMS, {"b_streams": chunk}).scalars()
        )
    for delivery in sorted(deliveries, key=lambda d: d["seq"]):
        if delivery["stream"] in busy:
            delivery["status"] = models.WAITING
        busy.add(delivery["stream"])


#: The streams among ``b_streams`` that have an open delivery.
_OPEN_STREAMS = (
    sa.select(DELIVERY.c.stream)
    .where(
        DELIVERY.c.stream.in_(sa.bindparam("b_streams", expanding=True)),
        DELIVERY.c.status.in_(models.OPEN),
    )
    .distinct()
)
_CLAIM_IDS = (
    sa.select(DELIVERY.c.id)
    .where(DELIVERY.c.status == models.PENDING)
    .order_by(DELIVERY.c.next_attempt_at)
)
#: The columns of the notification that a job's message carries (with
#: its alarm id and sequence number).
_MESSAGE_COLUMNS = (
    NOTIFICATION.c.alarm_name,
    NOTIFICATION.c.severity,
    NOTIFICATION.c.previous,
    NOTIFICATION.c.current,
    NOTIFICATION.c.reason,
    NOTIFICATION.c.reason_data,
    NOTIFICATION.c.project_id,
)


_CLAIM_COLUMNS = (
    sa.select(
        DELIVERY.c.id,
        DELIVERY.c.target,
        DELIVERY.c.stream,
        DELIVERY.c.attempts,
        DELIVERY.c.dead_after,
        DELIVERY.c.seq,
        NOTIFICATION.c.alarm_id,
        *_MESSAGE_COLUMNS,
    )
    .select_from(
        DELIVERY.join(
            NOTIFICATION, NOTIFICATION.c.id == DELIVERY.c.notification_id
        )
    )
    .order_by(DELIVERY.c.next_attempt_at)
)
_CLAIM_JOINED = _CLAIM_COLUMNS.where(DELIVERY.c.status == models.PENDING)
#: The columns a claim writes (with ``updated_at``).
_CLAIM_VALUES: dict[str, Any] = {
    "status": models.IN_FLIGHT,
    "claimed_by": sa.bindparam("claimed_by"),
    "claim_owner": sa.bindparam("claim_owner"),
    "claim_token": sa.bindparam("claim_token"),
    "claim_expires_at": sa.bindparam(
        "claim_expires_at", type_=models.UTCDateTime()
    ),
}
_CLAIM_UPDATE = (
    DELIVERY.update()
    .where(DELIVERY.c.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(
        **_CLAIM_VALUES,
        updated_at=sa.bindparam("updated_at", type_=models.UTCDateTime()),
    )
)
#: The deliveries of ``b_ids`` claimed with ``b_token``.
_CLAIMED_IDS = sa.select(DELIVERY.c.id).where(
    DELIVERY.c.id.in_(sa.bindparam("b_ids", expanding=True)),
    DELIVERY.c.claim_token == sa.bindparam("b_token"),
)
#: Claims the deliveries of ``b_ids`` that still wait (see
#: :meth:`DeliveryQueue.record`).
_CLAIM_WAITING = (
    DELIVERY.update()
    .where(
        DELIVERY.c.id.in_(sa.bindparam("b_ids", expanding=True)),
        DELIVERY.c.status == models.WAITING,
    )
    .values(
        **_CLAIM_VALUES,
        next_attempt_at=sa.bindparam("now", type_=models.UTCDateTime()),
        updated_at=sa.bindparam("now", type_=models.UTCDateTime()),
    )
)
#: Writes the outcome of the deliveries of ``b_ids`` still claimed with
#: ``b_token`` (see :meth:`DeliveryQueue.record`).
_RECORD = (
    DELIVERY.update()
    .where(
        DELIVERY.c.id.in_(sa.bindparam("b_ids", expanding=True)),
        DELIVERY.c.claim_token == sa.bindparam("b_token"),
    )
    .values(
        status=sa.bindparam("status"),
        attempts=DELIVERY.c.attempts + sa.bindparam("n"),
        next_attempt_at=sa.bindparam("next_attempt_at"),
        updated_at=sa.bindparam("updated_at"),
        delivered_at=sa.func.coalesce(
            sa.bindparam("delivered_at", type_=models.UTCDateTime()),
            DELIVERY.c.delivered_at,
        ),
        last_status_code=sa.func.coalesce(
            sa.bindparam("last_status_code", type_=sa.Integer()),
            DELIVERY.c.last_status_code,
        ),
        last_error=sa.case(
            (sa.bindparam("n") > 0, sa.bindparam("last_error")),
            else_=DELIVERY.c.last_error,
        ),
        claimed_by=None,
        claim_owner=None,
        claim_token=None,
        claim_expires_at=None,
    )
)


def _truncate(text: str | None, limit: int = 2000) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "..."


_EARLIER = DELIVERY.alias("earlier")
#: The waiting deliveries with no open delivery before them in their
#: stream.  Built once: an alias builds its column collection when first
#: used, which per recorded batch cost more than the statement.
_PROMOTABLE = sa.select(DELIVERY.c.id).where(
    DELIVERY.c.status == models.WAITING,
    ~sa.exists().where(
        _EARLIER.c.stream == DELIVERY.c.stream,
        _EARLIER.c.seq < DELIVERY.c.seq,
        _EARLIER.c.status.in_(models.OPEN),
    ),
)
_PROMOTE = (
    DELIVERY.update()
    .where(DELIVERY.c.status == models.WAITING)
    .values(status=models.PENDING)
)
#: :data:`_PROMOTABLE` in the streams of ``b_streams``.
_PROMOTABLE_OF = _PROMOTABLE.where(
    DELIVERY.c.stream.in_(sa.bindparam("b_streams", expanding=True))
)
#: Makes pending the deliveries of ``b_ids`` that still wait.
_PROMOTE_IDS = _PROMOTE.where(
    DELIVERY.c.id.in_(sa.bindparam("b_ids", expanding=True))
).values(
    next_attempt_at=sa.bindparam("now", type_=models.UTCDateTime()),
    updated_at=sa.bindparam("now", type_=models.UTCDateTime()),
)


def promote(
    session: orm.Session,
    sql: dialect_mod.Dialect,
    now: dt.datetime,
    streams: list[str] | None = None,
) -> int:
    """Make ``pending`` the waiting deliveries nothing holds back any more.

    Called with the streams whose delivery just ended, and without
    streams by the periodic sweep (which heals the rare case of a
    delivery expanded as ``waiting`` while the one before it ended).

    :returns: the number of deliveries made pending.
    """
    query = _PROMOTABLE
    update = _PROMOTE.values(next_attempt_at=now, updated_at=now)
    chunks = (
        [None]
        if streams is None
        else [streams[i : i + 500] for i in range(0, len(streams), 500)]
    )
    promoted = 0
    for chunk in chunks:
        chunk_query = (
            query
            if chunk is None
            else query.where(DELIVERY.c.stream.in_(chunk))
        )
        promoted += sql.update_in(session, update, DELIVERY.c.id, chunk_query)
    return promoted


def redeliver(
    db: Database,
    delivery_id: str,
    max_age: float,
    wakeup: Wakeup | None = None,
) -> bool:
    """Put a dead-lettered delivery back in the queue.

    Its attempt count restarts at zero and it gets a new *max_age*
    (seconds); its id (and so the ``webhook-id``) does not change.
    *wakeup* is the wake-up of a notifier of this process, if the caller
    has it; on PostgreSQL, notifiers of every process are woken.

    :returns: False when the delivery is not dead.
    """
    now = timeutils.utcnow()
    sql = dialect_mod.for_engine(db.engine)
    with db.session() as session:
        result = session.execute(
            DELIVERY.update()
            .where(
                DELIVERY.c.id == delivery_id,
                DELIVERY.c.status == models.DEAD,
            )
            .values(
                status=models.PENDING,
                attempts=0,
                next_attempt_at=now,
                dead_after=now + dt.timedelta(seconds=max_age),
                updated_at=now,
            )
        )
        changed = bool(dialect_mod.rowcount(result))
        if changed:
            sql.notify(session, OUTBOX_CHANNEL)
        session.commit()
    if changed:
        LOG.info("delivery %s queued again for redelivery", delivery_id)
        if wakeup is not None:
            wakeup.poke()
    return changed
