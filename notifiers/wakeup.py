"""How the dispatcher of a notifier learns that there is work.

:class:`Wakeup` is an explicit object, made by the service and handed to
whoever needs to wake it: code of the same process that commits outbox
rows calls :meth:`Wakeup.outbox_changed` after its commit, and the
watchers below call it for the commits of other connections:

* :class:`OutboxListener` (PostgreSQL): ``LISTEN alarmer_outbox``; a
  trigger on the outbox (migration ``n0001``) sends the ``NOTIFY``, so
  commits of every process wake every notifier at once;
* :class:`CommitProbe` (SQLite, MySQL/MariaDB): looks every
  :attr:`~alarmer.db.dialect.Dialect.probe_interval` for a new highest
  outbox id, and on SQLite only when ``PRAGMA data_version`` says that
  another connection committed;
* :class:`DatagramWatcher` (the processes of one host, where the
  database does not notify): an :class:`OutboxAnnouncer` in the process
  that commits outbox rows sends a datagram to every notifier process
  listening in ``<data_dir>/run/outbox`` (``alarmer serve`` with several
  processes wires both).

Whatever is missed (an id committed below the highest one, a watcher
that lost its connection) is found by the polling fallback: the
dispatcher looks at the outbox every ``[notifier] poll_interval`` when
nothing woke it.  No event listener is registered on the session
factory of the process.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from typing import Any, Protocol

import sqlalchemy as sa

from alarmer.alarms.tables import Notification
from alarmer.channel import DatagramBus, DatagramReceiver
from alarmer.db import Database
from alarmer.db import dialect as dialect_mod

LOG = logging.getLogger(__name__)

#: The channel the outbox trigger notifies (PostgreSQL).
OUTBOX_CHANNEL = "alarmer_outbox"

_MAX_OUTBOX_ID = sa.select(sa.func.max(Notification.__table__.c.id))


class Wakeup:
    """Wakes the dispatcher of one notifier; thread-safe.

    The dispatcher clears it (:meth:`clear`), works, then waits
    (:meth:`wait`); a wake-up in between makes the wait return at once.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        # The first turn of the dispatcher looks at the outbox.
        self._outbox = True

    def outbox_changed(self) -> None:
        """New outbox rows were committed: expand them, then claim."""
        with self._lock:
            self._outbox = True
        self._event.set()

    def poke(self) -> None:
        """Claim again (outcomes recorded, a delivery queued again...)."""
        self._event.set()

    def take_outbox(self) -> bool:
        """True once after :meth:`outbox_changed` (the flag is reset)."""
        with self._lock:
            changed, self._outbox = self._outbox, False
        return changed

    def clear(self) -> None:
        """Forget the wake-ups so far (not the outbox flag)."""
        self._event.clear()

    def wait(self, timeout: float) -> bool:
        """Wait for a wake-up, at most *timeout* seconds."""
        return self._event.wait(timeout)


class WakeSource(Protocol):
    """A watcher waking a :class:`Wakeup` for others' commits."""

    #: Set while the watcher looks (after it connected).
    ready: threading.Event

    def start(self) -> None:
        """Start watching (a daemon thread)."""

    def stop(self) -> None:
        """Stop watching and wait for the thread."""


class _Watcher(abc.ABC):
    """A daemon thread running :meth:`watch` until :meth:`stop`."""

    thread_name = "notifier-watch"

    def __init__(self, wakeup: Wakeup, retry_interval: float) -> None:
        self.wakeup = wakeup
        self.retry_interval = retry_interval
        #: Set while the watcher looks (after it connected).
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=self.thread_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.watch(self._stopping)
            except Exception:
                if self._stopping.is_set():
                    break  # the connection went with the shutdown
                LOG.exception("%s failed; retrying", self.thread_name)
                self.ready.clear()
                # The wake-ups missed meanwhile: look now.
                self.wakeup.outbox_changed()
                self._stopping.wait(self.retry_interval)

    @abc.abstractmethod
    def watch(self, stopping: threading.Event) -> None:
        """Watch until *stopping* is set; raise on a connection error."""


