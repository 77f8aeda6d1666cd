"""The "metric changed" channel between the metrics engine and evaluators.

When measures of a metric are stored, the API publishes the metric ids
here; evaluators subscribe and re-evaluate the alarms reading those
metrics at once.  Three channels implement the same verbs:

* :class:`LocalChannel`: in process (API and evaluator in one process);
* :class:`DatagramChannel`: across the processes of one host, over
  Unix-domain datagram sockets in a directory (what ``alarmer serve``
  uses when it runs several processes; no server needed);
* :class:`RedisChannel`: across processes and hosts, over Redis pub/sub;
* :class:`PostgresChannel`: across processes and hosts, over PostgreSQL
  ``LISTEN``/``NOTIFY`` (no Redis needed next to a PostgreSQL database).

:func:`make_channel` picks one from ``[evaluator] metric_channel``.

**Payload.**  :meth:`MetricChannel.publish` takes the metric ids, or a
mapping ``{metric id: newest timestamp}`` (nanoseconds since the epoch,
UTC, of the newest measure stored for the metric by that write; ``None``
when unknown).  A mapping is itself an iterable of ids, so every
publisher and subscriber written for plain ids keeps working.
Subscribers receive a :class:`MetricChanges`: a list of the ids whose
:attr:`~MetricChanges.newest` maps the ids that came with a timestamp.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis

from alarmer import conf as aconf

LOG = logging.getLogger(__name__)


class MetricChanges(list[str]):
    """The ids of one announcement, with their newest timestamps.

    A plain list of metric ids for subscribers that need only those;
    :attr:`newest` maps the ids announced with a timestamp to it
    (nanoseconds since the epoch, UTC).
    """

    def __init__(
        self,
        ids: Iterable[str] = (),
        newest: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(ids)
        #: Newest timestamp of the triggering data, per metric id.
        self.newest: dict[str, int] = dict(newest or {})

    @classmethod
    def of(cls, metric_ids: Iterable[str]) -> MetricChanges:
        """Read what a publisher gave: ids, or ``{id: timestamp}``."""
        if isinstance(metric_ids, MetricChanges):
            return metric_ids
        if isinstance(metric_ids, Mapping):
            newest = {
                str(k): int(v) for k, v in metric_ids.items() if v is not None
            }
            return cls(metric_ids.keys(), newest)
        return cls(metric_ids)

    def encode(self) -> str:
        """Wire form: comma-separated ``id`` or ``id@nanoseconds``."""
        newest = self.newest
        return ",".join(f"{i}@{newest[i]}" if i in newest else i for i in self)

    @classmethod
    def decode(cls, text: str) -> MetricChanges:
        """Parse :meth:`encode`'s form (plain ``a,b,c`` included)."""
        ids: list[str] = []
        newest: dict[str, int] = {}
        for item in text.split(","):
            if not item:
                continue
            metric_id, sep, stamp = item.partition("@")
            ids.append(metric_id)
            if sep:
                try:
                    newest[metric_id] = int(stamp)
                except ValueError:
                    LOG.debug("metric channel: bad timestamp %r", stamp)
        return cls(ids, newest)


Callback = Callable[[list[str]], None]


class MetricChannel(Protocol):
    """Announce and receive the ids of metrics that received measures."""

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Announce that these metrics received new measures.

        *metric_ids* may be a mapping ``{id: newest timestamp in ns}``
        (see the module documentation).
        """

    def subscribe(self, callback: Callback) -> None:
        """Call *callback* with each announced batch of metric ids.

        The batch is a :class:`MetricChanges`.  The callback runs on the
        publisher's or the channel's thread and must return quickly
        (queue the work).
        """

    def unsubscribe(self, callback: Callback) -> None:
        """Stop calling *callback*."""

    def close(self) -> None:
        """Release the channel's resources."""


def _deliver(callbacks: Iterable[Callback], changes: MetricChanges) -> None:
    for callback in callbacks:
        try:
            callback(changes)
        except Exception:
            LOG.exception("metric channel subscriber failed")


