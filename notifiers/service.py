"""The notifier service: outbox rows in, webhooks out, at least once.

It wires the parts of :mod:`notifiers` together.  One dispatcher thread
per process loops:

1. when woken for the outbox (:class:`~notifiers.wakeup.Wakeup`) or
   every ``poll_interval``, :meth:`DeliveryQueue.expand_claiming
   <notifiers.queue.DeliveryQueue.expand_claiming>` as many new outbox
   rows as the in-memory queues can take, claiming the new deliveries
   at once (the rest of a wave waits in the outbox for room);
2. when deliveries may have been left pending (retries, releases, more
   than the room) and every ``poll_interval``, :meth:`DeliveryQueue.claim
   <notifiers.queue.DeliveryQueue.claim>` due deliveries, as many as the
   in-memory queues can take;
3. hand them to the :class:`~notifiers.dispatch.WorkerPool`, at most
   ``max_inflight_per_host`` at a time per host (the others of that host
   wait in memory, or go back to the database when too many), so that a
   slow or dead endpoint never stalls the others.

A worker makes the attempts of a job (:class:`~notifiers.deliver.Deliverer`,
under the :class:`~notifiers.retry.RetryPolicy`): a few in a row while
the backoff is short, after which the delivery is put back with
``next_attempt_at`` (no thread or lock is held while waiting).  Outcomes
and attempts are written in batches by a recorder thread, which claims
in the same transaction the deliveries that waited for the ones that
ended (as far as there is room); a crash between
claim and record only means the delivery is claimed again after
``claim_timeout``, with the same delivery id, or at once when the
next notifier of the crashed one's slot starts (:mod:`notifiers.owner`).

The dispatcher wakes up when told through :attr:`NotifierService.wakeup`
(handed to the code of this process that commits outbox rows), when a
watcher sees a commit of another connection (PostgreSQL ``NOTIFY``, or a
probe of the outbox on the other backends), after each recorded batch,
and every ``poll_interval``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping

from alarmer import runtime as runtime_mod
from alarmer import timeutils
from notifiers import deliver, retention, signing, tables
from notifiers import owner as owner_mod
from notifiers.dispatch import WorkerPool
from notifiers.jobs import DeliveryOutcome, Job
from notifiers.queue import DeliveryQueue
from notifiers.retry import RetryPolicy
from notifiers.wakeup import WakeSource, Wakeup, watchers_for

LOG = logging.getLogger(__name__)

#: Seconds a delivery to a saturated host is put back for.
DEFER = 0.2
#: Seconds the recorder waits for more outcomes to write them together.
RECORD_GATHER = 0.003
#: Most outcomes written in one transaction.
RECORD_BATCH = 1000
#: Claimed deliveries held in memory (running or queued), per worker.
#: The bigger this window, the bigger the batches a wave is expanded,
#: claimed and recorded in (each batch is a transaction).
CLAIMED_PER_WORKER = 16
#: Most deliveries queued in memory behind one host's running ones, per
#: worker: half of the window, so that a slow or dead host never holds
#: all of it.  A host gets that many only when it is fast enough to
#: take them within a fraction of ``claim_timeout`` (see HostSlots).
WAITING_PER_WORKER = CLAIMED_PER_WORKER // 2
#: The share of ``claim_timeout`` a delivery may wait in memory.
WAIT_SHARE = 0.25


class NotifierService:
    """Deliver the outbox of the database of *rt*; see the module doc."""

    name = "notifier"

    def __init__(
        self,
        rt: runtime_mod.Runtime,
        worker_id: str | None = None,
        plugins: Mapping[str, deliver.PluginFactory] | None = None,
    ) -> None:
        """*plugins* replace the installed plugins (by scheme) if given."""
        self.rt = rt
        self.conf = rt.conf
        self.opts = rt.conf.notifier
        self.worker_id = worker_id or (
            f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        #: Wakes the dispatcher: hand it to the code of this process
        #: that commits outbox rows.
        self.wakeup = Wakeup()
        self.queue = DeliveryQueue(
            rt.db, self.opts, self.worker_id, self.secrets_for
        )
        self._stopping = threading.Event()
        self.deliverer = deliver.Deliverer(
            rt.conf,
            RetryPolicy.from_conf(self.opts),
            self._stopping,
            plugins,
            telemetry=rt.telemetry,
        )
        self.pool = WorkerPool(
            self.opts.workers,
            self.opts.max_inflight_per_host,
            self.deliverer.outcome_of,
            self._outcome,
            max_waiting=2 * self.opts.workers,
            wait_budget=WAIT_SHARE * self.opts.claim_timeout,
            max_queue=WAITING_PER_WORKER * self.opts.workers,
        )
        self._outcomes: queue.SimpleQueue[DeliveryOutcome | None] = (
            queue.SimpleQueue()
        )
        self._next_expand = 0.0
        # Outbox rows wait for the next turn, or for room (see _expand).
        self._expand_due = False
        #: Deliveries may have been left pending: claim at the next turn
        #: (else at the next poll).  Set by any thread, cleared by the
        #: dispatcher before it claims.
        self._claim_hint = True
        self._next_claim = 0.0
        # Room reserved by claims under way (see _room).
        self._room_lock = threading.Condition()
        self._reserved = 0
        self._watchers: list[WakeSource] = []
        self._dispatcher: threading.Thread | None = None
        self._recorder: threading.Thread | None = None
        self._slot: owner_mod.Slot | None = None
        self._retention: threading.Thread | None = None
        #: Rows removed by this service's retention passes so far.
        self.removed = retention.Removed()

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher, the workers, the recorder, the watchers.

        First the notifier takes its slot and queues again the in-flight
        claims the previous process of that slot left behind.
        """
        self._stopping.clear()
        if self._slot is None:
            self._slot = owner_mod.take_slot(self.conf)
        self.queue.owner = self._slot.owner if self._slot else None
        try:
            self.queue.reclaim()
        except Exception:
            # The sweep requeues them when their claims expire.
            LOG.exception("notifier %s: cannot reclaim", self.worker_id)
        self.pool.start()
        self._recorder = self._thread("notifier-recorder", self._record_loop)
        self._dispatcher = self._thread(
            "notifier-dispatcher", self._dispatch_loop
        )
        self._watchers = watchers_for(
            self.rt.db, self.wakeup, self.opts.poll_interval
        )
        for watcher in self._watchers:
            watcher.start()
        if self.opts.expire_interval > 0:
            self._retention = self._thread(
                "notifier-retention", self._retention_loop
            )
        LOG.info(
            "notifier %s started (owner %s)", self.worker_id, self.queue.owner
        )

    def stop(self) -> None:
        """Stop claiming, finish or release running jobs, record, stop."""
        self._stopping.set()
        self.wakeup.poke()
        for watcher in self._watchers:
            watcher.stop()
        self._watchers = []
        if self._dispatcher is not None:
            self._dispatcher.join()
            self._dispatcher = None
        if self._retention is not None:
            self._retention.join()
            self._retention = None
        with self._room_lock:
            # The recorder's claim under way (if any) submits its jobs
            # before the pool stops: they are given back by the workers.
            self._room_lock.wait_for(lambda: self._reserved == 0, 60.0)
        self.pool.stop()
        self._outcomes.put(None)
        if self._recorder is not None:
            self._recorder.join()
            self._recorder = None
        self.deliverer.close()
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        LOG.info("notifier %s stopped", self.worker_id)

    @property
    def watchers(self) -> list[WakeSource]:
        """The running watchers of other connections' commits."""
        return list(self._watchers)

    @staticmethod
    def _thread(name: str, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def secrets_for(self, alarm_id: str, project_id: str) -> tuple[str, ...]:
        """Return the signing secrets of an alarm (may be empty)."""
        per_alarm = self.opts.alarm_secrets or {}
        value = per_alarm.get(alarm_id) or per_alarm.get(project_id)
        return signing.split_secrets(value or self.opts.webhook_secret)

    # -- retention --------------------------------------------------------

    def _retention_loop(self) -> None:
        """Run a retention pass every ``expire_interval`` seconds."""
        while not self._stopping.wait(self.opts.expire_interval):
            self.expire_once()

    def expire_once(self) -> retention.Removed:
        """One retention pass in small batches (see :mod:`.retention`)."""
        try:
            removed = retention.expire(
                self.rt.db,
                retention.Ages.from_conf(self.conf),
                batch_size=self.opts.expire_batch_size,
                stop=self._stopping.is_set,
            )
        except Exception:
            LOG.exception("notifier %s: retention pass failed", self.worker_id)
            return retention.Removed()
        self.removed.add(removed)
        self.rt.telemetry.retention_pass(removed.counts())
        return removed

    # -- dispatcher -------------------------------------------------------

    def _dispatch_loop(self) -> None:
        opts = self.opts
        while not self._stopping.is_set():
            self.wakeup.clear()
            busy = False
            try:
                now = time.monotonic()
                # The flag is taken first: a wake-up during the expansion
                # sets it again, and the next turn expands again.
                outbox = self.wakeup.take_outbox()
                if outbox or self._expand_due or now >= self._next_expand:
                    busy = self._expand(now)
                # Another process may have queued deliveries again.
                self._claim_hint = self._claim_hint or outbox
                if self._claim_hint or now >= self._next_claim:
                    busy = self._claim(now) or busy
            except Exception:
                LOG.exception("notifier %s: dispatch failed", self.worker_id)
                busy = False
            if not busy:
                self.wakeup.wait(opts.poll_interval)

    def _claim(self, now: float) -> bool:
        """Claim due deliveries, as many as there is room for.

        Claims run when something may have left deliveries pending (see
        :attr:`_claim_hint`) and every ``poll_interval`` (retries that
        came due, other notifiers' releases): a claim that finds nothing
        is a write transaction for nothing.

        :returns: whether more may be due.
        """
        opts = self.opts
        # Claim in chunks (at least one worker's worth per worker) rather
        # than one delivery per completed one: each claim is a write
        # transaction.
        with self._room(opts.workers) as (limit, capped):
            if limit == 0:
                return False
            # Cleared first: a hint given during the claim is kept.
            self._claim_hint = False
            self._next_claim = now + opts.poll_interval
            jobs = self.queue.claim(limit)
            self._submit_all(jobs)
        full = len(jobs) == limit
        if full:
            self._claim_hint = True
        # When the queues are full, the next claim waits for a wake-up
        # (a recorded batch) instead of looping.
        return full and not capped

    def _expand(self, now: float) -> bool:
        """Expand as many outbox rows as there is room to claim.

        With less room than a worker's worth per worker (while some jobs
        run) the expansion waits for recorded batches, which wake the
        dispatcher: a wave is then expanded in batches of that size at
        least, not a few rows per transaction.

        :returns: whether more outbox rows may be waiting.
        """
        opts = self.opts
        with self._room(opts.workers) as (limit, _capped):
            if limit == 0 and not self._stopping.is_set():
                self._expand_due = True
                return False
            self._expand_due = False
            self._next_expand = now + opts.poll_interval
            expanded, jobs, left = self.queue.expand_claiming(limit)
            self._submit_all(jobs)
        if left:
            self._claim_hint = True
        if expanded >= min(limit or opts.batch_size, opts.batch_size):
            # More rows may wait: expand again at the next turn.
            self._expand_due = True
            return True
        return False

    @contextlib.contextmanager
    def _room(self, least: int = 1) -> Iterator[tuple[int, bool]]:
        """Reserve room for claims in the in-memory queues.

        Yields ``(limit, capped)``: how many deliveries may be claimed
        (0 when fewer than *least* would fit, unless nothing runs), and
        whether the queues rather than the batch size set the limit.
        The room is reserved until the block ends (its jobs submitted),
        so that the dispatcher and the recorder, which both claim, do
        not both take the same room.
        """
        opts = self.opts
        with self._room_lock:
            inflight, backlog = self.pool.load()
            inflight += self._reserved
            backlog += self._reserved
            free = CLAIMED_PER_WORKER * opts.workers - inflight
            limit = 0
            capped = False
            if self._stopping.is_set():
                pass  # nothing more is claimed
            elif free >= least or inflight == 0:
                # No more than the in-memory queues can take (the rest
                # would be claimed only to be put back), but always a
                # host's worth, so that other hosts are still served
                # while one is busy.
                limit = max(0, min(free, opts.batch_size))
                room = max(
                    opts.max_inflight_per_host,
                    WAITING_PER_WORKER * opts.workers - backlog,
                )
                capped = room < limit
                limit = min(limit, room)
            self._reserved += limit
        try:
            yield limit, capped
        finally:
            with self._room_lock:
                self._reserved -= limit
                self._room_lock.notify_all()

    def _submit_all(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._submit(job)

    def _submit(self, job: Job) -> None:
        """Run *job*, or queue it behind its host's running deliveries.

        At most ``max_inflight_per_host`` deliveries run per host and
        up to ``WAITING_PER_WORKER * workers`` wait in memory, as many as
        the host takes in a share of ``claim_timeout`` (claims go up to
        ``CLAIMED_PER_WORKER * workers``);
        further ones go back to the database for a moment, so that a slow
        or dead host never holds every worker nor every claim.
        """
        if not self.pool.submit(job):
            later = timeutils.utcnow() + dt.timedelta(seconds=DEFER)
            self._outcome(deliver.release(job, later))

    def _outcome(self, outcome: DeliveryOutcome) -> None:
        self._outcomes.put(outcome)

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
            while len(pending) < RECORD_BATCH and not done:
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
                # The deliveries that waited for these are claimed in
                # the same transaction, as far as there is room.
                with self._room() as (limit, _capped):
                    jobs, promoted = self.queue.record(pending, limit)
                    self._submit_all(jobs)
                if promoted or any(
                    o.status == tables.PENDING for o in pending
                ):
                    # Waiting deliveries made pending, or retries.
                    self._claim_hint = True
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
            self.wakeup.poke()
