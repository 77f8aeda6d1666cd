"""The notifier service: outbox rows in, webhooks out, at least once.

One dispatcher thread per process loops over three steps:

1. **expand** outbox rows (:class:`~alarmer.alarms.tables.Notification`)
   that have no deliveries yet into one :class:`Delivery` per action URL
   (idempotent: stable ids, a unique expansion mark, and on PostgreSQL an
   advisory lock so that expansions of several processes never
   interleave);
2. **claim** due deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and
   MySQL; SQLite's writers are serialized by ``BEGIN IMMEDIATE``): pending
   ones whose ``next_attempt_at`` has passed, in that order.  A delivery
   behind an open (waiting, pending or in flight) delivery of the same
   alarm to the same target is created ``waiting`` and only becomes
   ``pending`` when that one is delivered or dead, which keeps each
   target's notifications in order.  A periodic sweep puts back the
   deliveries whose notifier died (expired claim);
3. hand the claimed deliveries to a pool of worker threads, at most
   ``max_inflight_per_host`` at a time per host (the others of that host
   wait in memory, or go back to the database when too many), so that a
   slow or dead endpoint never stalls the others.

A worker calls the plugin under :mod:`tenacity`: a few attempts in a row
while the backoff is short, after which the delivery is put back with
``next_attempt_at`` (no thread or lock is held while waiting).  Outcomes
and attempts are written in batches by a recorder thread; a crash between
claim and record only means the delivery is claimed again after
``claim_timeout``, with the same delivery id.

The dispatcher wakes up when a session of this process commits an outbox
row, when a PostgreSQL ``NOTIFY alarmer_outbox`` arrives (sent by a
trigger), after each recorded batch, and every ``poll_interval``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import queue
import socket
import threading
import time
import types
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any, cast

import sqlalchemy as sa
import tenacity
from sqlalchemy import event, orm

import notifiers
from alarmer import runtime as runtime_mod
from alarmer import timeutils
from alarmer.alarms.tables import Notification
from notifiers import signing
from notifiers import tables as models

LOG = logging.getLogger(__name__)

_SESSION_FLAG = "alarmer_outbox_written"
_PG_CHANNEL = "alarmer_outbox"
_PG_LOCK_KEY = 0x616C61726D  # "alarm"
#: Seconds a delivery to a saturated host is put back for.
_DEFER = 0.2
#: Seconds after which the highest outbox id seen goes under the floor.
FLOOR_DELAY = 10.0
#: Seconds between two outbox scans that ignore the floor.
FULL_SCAN_INTERVAL = 60.0
#: Seconds the recorder waits for more outcomes to write them together.
RECORD_GATHER = 0.003
#: Longest time between two looks for expired claims (seconds).
SWEEP_INTERVAL = 5.0

DELIVERY = cast(sa.Table, models.Delivery.__table__)
ATTEMPT = cast(sa.Table, models.DeliveryAttempt.__table__)
EXPANSION = cast(sa.Table, models.NotificationExpansion.__table__)
NOTIFICATION = Notification.__table__


class _Stopping(Exception):
    """The service stops while a worker waits between two attempts."""


@dataclasses.dataclass(frozen=True)
class Job:
    """A claimed delivery and the notification it carries."""

    id: str
    token: str
    target: str
    stream: str
    attempts: int
    dead_after: dt.datetime
    message: notifiers.Message


@dataclasses.dataclass
class Attempt:
    """One finished attempt, as recorded in ``delivery_attempt``."""

    at: dt.datetime
    result: notifiers.Result


@dataclasses.dataclass
class DeliveryOutcome:
    """What to write for a job once its attempts are over."""

    job: Job
    status: str
    attempts: list[Attempt]
    next_attempt_at: dt.datetime
    release: bool = False


class Backoff(tenacity.wait.wait_base):
    """Exponential backoff with jitter; a ``Retry-After`` wins.

    The attempt number continues from *offset* (the attempts a delivery
    already had), so that the delays keep growing across claims.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        jitter: float,
        max_retry_after: float,
        offset: int = 0,
    ) -> None:
        self.exponential = tenacity.wait_exponential_jitter(
            multiplier=initial, max=maximum, jitter=jitter
        )
        self.max_retry_after = max_retry_after
        self.offset = offset

    def delay(
        self, attempt_number: int, result: notifiers.Result | None
    ) -> float:
        """Seconds to wait after the *attempt_number*-th attempt."""
        if result is not None and result.retry_after is not None:
            return min(result.retry_after, self.max_retry_after)
        state = types.SimpleNamespace(attempt_number=attempt_number)
        return float(self.exponential(state))  # type: ignore[arg-type]

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        result = None
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            result = outcome.result()
        return self.delay(retry_state.attempt_number + self.offset, result)