class LocalChannel:
    """In-process channel: subscribers are called on the publisher thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: tuple[Callback, ...] = ()

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Call every subscriber with the announced metric ids."""
        changes = MetricChanges.of(metric_ids)
        if changes:
            _deliver(self._callbacks, changes)

    def subscribe(self, callback: Callback) -> None:
        """Register *callback*."""
        with self._lock:
            self._callbacks = (*self._callbacks, callback)

    def unsubscribe(self, callback: Callback) -> None:
        """Unregister *callback* (no error when it was not registered)."""
        with self._lock:
            self._callbacks = tuple(
                c for c in self._callbacks if c is not callback
            )

    def close(self) -> None:
        """Drop every subscriber."""
        with self._lock:
            self._callbacks = ()


#: Largest datagram sent (Linux accepts about 200 KiB by default).
MAX_DATAGRAM = 60_000

#: How long a "metric changed" announcement waits for a receiver whose
#: queue is full (Linux queues 10 datagrams per socket by default): the
#: writing request waits rather than an evaluator missing the change.
METRIC_SEND_TIMEOUT = 10.0

#: How long after a directory's time stamp a listing of it is trusted.
_SETTLE_NS = 100_000_000

#: The longest ``sun_path`` that works everywhere (108 bytes on Linux,
#: terminating NUL included).
_MAX_SUN_PATH = 100


class DatagramBus:
    """Broadcast of small messages between the processes of one host.

    Each receiver binds a Unix-domain datagram socket in *directory*
    (``<pid>-<random>.sock``); :meth:`send` sends the message to every
    socket found there.  A socket nobody reads any more (its process
    died) refuses the datagram and is removed by the sender; the
    directory is listed again whenever it changed.  A message reaches
    the receivers bound before it was sent; a receiver whose queue stays
    full for *send_timeout* seconds misses it (logged).

    Paths longer than ``sun_path`` allows are reached through
    ``/proc/self/fd`` on Linux.
    """

    def __init__(self, directory: str, *, send_timeout: float = 1.0) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.send_timeout = send_timeout
        self._lock = threading.Lock()
        self._dir_fd: int | None = None
        self._sender: socket.socket | None = None
        self._peers: tuple[str, ...] = ()
        self._listed: int | None = None
        self._own: str | None = None

    # -- addresses ----------------------------------------------------------

    def _address(self, name: str) -> str:
        path = os.path.join(self.directory, name)
        if len(path.encode()) <= _MAX_SUN_PATH:
            return path
        with self._lock:
            if self._dir_fd is None:
                self._dir_fd = os.open(self.directory, os.O_RDONLY)
            fd = self._dir_fd
        return f"/proc/self/fd/{fd}/{name}"

    def _list(self) -> tuple[str, ...]:
        """The socket names of the directory, listed again on a change.

        A directory's time stamp moves in coarse ticks (milliseconds): a
        socket bound in the tick of the last listing would leave it
        unchanged, so a listing taken less than :data:`_SETTLE_NS` after
        that time stamp is not trusted.
        """
        try:
            stamp = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            os.makedirs(self.directory, exist_ok=True)
            stamp = None
        if stamp is None or stamp != self._listed:
            listed_at = time.time_ns()
            self._peers = tuple(
                sorted(
                    name
                    for name in os.listdir(self.directory)
                    if name.endswith(".sock")
                )
            )
            settled = stamp is not None and listed_at - stamp > _SETTLE_NS
            self._listed = stamp if settled else None
        return self._peers

    # -- sending ------------------------------------------------------------

    def send(self, message: bytes) -> int:
        """Send *message* to every receiver; return how many got it."""
        if len(message) > MAX_DATAGRAM:
            raise ValueError("datagram too large")
        with self._lock:
            sender = self._sender
            if sender is None:
                sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sender.settimeout(self.send_timeout)
                self._sender = sender
        sent = 0
        for name in self._list():
            if name == self._own:
                continue
            address = self._address(name)
            try:
                sender.sendto(message, address)
                sent += 1
            except (ConnectionRefusedError, FileNotFoundError):
                # Its process is gone: nobody will bind this path again.
                self._remove_stale(name)
            except TimeoutError:
                LOG.warning(
                    "%s: receiver %s is not reading; message dropped",
                    self.directory,
                    name,
                )
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    self._remove_stale(name)
                else:
                    LOG.warning(
                        "%s: cannot send to %s: %s", self.directory, name, exc
                    )
        return sent

    def _remove_stale(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.directory, name))
            LOG.info("%s: removed stale socket %s", self.directory, name)
        except FileNotFoundError:
            pass
        self._listed = None

    # -- receiving ----------------------------------------------------------

    def bind(self) -> socket.socket:
        """Bind this process's receiving socket (one per bus)."""
        name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self._address(name))
        except BaseException:
            sock.close()
            raise
        self._own = name
        return sock

    def unbind(self, sock: socket.socket) -> None:
        """Close the receiving socket and remove its path."""
        name, self._own = self._own, None
        sock.close()
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, name))

    def close(self) -> None:
        """Close the sending socket and the directory handle."""
        with self._lock:
            sender, self._sender = self._sender, None
            dir_fd, self._dir_fd = self._dir_fd, None
        if sender is not None:
            sender.close()
        if dir_fd is not None:
            os.close(dir_fd)