class OutboxListener(_Watcher):
    """``LISTEN`` for the outbox trigger's ``NOTIFY`` (PostgreSQL)."""

    thread_name = "notifier-listen"

    def __init__(
        self,
        url: str,
        wakeup: Wakeup,
        retry_interval: float,
        channel: str = OUTBOX_CHANNEL,
    ) -> None:
        super().__init__(wakeup, retry_interval)
        self.url = url
        self.channel = channel

    def watch(self, stopping: threading.Event) -> None:
        """Hold a ``LISTEN`` connection; wake up on each notification."""
        # Not a first-party module: psycopg is only installed with the
        # PostgreSQL extra.
        import psycopg

        url = sa.make_url(self.url).set(drivername="postgresql")
        with psycopg.connect(
            url.render_as_string(hide_password=False), autocommit=True
        ) as conn:
            conn.execute(f"LISTEN {self.channel}")
            self.ready.set()
            while not stopping.is_set():
                for _ in conn.notifies(timeout=0.5, stop_after=1):
                    self.wakeup.outbox_changed()


class CommitProbe(_Watcher):
    """Look for a new highest outbox id every *interval* seconds."""

    thread_name = "notifier-probe"

    def __init__(
        self,
        db: Database,
        sql: dialect_mod.Dialect,
        wakeup: Wakeup,
        interval: float,
        retry_interval: float,
    ) -> None:
        super().__init__(wakeup, retry_interval)
        self.db = db
        self.sql = sql
        self.interval = interval

    def watch(self, stopping: threading.Event) -> None:
        """Hold a connection; compare the highest outbox id."""
        engine = self.db.engine.execution_options(alarmer_readonly=True)
        with engine.connect() as conn:
            raw: Any = conn.connection
            counter = self.sql.commit_counter(raw)
            highest = self._highest(conn)
            self.ready.set()
            # A commit between the dispatcher's first look and the read
            # above raised no counter here: look once more now.
            self.wakeup.outbox_changed()
            while not stopping.is_set():
                # A plain sleep: half the CPU of an Event.wait, and stop()
                # waits one interval at most.
                time.sleep(self.interval)
                if counter is not None:
                    seen = self.sql.commit_counter(raw)
                    if seen == counter:
                        continue
                    counter = seen
                now = self._highest(conn)
                if now != highest:
                    highest = now
                    self.wakeup.outbox_changed()

    @staticmethod
    def _highest(conn: sa.Connection) -> int:
        try:
            return int(conn.execute(_MAX_OUTBOX_ID).scalar() or 0)
        finally:
            # A new snapshot for the next look (repeatable read).
            conn.rollback()


class DatagramWatcher:
    """Wake a :class:`Wakeup` on each datagram of an :class:`OutboxAnnouncer`.

    :meth:`start` binds the socket before it returns: a commit announced
    after that wakes this notifier.
    """

    name = "notifier-wakeup"

    def __init__(self, directory: str, wakeup: Wakeup) -> None:
        self.wakeup = wakeup
        #: Set once the socket is bound.
        self.ready = threading.Event()
        self._bus = DatagramBus(directory)
        self._receiver = DatagramReceiver(
            self._bus, self._on_message, "notifier-datagram"
        )

    def _on_message(self, _message: bytes) -> None:
        self.wakeup.outbox_changed()

    def start(self) -> None:
        """Bind the socket and start the receiving thread."""
        self._receiver.start()
        self.ready.set()

    def stop(self) -> None:
        """Stop the thread and remove the socket."""
        self.ready.clear()
        self._receiver.stop()
        self._bus.close()


class OutboxAnnouncer:
    """Tell the notifier processes of this host that outbox rows committed.

    Call it (it is the evaluator's ``on_outbox``) after each commit that
    wrote outbox rows; it sends one small datagram to every
    :class:`DatagramWatcher` of *directory*.
    """

    def __init__(self, directory: str) -> None:
        self._bus = DatagramBus(directory, send_timeout=0.2)

    def __call__(self) -> None:
        """Announce a commit; a failure is logged (the probe covers it)."""
        try:
            self._bus.send(b"outbox")
        except Exception as exc:
            LOG.warning("cannot announce an outbox commit: %s", exc)

    def close(self) -> None:
        """Close the sending socket."""
        self._bus.close()


def watchers_for(
    db: Database, wakeup: Wakeup, retry_interval: float
) -> list[WakeSource]:
    """The watchers of the backend of *db* for *wakeup*."""
    sql = dialect_mod.for_engine(db.engine)
    if sql.listens:
        return [OutboxListener(db.url, wakeup, retry_interval)]
    if sql.probe_interval is not None:
        return [
            CommitProbe(db, sql, wakeup, sql.probe_interval, retry_interval)
        ]
    return []