def _retryable(result: notifiers.Result) -> bool:
    return not result.delivered and result.retryable


class NotifierService:
    """Deliver the outbox of the database of *rt*; see the module doc."""

    name = "notifier"

    def __init__(
        self, rt: runtime_mod.Runtime, worker_id: str | None = None
    ) -> None:
        self.rt = rt
        self.conf = rt.conf
        self.opts = rt.conf.notifier
        self.worker_id = worker_id or (
            f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._outcomes: queue.SimpleQueue[DeliveryOutcome | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._inflight = 0
        self._per_host: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[Job]] = {}
        # Jobs in the _waiting queues.
        self._backlog = 0
        self._outbox_dirty = True
        self._next_expand = 0.0
        # Outbox rows with an id up to the floor are all expanded; see
        # expand().
        self._floor = 0
        self._floor_candidate: tuple[float, int] | None = None
        self._next_full_scan = 0.0
        self._next_sweep = 0.0
        self._plugins: dict[str, notifiers.Notifier] = {}
        self._threads: list[threading.Thread] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._hooks: list[tuple[Any, str, Callable[..., Any]]] = []

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher, the workers and the recorder."""
        self._stopping.clear()
        self._install_hooks()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.opts.workers,
            thread_name_prefix="notifier-worker",
        )
        targets: list[tuple[str, Callable[[], None]]] = [
            ("notifier-recorder", self._record_loop),
            ("notifier-dispatcher", self._dispatch_loop),
        ]
        if self.rt.db.dialect == "postgresql":
            targets.append(("notifier-listen", self._listen_loop))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        LOG.info("notifier %s started", self.worker_id)

    def stop(self) -> None:
        """Stop claiming, finish or release running jobs, record, stop."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            if thread.name != "notifier-recorder":
                thread.join()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._outcomes.put(None)
        for thread in self._threads:
            if thread.name == "notifier-recorder":
                thread.join()
        self._threads = []
        self._remove_hooks()
        for plugin in self._plugins.values():
            plugin.close()
        self._plugins.clear()
        LOG.info("notifier %s stopped", self.worker_id)

    def wake(self) -> None:
        """Look at the outbox now (new notifications were committed)."""
        self._outbox_dirty = True
        self._wake.set()

    # -- wake-ups ---------------------------------------------------------

    def _install_hooks(self) -> None:
        def after_flush(session: orm.Session, _ctx: Any) -> None:
            if any(isinstance(o, Notification) for o in session.new):
                session.info[_SESSION_FLAG] = True

        def do_orm_execute(state: orm.ORMExecuteState) -> None:
            mapper = state.bind_mapper
            if state.is_insert and mapper is not None:
                state.session.info[_SESSION_FLAG] = (
                    state.session.info.get(_SESSION_FLAG, False)
                    or mapper.class_ is Notification
                )

        def after_commit(session: orm.Session) -> None:
            if session.info.pop(_SESSION_FLAG, False):
                self.wake()

        def after_rollback(session: orm.Session) -> None:
            session.info.pop(_SESSION_FLAG, None)

        maker = self.rt.db.sessionmaker
        for name, fn in (
            ("after_flush", after_flush),
            ("do_orm_execute", do_orm_execute),
            ("after_commit", after_commit),
            ("after_rollback", after_rollback),
        ):
            event.listen(maker, name, fn)
            self._hooks.append((maker, name, fn))

    def _remove_hooks(self) -> None:
        for target, name, fn in self._hooks:
            event.remove(target, name, fn)
        self._hooks = []

    def _listen_loop(self) -> None:
        """Wake up on PostgreSQL notifications from any process."""
        import psycopg

        url = sa.make_url(self.rt.db.url).set(drivername="postgresql")
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    url.render_as_string(hide_password=False),
                    autocommit=True,
                ) as conn:
                    conn.execute(f"LISTEN {_PG_CHANNEL}")
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self.wake()
            except Exception:
                LOG.exception("LISTEN %s failed; retrying", _PG_CHANNEL)
                self._stopping.wait(self.opts.poll_interval)

    # -- dispatcher -------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            busy = False
            try:
                now = time.monotonic()
                if self._outbox_dirty or now >= self._next_expand:
                    # Cleared first: a wake-up during the expansion sets it
                    # again, and the next turn expands again.
                    self._outbox_dirty = False
                    self._next_expand = now + self.opts.poll_interval
                    if self.expand() >= self.opts.batch_size:
                        self._outbox_dirty = True
                        busy = True
                with self._lock:
                    inflight = self._inflight
                    backlog = self._backlog
                free = 4 * self.opts.workers - inflight
                # Claim in chunks (at least one worker's worth per worker)
                # rather than one delivery per completed one: each claim is
                # a write transaction.
                if free >= self.opts.workers or inflight == 0:
                    # No more than the in-memory queues can take (the
                    # rest would be claimed only to be put back), but
                    # always a host's worth, so that other hosts are
                    # still served while one is busy.
                    limit = min(free, self.opts.batch_size)
                    room = max(
                        self.opts.max_inflight_per_host,
                        2 * self.opts.workers - backlog,
                    )
                    capped = room < limit
                    limit = min(limit, room)
                    jobs = self.claim(limit)
                    for job in jobs:
                        self._submit(job)
                    # When the queues are full, the next claim waits for
                    # a wake-up (a recorded batch) instead of looping.
                    busy = busy or (len(jobs) == limit and not capped)
            except Exception:
                LOG.exception("notifier %s: dispatch failed", self.worker_id)
                busy = False
            if not busy:
                self._wake.wait(self.opts.poll_interval)

    def _submit(self, job: Job) -> None:
        """Run *job*, or queue it behind its host's running deliveries.

        At most ``max_inflight_per_host`` deliveries run per host and
        ``2 * workers`` wait in memory (claims go up to ``4 * workers``);
        further ones go back to the database for a moment, so that a slow
        or dead host never holds every worker nor every claim.
        """
        assert self._executor is not None
        host = _host(job.target)
        cap = self.opts.max_inflight_per_host
        run = release = False
        with self._lock:
            busy = self._per_host.get(host, 0)
            if busy < cap:
                self._per_host[host] = busy + 1
                self._inflight += 1
                run = True
            else:
                waiting = self._waiting.setdefault(host, collections.deque())
                if len(waiting) < 2 * self.opts.workers:
                    waiting.append(job)
                    self._inflight += 1
                    self._backlog += 1
                else:
                    release = True
        if run:
            self._executor.submit(self._run_job, job)
        elif release:
            later = timeutils.utcnow() + dt.timedelta(seconds=_DEFER)
            self._outcomes.put(
                DeliveryOutcome(job, models.PENDING, [], later, release=True)
            )

    def expand(self) -> int:
        """Create the deliveries of outbox rows that have none yet.

        :returns: the number of outbox rows expanded.
        """
        now = timeutils.utcnow()
        window = now - dt.timedelta(seconds=self.opts.max_age)
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
            .limit(self.opts.batch_size)
        )
        dialect = self.rt.db.dialect
        with self.rt.db.session() as session:
            if dialect == "postgresql":
                # Serialize expansions across processes: deliveries of a
                # later notification must never commit before those of an
                # earlier one.
                session.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": _PG_LOCK_KEY},
                )
            rows = session.execute(query).all()
            if len(rows) < self.opts.batch_size:
                self._advance_floor(session, monotonic, full)
            if not rows:
                session.rollback()
                return 0
            deliveries: list[dict[str, Any]] = []
            for row in rows:
                seen: set[str] = set()
                for target in row.actions or ():
                    if not isinstance(target, str) or target in seen:
                        continue
                    seen.add(target)
                    deliveries.append(
                        {
                            "id": models.delivery_id(
                                row.alarm_id, row.seq, target
                            ),
                            "notification_id": row.id,
                            "alarm_id": row.alarm_id,
                            "seq": row.seq,
                            "stream": models.stream_id(row.alarm_id, target),
                            "target": target,
                            "status": models.PENDING,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "dead_after": row.created_at
                            + dt.timedelta(seconds=self.opts.max_age),
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
            if deliveries:
                self._hold_back(session, deliveries)
                session.execute(_insert_ignore(DELIVERY, dialect), deliveries)
            session.execute(
                _insert_ignore(EXPANSION, dialect),
                [{"notification_id": r.id, "expanded_at": now} for r in rows],
            )
            session.commit()
        LOG.debug(
            "expanded %d notifications into %d deliveries",
            len(rows),
            len(deliveries),
        )
        return len(rows)

    @staticmethod
    def _hold_back(
        session: orm.Session, deliveries: list[dict[str, Any]]
    ) -> None:
        """Make ``waiting`` every new delivery behind an open one."""
        streams = sorted({d["stream"] for d in deliveries})
        busy: set[str] = set()
        for start in range(0, len(streams), 500):
            chunk = streams[start : start + 500]
            busy.update(
                session.execute(
                    sa.select(DELIVERY.c.stream)
                    .where(
                        DELIVERY.c.stream.in_(chunk),
                        DELIVERY.c.status.in_(models.OPEN),
                    )
                    .distinct()
                ).scalars()
            )
        for delivery in sorted(deliveries, key=lambda d: d["seq"]):
            if delivery["stream"] in busy:
                delivery["status"] = models.WAITING
            busy.add(delivery["stream"])

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

    def claim(self, limit: int) -> list[Job]:
        """Claim up to *limit* due deliveries for this notifier."""
        now = timeutils.utcnow()
        dialect = self.rt.db.dialect
        # Pending rows only (later deliveries of a stream wait as
        # ``waiting``), in next_attempt_at order: the index walk stops at
        # the limit.  Where the lock can be limited to the delivery rows
        # (PostgreSQL; SQLite locks the database), the rows are read with
        # their notification in the locking query itself.
        joined = dialect != "mysql"
        query = (
            (_CLAIM_JOINED if joined else _CLAIM_IDS)
            .where(DELIVERY.c.next_attempt_at <= now)
            .limit(limit)
        )
        if dialect == "postgresql":
            query = query.with_for_update(skip_locked=True, of=DELIVERY)
        elif dialect == "mysql":
            query = query.with_for_update(skip_locked=True)
        token = str(uuid.uuid4())
        monotonic = time.monotonic()
        with self.rt.db.session() as session:
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

    @staticmethod
    def sweep(session: orm.Session, now: dt.datetime) -> int:
        """Put back the deliveries whose notifier died (claim expired).

        The claim token stays, so that the outcome of a notifier that was
        only slow is still recorded if nobody claimed the delivery since.
        """
        result = session.execute(
            DELIVERY.update()
            .where(
                DELIVERY.c.status == models.IN_FLIGHT,
                DELIVERY.c.claim_expires_at < now,
            )
            .values(status=models.PENDING, claimed_by=None, updated_at=now)
        )
        expired = cast(sa.CursorResult[Any], result).rowcount
        if expired:
            LOG.warning(
                "%d deliveries whose claim expired are queued again",
                expired,
            )
        promote(session, now)
        return expired

    def _job(self, row: Any, token: str) -> Job:
        return Job(
            id=row.id,
            token=token,
            target=row.target,
            stream=row.stream,
            attempts=row.attempts,
            dead_after=row.dead_after,
            message=notifiers.Message(
                delivery_id=row.id,
                alarm_id=row.alarm_id,
                seq=row.seq,
                alarm_name=row.alarm_name,
                severity=row.severity,
                previous=row.previous,
                current=row.current,
                reason=row.reason,
                reason_data=row.reason_data or {},
                project_id=row.project_id,
                secrets=self.secrets_for(row.alarm_id, row.project_id),
            ),
        )

    def secrets_for(self, alarm_id: str, project_id: str) -> tuple[str, ...]:
        """Return the signing secrets of an alarm (may be empty)."""
        per_alarm = self.opts.alarm_secrets or {}
        value = per_alarm.get(alarm_id) or per_alarm.get(project_id)
        return signing.split_secrets(value or self.opts.webhook_secret)

    # -- workers ----------------------------------------------------------

    def _plugin(self, scheme: str) -> notifiers.Notifier | None:
        with self._lock:
            plugin = self._plugins.get(scheme)
            if plugin is None:
                cls = notifiers.plugin_classes().get(scheme)
                if cls is None:
                    return None
                plugin = cls(self.conf)
                self._plugins[scheme] = plugin
            return plugin

    def _run_job(self, job: Job | None) -> None:
        """Deliver *job*, then the jobs queued behind it for its host."""
        while job is not None:
            outcome = self._outcome_of(job)
            host = _host(job.target)
            successor = None
            with self._lock:
                self._inflight -= 1
                waiting = self._waiting.get(host)
                if waiting:
                    # The slot of this host goes to its next job.
                    successor = waiting.popleft()
                    self._backlog -= 1
                    if not waiting:
                        del self._waiting[host]
                else:
                    left = self._per_host.pop(host, 1) - 1
                    if left > 0:
                        self._per_host[host] = left
            self._outcomes.put(outcome)
            job = successor

    def _outcome_of(self, job: Job) -> DeliveryOutcome:
        try:
            return self.deliver(job)
        except Exception as exc:
            LOG.exception(
                "delivery %s of alarm %s failed unexpectedly",
                job.id,
                job.message.alarm_id,
            )
            error = notifiers.Result(
                delivered=False,
                retryable=True,
                error=f"internal error: {exc!r}",
            )
            return self._final(job, [Attempt(timeutils.utcnow(), error)])

    def deliver(self, job: Job) -> DeliveryOutcome:
        """Make the attempts of one claimed delivery; return the outcome."""
        now = timeutils.utcnow()
        if self._stopping.is_set():
            return DeliveryOutcome(job, models.PENDING, [], now, release=True)
        message = job.message
        try:
            action = notifiers.parse_action(job.target)
        except notifiers.InvalidAction as exc:
            return self._dead(job, exc.message)
        plugin = self._plugin(action.scheme.lower())
        if plugin is None:
            return self._dead(
                job, f"Unsupported action {notifiers.redact(job.target)}"
            )
        attempts: list[Attempt] = []

        def attempt() -> notifiers.Result:
            started = timeutils.utcnow()
            try:
                result = plugin.notify(action, message)
            except Exception as exc:
                LOG.exception(
                    "notifier plugin %s failed for alarm %s",
                    action.scheme,
                    message.alarm_id,
                )
                result = notifiers.Result(
                    delivered=False,
                    retryable=True,
                    error=f"plugin error: {exc!r}",
                )
            attempts.append(Attempt(started, result))
            return result

        def stop(state: tenacity.RetryCallState) -> bool:
            if self._stopping.is_set():
                return True
            if state.attempt_number >= self.opts.inline_attempts:
                return True
            if job.attempts + state.attempt_number >= self.opts.max_attempts:
                return True
            sleep = state.upcoming_sleep
            if sleep > self.opts.inline_max_delay:
                return True
            return (
                timeutils.utcnow() + dt.timedelta(seconds=sleep)
                > job.dead_after
            )

        def sleep(seconds: float) -> None:
            if self._stopping.wait(seconds):
                raise _Stopping

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_result(_retryable),
            wait=self._backoff(job.attempts),
            stop=stop,
            sleep=sleep,
            retry_error_callback=lambda s: s.outcome and s.outcome.result(),
        )
        with contextlib.suppress(_Stopping):
            retrying(attempt)
        return self._final(job, attempts)

    def _backoff(self, offset: int = 0) -> Backoff:
        return Backoff(
            self.opts.retry_initial_delay,
            self.opts.retry_max_delay,
            self.opts.retry_jitter,
            self.opts.max_retry_after,
            offset,
        )

    def _final(self, job: Job, attempts: list[Attempt]) -> DeliveryOutcome:
        now = timeutils.utcnow()
        message = job.message
        if not attempts:
            return DeliveryOutcome(job, models.PENDING, [], now, release=True)
        last = attempts[-1].result
        if last.delivered:
            LOG.debug(
                "delivered %s (alarm %s seq %d) to %s",
                job.id,
                message.alarm_id,
                message.seq,
                notifiers.redact(job.target),
            )
            return DeliveryOutcome(job, models.DELIVERED, attempts, now)
        total = job.attempts + len(attempts)
        delay = self._backoff().delay(total, last)
        next_at = now + dt.timedelta(seconds=delay)
        if not last.retryable:
            reason = "not retryable"
        elif total >= self.opts.max_attempts:
            reason = f"{total} attempts"
        elif next_at > job.dead_after:
            reason = "too old"
        else:
            LOG.info(
                "delivery %s of alarm %s seq %d to %s failed (%s); "
                "retry in %.1fs",
                job.id,
                message.alarm_id,
                message.seq,
                notifiers.redact(job.target),
                last.error,
                delay,
            )
            return DeliveryOutcome(job, models.PENDING, attempts, next_at)
        LOG.warning(
            "delivery %s of alarm %s seq %d to %s dead-lettered (%s): %s",
            job.id,
            message.alarm_id,
            message.seq,
            notifiers.redact(job.target),
            reason,
            last.error,
        )
        return DeliveryOutcome(job, models.DEAD, attempts, now)

    def _dead(self, job: Job, error: str) -> DeliveryOutcome:
        result = notifiers.Result(delivered=False, error=error)
        return self._final(job, [Attempt(timeutils.utcnow(), result)])

    # -- recorder ---------------------------------------------------------

    def _record_loop(self) -> None:
        pending: list[DeliveryOutcome] = []
        done = False
        while not (done and not pending):
            if not pending:
                item = self._outcomes.get()
                if item is None:
                    done = True
                else:
                    pending.append(item)
            # Outcomes that finish within RECORD_GATHER of the first share
            # its transaction.
            deadline = time.monotonic() + RECORD_GATHER
            while len(pending) < 1000 and not done:
                wait = deadline - time.monotonic()
                try:
                    if wait > 0:
                        item = self._outcomes.get(timeout=wait)
                    else:
                        item = self._outcomes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done = True
                else:
                    pending.append(item)
            if not pending:
                continue
            try:
                self.record(pending)
            except Exception:
                LOG.exception(
                    "cannot record %d delivery outcomes; retrying",
                    len(pending),
                )
                if self._stopping.wait(0.5) and done:
                    # Give up on shutdown: the claims expire and the
                    # deliveries are made again.
                    break
                continue
            pending = []
            # Streams may be unblocked and workers free: claim again.
            self._wake.set()

    def record(self, outcomes: list[DeliveryOutcome]) -> None:
        """Write outcomes and attempts in one transaction.

        Outcomes that write the same values (typically: delivered at the
        first attempt, from one claim) share one ``UPDATE ... WHERE id IN
        (...) AND claim_token = ...`` instead of one statement each.
        """
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
        with self.rt.db.session() as session:
            if ended and self.rt.db.dialect == "postgresql":
                # Shared with other recorders, exclusive with expansions:
                # a delivery expanded as waiting behind one that ends now
                # is always seen by one side or the other.
                session.execute(
                    sa.text("SELECT pg_advisory_xact_lock_shared(:key)"),
                    {"key": _PG_LOCK_KEY},
                )
            for params in updates:
                session.execute(_RECORD, params)
            if attempt_rows:
                insert = ATTEMPT.insert()
                if self.rt.db.dialect == "postgresql":
                    # With RETURNING, the rows go as one multi-row INSERT
                    # per 1,000 ("insertmanyvalues") instead of one each.
                    insert = insert.returning(ATTEMPT.c.id)
                session.execute(insert, attempt_rows)
            if ended:
                promote(session, now, sorted(ended))
            session.commit()


_CLAIM_IDS = (
    sa.select(DELIVERY.c.id)
    .where(DELIVERY.c.status == models.PENDING)
    .order_by(DELIVERY.c.next_attempt_at)
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
        NOTIFICATION.c.alarm_name,
        NOTIFICATION.c.severity,
        NOTIFICATION.c.previous,
        NOTIFICATION.c.current,
        NOTIFICATION.c.reason,
        NOTIFICATION.c.reason_data,
        NOTIFICATION.c.project_id,
    )
    .select_from(
        DELIVERY.join(
            NOTIFICATION, NOTIFICATION.c.id == DELIVERY.c.notification_id
        )
    )
    .order_by(DELIVERY.c.next_attempt_at)
)
_CLAIM_JOINED = _CLAIM_COLUMNS.where(DELIVERY.c.status == models.PENDING)
_CLAIM_UPDATE = (
    DELIVERY.update()
    .where(DELIVERY.c.id.in_(sa.bindparam("b_ids", expanding=True)))
    .values(
        status=models.IN_FLIGHT,
        claimed_by=sa.bindparam("claimed_by"),
        claim_token=sa.bindparam("claim_token"),
        claim_expires_at=sa.bindparam(
            "claim_expires_at", type_=models.UTCDateTime()
        ),
        updated_at=sa.bindparam("updated_at", type_=models.UTCDateTime()),
    )
)
#: Writes the outcome of the deliveries of ``b_ids`` still claimed with
#: ``b_token`` (see :meth:`NotifierService.record`).
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
        claim_token=None,
        claim_expires_at=None,
    )
)