class DatagramReceiver:
    """A thread calling *handler* with each datagram a bus delivers."""

    def __init__(
        self, bus: DatagramBus, handler: Callable[[bytes], None], name: str
    ) -> None:
        self.bus = bus
        self.handler = handler
        self.name = name
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Bind the socket (messages sent from now on arrive), start."""
        self._stop.clear()
        self._sock = self.bus.bind()
        self._sock.settimeout(0.5)
        self._thread = threading.Thread(
            target=self._run, args=(self._sock,), name=self.name, daemon=True
        )
        self._thread.start()

    def _run(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                message = sock.recv(MAX_DATAGRAM + 1)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            try:
                self.handler(message)
            except Exception:
                LOG.exception("%s: handler failed", self.name)

    def stop(self) -> None:
        """Stop the thread and remove the socket."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        sock, self._sock = self._sock, None
        if sock is not None:
            self.bus.unbind(sock)


class DatagramChannel:
    """Cross-process channel on one host over a :class:`DatagramBus`.

    :meth:`publish` sends the encoded ids (in several datagrams when
    they do not fit in one) to every subscribed process; a process
    subscribes by binding its socket on its first :meth:`subscribe`, so
    every announcement published after that reaches it.  A subscriber
    that falls behind (its queue full) slows the publishers down for up
    to *send_timeout* seconds before an announcement to it is dropped:
    backpressure on the writes rather than a missed evaluation.
    """

    def __init__(
        self, directory: str, *, send_timeout: float = METRIC_SEND_TIMEOUT
    ) -> None:
        self.directory = directory
        self._bus = DatagramBus(directory, send_timeout=send_timeout)
        self._lock = threading.Lock()
        self._callbacks: tuple[Callback, ...] = ()
        self._receiver: DatagramReceiver | None = None

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Announce *metric_ids*; a failure is logged, not raised."""
        changes = MetricChanges.of(metric_ids)
        if not changes:
            return
        try:
            for chunk in _chunks(changes):
                self._bus.send(chunk.encode().encode())
        except Exception as exc:
            LOG.warning("metric channel: publish failed: %s", exc)

    def subscribe(self, callback: Callback) -> None:
        """Register *callback*; the socket is bound on first use."""
        with self._lock:
            self._callbacks = (*self._callbacks, callback)
            if self._receiver is None:
                self._receiver = DatagramReceiver(
                    self._bus, self._on_message, "metric-channel"
                )
                self._receiver.start()

    def _on_message(self, message: bytes) -> None:
        changes = MetricChanges.decode(message.decode())
        if changes:
            _deliver(self._callbacks, changes)

    def unsubscribe(self, callback: Callback) -> None:
        """Unregister *callback*."""
        with self._lock:
            self._callbacks = tuple(
                c for c in self._callbacks if c is not callback
            )

    def close(self) -> None:
        """Stop receiving, remove the socket, close the sender."""
        with self._lock:
            receiver, self._receiver = self._receiver, None
            self._callbacks = ()
        if receiver is not None:
            receiver.stop()
        self._bus.close()


def _chunks(
    changes: MetricChanges, limit: int = MAX_DATAGRAM
) -> Iterable[MetricChanges]:
    """Split *changes* so that each part encodes within *limit* bytes."""
    part: list[str] = []
    size = 0
    for metric_id in changes:
        item = len(metric_id) + 22
        if part and size + item > limit:
            yield MetricChanges(part, changes.newest)
            part, size = [], 0
        part.append(metric_id)
        size += item
    if part:
        yield MetricChanges(part, changes.newest)


class _Listener:
    """Callbacks and the listener thread of a server-backed channel.

    The thread runs :meth:`_messages` (connect, subscribe, then yield
    each announcement) and starts it again after a failure, waiting
    0.1 s, doubling up to 5 s; announcements made while it is
    disconnected are lost (the periodic evaluation covers them).
    """

    #: What a lost connection is called in the log.
    _source = "subscription"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: tuple[Callback, ...] = ()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._backoff = 0.1

    def subscribe(self, callback: Callback) -> None:
        """Register *callback*; the listener thread starts on first use."""
        with self._lock:
            self._callbacks = (*self._callbacks, callback)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._listen, name="metric-channel", daemon=True
                )
                self._thread.start()
        self._ready.wait(5)

    def unsubscribe(self, callback: Callback) -> None:
        """Unregister *callback*."""
        with self._lock:
            self._callbacks = tuple(
                c for c in self._callbacks if c is not callback
            )

    def _messages(self) -> Iterator[MetricChanges]:
        """Connect, subscribe, call :meth:`_connected`, yield messages.

        Returns once :attr:`_stop` is set; raises when the connection
        fails.
        """
        raise NotImplementedError

    def _connected(self) -> None:
        self._ready.set()
        self._backoff = 0.1

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                for changes in self._messages():
                    if changes:
                        _deliver(self._callbacks, changes)
            except Exception as exc:
                if self._stop.is_set():
                    break
                LOG.warning(
                    "metric channel: %s lost (%s); reconnecting in %.1f s",
                    self._source,
                    exc,
                    self._backoff,
                )
                self._stop.wait(self._backoff)
                self._backoff = min(self._backoff * 2, 5.0)

    def _stop_listening(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
            self._callbacks = ()
        if thread is not None:
            thread.join(timeout=5)


class RedisChannel(_Listener):
    """Cross-process, cross-host channel over Redis pub/sub.

    :meth:`publish` sends one ``PUBLISH`` of the encoded ids
    (:meth:`MetricChanges.encode`); subscribers receive them on a
    background thread that reconnects after a Redis failure
    (announcements made meanwhile are lost; the periodic evaluation
    covers them).  The callback must return quickly.
    """

    _source = "Redis subscription"

    def __init__(self, url: str, *, name: str = "alarmer:metrics") -> None:
        super().__init__()
        self.url = url
        self.name = name
        self._redis = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5
        )

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Announce *metric_ids*; a Redis failure is logged, not raised."""
        changes = MetricChanges.of(metric_ids)
        if not changes:
            return
        try:
            self._redis.publish(self.name, changes.encode())
        except Exception as exc:
            LOG.warning("metric channel: publish failed: %s", exc)

    def _messages(self) -> Iterator[MetricChanges]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.name)
            self._connected()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is None or message.get("type") != "message":
                    continue
                raw = message["data"]
                text = raw.decode() if isinstance(raw, bytes) else raw
                yield MetricChanges.decode(text)
        finally:
            try:
                pubsub.close()
            except Exception:
                LOG.debug("closing the subscription failed", exc_info=True)

    def close(self) -> None:
        """Stop the listener and close the connections."""
        self._stop_listening()
        self._redis.close()


