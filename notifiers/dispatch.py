"""Per-host concurrency limits and the pool of delivery workers.

At most ``max_inflight_per_host`` jobs run at a time per host
(``scheme://host:port``); the next jobs of a busy host wait in memory
(up to ``max_waiting`` per host) and take the slot of the job that ends,
so that a slow or dead endpoint holds its own slots only, never every
worker.  A job that finds its host's queue full is refused: the caller
gives it back to the database for a moment.

:class:`HostSlots` is the bookkeeping alone (no thread); :class:`WorkerPool`
runs jobs on threads with it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import enum
import logging
import threading
import time
from collections.abc import Callable

from notifiers.jobs import DeliveryOutcome, Job

LOG = logging.getLogger(__name__)


class Admission(enum.Enum):
    """What :meth:`HostSlots.admit` decided for a job."""

    #: A slot of its host is free: run it now.
    RUN = "run"
    #: Queued behind its host's running jobs.
    QUEUED = "queued"
    #: Its host's queue is full: give it back.
    REFUSED = "refused"


class HostSlots:
    """Slots per host and the queues of the jobs waiting for one.

    Thread-safe.  :attr:`inflight` counts the running and the queued jobs
    (the jobs this process holds); :attr:`backlog` the queued ones.

    A host's queue holds ``max_waiting`` jobs; with a *wait_budget*
    (seconds), it holds as many as the host gets through in that time at
    its measured pace (the mean time of its last jobs), between
    ``per_host`` and *max_queue*: a fast host's queue is long (a wave is
    claimed in big batches), a slow one's short (no claim waits in
    memory until it expires).
    """

    def __init__(
        self,
        per_host: int,
        max_waiting: int,
        *,
        wait_budget: float | None = None,
        max_queue: int | None = None,
    ) -> None:
        self.per_host = per_host
        self.max_waiting = max_waiting
        self.wait_budget = wait_budget
        self.max_queue = max_waiting if max_queue is None else max_queue
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[Job]] = {}
        self._pace: dict[str, float] = {}
        self._inflight = 0
        self._backlog = 0

    def queue_limit(self, host: str) -> int:
        """How many jobs of *host* may wait in memory."""
        pace = self._pace.get(host)
        if self.wait_budget is None or pace is None:
            return self.max_waiting
        fits = int(self.per_host * self.wait_budget / max(pace, 1e-4))
        return max(self.per_host, min(self.max_queue, fits))

    def admit(self, job: Job) -> Admission:
        """Take a slot of *job*'s host, or queue it, or refuse it."""
        host = job.host
        with self._lock:
            running = self._running.get(host, 0)
            if running < self.per_host:
                self._running[host] = running + 1
                self._inflight += 1
                return Admission.RUN
            waiting = self._waiting.setdefault(host, collections.deque())
            if len(waiting) < self.queue_limit(host):
                waiting.append(job)
                self._inflight += 1
                self._backlog += 1
                return Admission.QUEUED
            return Admission.REFUSED

    def finish(self, job: Job, seconds: float | None = None) -> Job | None:
        """*job* ended (it ran *seconds*): return the queued job that
        takes its slot, if any."""
        host = job.host
        with self._lock:
            if seconds is not None:
                pace = self._pace.get(host)
                self._pace[host] = (
                    seconds if pace is None else 0.8 * pace + 0.2 * seconds
                )
            self._inflight -= 1
            waiting = self._waiting.get(host)
            if waiting:
                successor = waiting.popleft()
                self._backlog -= 1
                if not waiting:
                    del self._waiting[host]
                return successor
            left = self._running.pop(host, 1) - 1
            if left > 0:
                self._running[host] = left
            return None

    def load(self) -> tuple[int, int]:
        """Return ``(inflight, backlog)`` read together."""
        with self._lock:
            return self._inflight, self._backlog

    @property
    def inflight(self) -> int:
        """Jobs running or queued in memory."""
        return self.load()[0]

    @property
    def backlog(self) -> int:
        """Jobs queued in memory behind their host."""
        return self.load()[1]


class WorkerPool:
    """Run jobs on *workers* threads, within the per-host limits.

    :param work: makes the attempts of a job (runs on a worker thread).
    :param done: receives each outcome (on the worker thread).
    :param max_waiting: jobs queued per busy host (default
        ``2 * workers``); see :class:`HostSlots` for *wait_budget* and
        *max_queue*.
    """

    def __init__(
        self,
        workers: int,
        per_host: int,
        work: Callable[[Job], DeliveryOutcome],
        done: Callable[[DeliveryOutcome], None],
        max_waiting: int | None = None,
        *,
        wait_budget: float | None = None,
        max_queue: int | None = None,
    ) -> None:
        self.workers = workers
        self.slots = HostSlots(
            per_host,
            2 * workers if max_waiting is None else max_waiting,
            wait_budget=wait_budget,
            max_queue=max_queue,
        )
        self._work = work
        self._done = done
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker threads."""
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers,
            thread_name_prefix="notifier-worker",
        )

    def stop(self) -> None:
        """Wait for the running and queued jobs, then stop the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def submit(self, job: Job) -> bool:
        """Run or queue *job*; False when its host's queue is full."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("the worker pool is not started")
        admission = self.slots.admit(job)
        if admission is Admission.RUN:
            executor.submit(self._run, job)
        return admission is not Admission.REFUSED

    def load(self) -> tuple[int, int]:
        """Return ``(inflight, backlog)``; see :class:`HostSlots`."""
        return self.slots.load()

    def _run(self, job: Job | None) -> None:
        """Deliver *job*, then the jobs queued behind it for its host."""
        while job is not None:
            started = time.monotonic()
            outcome = self._work(job)
            successor = self.slots.finish(job, time.monotonic() - started)
            self._done(outcome)
            job = successor