def _host(target: str) -> str:
    try:
        parts = urllib.parse.urlsplit(target)
    except ValueError:
        return ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


def _truncate(text: str | None, limit: int = 2000) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "..."


def _insert_ignore(table: sa.Table, dialect: str) -> Any:
    """An INSERT that skips rows whose primary key already exists."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing()
    return table.insert().prefix_with("IGNORE")


def promote(
    session: orm.Session,
    now: dt.datetime,
    streams: list[str] | None = None,
) -> int:
    """Make ``pending`` the waiting deliveries nothing holds back any more.

    Called with the streams whose delivery just ended, and without
    streams by the periodic sweep (which heals the rare case of a
    delivery expanded as ``waiting`` while the one before it ended).
    """
    earlier = DELIVERY.alias("earlier")
    query = sa.select(DELIVERY.c.id).where(
        DELIVERY.c.status == models.WAITING,
        ~sa.exists().where(
            earlier.c.stream == DELIVERY.c.stream,
            earlier.c.seq < DELIVERY.c.seq,
            earlier.c.status.in_(models.OPEN),
        ),
    )
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
        if session.get_bind().dialect.name in ("postgresql", "sqlite"):
            # One statement (MySQL cannot read the table it updates).
            result = session.execute(
                DELIVERY.update()
                .where(DELIVERY.c.id.in_(chunk_query.scalar_subquery()))
                .values(
                    status=models.PENDING, next_attempt_at=now, updated_at=now
                )
            )
            promoted += cast(sa.CursorResult[Any], result).rowcount
            continue
        ids = list(session.execute(chunk_query).scalars())
        if ids:
            session.execute(
                DELIVERY.update()
                .where(
                    DELIVERY.c.id.in_(ids),
                    DELIVERY.c.status == models.WAITING,
                )
                .values(
                    status=models.PENDING, next_attempt_at=now, updated_at=now
                )
            )
            promoted += len(ids)
    return promoted


def redeliver(rt: runtime_mod.Runtime, delivery_id: str) -> bool:
    """Put a dead-lettered delivery back in the queue.

    Its attempt count restarts at zero and it gets a new ``max_age``; its
    id (and so the ``webhook-id``) does not change.

    :returns: False when the delivery is not dead.
    """
    now = timeutils.utcnow()
    max_age = dt.timedelta(seconds=rt.conf.notifier.max_age)
    with rt.db.session() as session:
        # Wakes the notifier of this process up (see _install_hooks).
        session.info[_SESSION_FLAG] = True
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
                dead_after=now + max_age,
                updated_at=now,
            )
        )
        session.commit()
    changed = bool(cast(sa.CursorResult[Any], result).rowcount)
    if changed:
        LOG.info("delivery %s queued again for redelivery", delivery_id)
    return changed