#: Largest ``NOTIFY`` payload PostgreSQL accepts is 8000 bytes.
_MAX_NOTIFY = 7900


class PostgresChannel(_Listener):
    """Cross-process, cross-host channel over PostgreSQL ``LISTEN/NOTIFY``.

    :meth:`publish` sends ``pg_notify`` on one autocommit connection
    (several notifications when the ids do not fit in one payload);
    subscribers ``LISTEN`` on a background thread that reconnects after
    a failure (announcements made meanwhile are lost; the periodic
    evaluation covers them).  Needs the ``postgresql`` extra (psycopg).
    """

    _source = "PostgreSQL LISTEN"

    def __init__(self, url: str, *, name: str = "alarmer_metrics") -> None:
        # Not a first-party module: psycopg comes with the PostgreSQL
        # extra only.
        import sqlalchemy as sa

        super().__init__()
        parts = sa.make_url(url).set(drivername="postgresql")
        self.dsn = parts.render_as_string(hide_password=False)
        self.name = name
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Announce *metric_ids*; a failure is logged, not raised."""
        changes = MetricChanges.of(metric_ids)
        if not changes:
            return
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                for chunk in _chunks(changes, _MAX_NOTIFY):
                    self._conn.execute(
                        "SELECT pg_notify(%s, %s)", (self.name, chunk.encode())
                    )
            except Exception as exc:
                LOG.warning("metric channel: publish failed: %s", exc)
                conn, self._conn = self._conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()

    def _messages(self) -> Iterator[MetricChanges]:
        with self._connect() as conn:
            conn.execute(f'LISTEN "{self.name}"')
            self._connected()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.5):
                    yield MetricChanges.decode(note.payload)
                    if self._stop.is_set():
                        break

    def close(self) -> None:
        """Stop the listener and close the connections."""
        self._stop_listening()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def run_dir(conf: Any, *parts: str) -> str:
    """``<data_dir>/run/<parts>``: sockets and files of running processes.

    Created when missing.
    """
    path = os.path.join(aconf.data_dir(conf), "run", *parts)
    os.makedirs(path, exist_ok=True)
    return path


def channel_url(conf: Any) -> str:
    """The channel ``[evaluator] metric_channel`` designates.

    Empty: the Redis server of ``[coordination] backend_url`` when that is
    a ``redis://`` URL, else ``local``.
    """
    url = conf.evaluator.metric_channel
    if url:
        return str(url)
    backend = conf.coordination.backend_url or ""
    if backend.startswith(("redis://", "rediss://")):
        parts = urlsplit(backend)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return "local"


def make_channel(
    conf: Any, *, several_processes: bool = False
) -> MetricChannel:
    """Build the channel the configuration designates.

    :param several_processes: the caller is one of several processes of
        one host that must hear each other (``alarmer serve`` with more
        than one process): ``local`` then means :class:`DatagramChannel`
        in ``<data_dir>/run/metrics``.
    """
    url = channel_url(conf)
    if url == "local" and several_processes:
        url = "datagram"
    if url == "local":
        return LocalChannel()
    if url == "datagram":
        return DatagramChannel(run_dir(conf, "metrics"))
    if url.startswith("datagram://"):
        parts = urlsplit(url)
        path = parts.path
        if parts.netloc or not path.startswith("/"):
            raise ValueError(
                "[evaluator] metric_channel: datagram:// needs an absolute "
                f"directory (datagram:///path), got {url!r}"
            )
        return DatagramChannel(path)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisChannel(url)
    if url.startswith(("postgresql://", "postgresql+")):
        return PostgresChannel(url)
    raise ValueError(
        f"[evaluator] metric_channel: unsupported channel {url!r} "
        "(use 'local', 'datagram', a datagram:///directory URL, a "
        "redis:// URL or a postgresql:// URL)"
    )
