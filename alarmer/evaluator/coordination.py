"""Sharing the alarms between evaluator workers with tooz.

Each worker process is one member of the group ``alarm_evaluator``
(joined with :meth:`join_partitioned_group`, ``[coordination]
partitions`` partitions of tooz's consistent hash ring); an alarm
belongs to the member the ring maps its id to, so exactly one live
worker owns it and a join or leave moves about 1/N of the alarms.

* Membership changes are seen only when the watchers are polled
  (:meth:`Membership.poll`, every ``check_interval``); the heart beats in
  tooz's own thread (``start(start_heart=True)``).
* Liveness: a member whose heart stopped for ``membership_timeout``
  seconds is dropped by the others (``?timeout=`` on the URL).  A worker
  that finds itself dropped (its process stalled, the backend restarted)
  rejoins by itself: a watchdog checks every ``watchdog_interval`` that
  it is still listed.
* **While the backend is unreachable** a worker keeps evaluating the
  share it owned in the last view it had (Aodh evaluates nothing), and
  retries with exponential backoff.  If workers' views disagree, two of
  them may evaluate one alarm for a while; the transition write is
  fenced by the alarm's version, so an alarm still changes state (and
  notifies) once per crossing.  A worker that starts while the backend
  is down owns nothing until it has joined.
* ``backend_url = none`` disables coordination: the worker owns every
  alarm (one worker only).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

from oslo_config import cfg
from tooz import coordination
from tooz import partitioner as tooz_partitioner

from alarmer import conf as aconf

LOG = logging.getLogger(__name__)

GROUP = b"alarm_evaluator"


def backend_url(conf: cfg.ConfigOpts) -> str:
    """The tooz URL to use, with ``?timeout=`` set.

    Empty ``backend_url``: ``file://<data_dir>/coordination``.
    """
    url = conf.coordination.backend_url
    if not url:
        path = os.path.join(aconf.data_dir(conf), "coordination")
        os.makedirs(path, exist_ok=True)
        url = "file://" + path
    if url == "none":
        return url
    query = urlsplit(url).query
    if "timeout=" not in query:
        sep = "&" if query else "?"
        url = f"{url}{sep}timeout={conf.coordination.membership_timeout}"
    return url


def new_member_id() -> bytes:
    """A member id unique to this process: host, pid and a random part."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}".encode()


class Membership:
    """This worker's membership in the evaluator group and its share.

    :meth:`owns` and :attr:`generation` may be called from any thread;
    :meth:`poll` from one thread only.
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        *,
        member_id: bytes | None = None,
        group: bytes = GROUP,
    ) -> None:
        self.url = backend_url(conf)
        self.member_id = member_id or new_member_id()
        self.group = group
        self._partitions = conf.coordination.partitions
        self._watchdog_interval = conf.coordination.watchdog_interval
        self._backoff_min = conf.coordination.retry_backoff
        self._backoff_max = conf.coordination.max_retry_interval
        self._backoff = self._backoff_min
        self._coord: coordination.CoordinationDriver | None = None
        self._partitioner: tooz_partitioner.Partitioner | None = None
        self._next_attempt = 0.0
        self._next_watchdog = 0.0
        self._connect_wait = float(conf.coordination.membership_timeout)
        self._connecting: threading.Thread | None = None
        self._stopped = False
        self._lock = threading.Lock()
        #: Grows whenever the set of members (hence the share) may change.
        self.generation = 0
        self.connected = False

    @property
    def solo(self) -> bool:
        """True when coordination is disabled."""
        return self.url == "none"

    def start(self) -> None:
        """Join the group (or schedule retries when unreachable)."""
        if self.solo:
            self.connected = True
            self.generation += 1
            return
        self._connect_in_background()
        thread = self._connecting
        if thread is not None:
            thread.join(self._connect_wait)

    def _connect_in_background(self) -> None:
        """Try to join without blocking the caller (redis-py may retry a
        refused connection for a long time)."""
        thread = self._connecting
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(
            target=self._connect, name="coordination-connect", daemon=True
        )
        self._connecting = thread
        thread.start()

    def _bump(self, event: object = None) -> None:
        """Note a possible change of the members (a tooz watcher)."""
        self.generation += 1

    def _connect(self) -> bool:
        coord = coordination.get_coordinator(self.url, self.member_id)
        try:
            coord.start(start_heart=True)
            try:
                partitioner = coord.join_partitioned_group(
                    self.group, partitions=self._partitions
                )
            except coordination.MemberAlreadyExist:
                # Back after an outage shorter than the membership
                # timeout (or a stall, with a driver that keeps expired
                # entries): our entry is still there; take it over.
                partitioner = self._take_over_entry(coord)
            coord.watch_join_group(self.group, self._bump)
            coord.watch_leave_group(self.group, self._bump)
        except Exception as exc:
            LOG.warning(
                "coordination backend %s unreachable (%s); retrying in "
                "%.1f s, keeping the last known share",
                _safe(self.url),
                exc,
                self._backoff,
            )
            _quiet_stop(coord)
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self._backoff_max)
            self.connected = False
            return False
        with self._lock:
            if self._stopped:
                stale = True
            else:
                stale = False
                self._coord = coord
                self._partitioner = partitioner
        if stale:
            _quiet_stop(coord)
            return False
        self._backoff = self._backoff_min
        self._next_watchdog = time.monotonic() + self._watchdog_interval
        self.connected = True
        self._bump()
        LOG.info(
            "joined evaluator group as %s (%d members)",
            self.member_id.decode(),
            len(self.members()),
        )
        return True

    def _take_over_entry(
        self, coord: coordination.CoordinationDriver
    ) -> tooz_partitioner.Partitioner:
        """Adopt the entry a previous connection of this member left.

        tooz refuses to join over an existing entry and then does not
        count the group as joined by *coord*: its heart would not refresh
        the entry (the file driver beats per joined group) and its
        ``stop()`` would not remove it.  Record the group as a successful
        join does (tooz has no public call for this), beat once so that
        an entry already expired is listed again, and build the
        partitioner over the current members.
        """
        coord._joined_groups.add(self.group)
        coord.heartbeat()
        return tooz_partitioner.Partitioner(
            coord, self.group, partitions=self._partitions
        )

    def _reconnect(self, reason: str) -> None:
        LOG.warning(
            "member %s: %s; rejoining the evaluator group",
            self.member_id.decode(),
            reason,
        )
        with self._lock:
            coord, partitioner = self._coord, self._partitioner
            self._coord = None
            # Keep the partitioner: its ring is the last known view, used
            # by owns() until the new membership is established.
        self.connected = False
        if coord is not None:
            try:
                if partitioner is not None:
                    partitioner.stop()
            except Exception:
                LOG.debug("stopping the old partitioner failed", exc_info=True)
            threading.Thread(
                target=_quiet_stop, args=(coord,), daemon=True
            ).start()
        self._next_attempt = 0.0
        self._connect_in_background()

    def poll(self) -> None:
        """Run the watchers and the watchdog; reconnect when needed."""
        if self.solo:
            return
        now = time.monotonic()
        coord = self._coord
        if coord is None:
            if now >= self._next_attempt:
                self._connect_in_background()
            return
        try:
            coord.run_watchers()
            if now >= self._next_watchdog:
                self._next_watchdog = now + self._watchdog_interval
                members = coord.get_members(self.group).get()
                if self.member_id not in members:
                    self._reconnect("dropped from the group")
        except Exception as exc:
            self._reconnect(f"coordination error ({exc})")

    def members(self) -> list[bytes]:
        """Members in this worker's current view, sorted."""
        if self.solo:
            return [self.member_id]
        partitioner = self._partitioner
        if partitioner is None:
            return []
        return sorted(partitioner.ring.nodes)

    def owns(self, key: str) -> bool:
        """True when the alarm *key* belongs to this worker."""
        if self.solo:
            return True
        partitioner = self._partitioner
        if partitioner is None:
            return False
        try:
            return partitioner.belongs_to_member(key, self.member_id)
        except Exception:
            # An empty ring (transiently, during a rejoin).
            return False

    def stop(self) -> None:
        """Leave the group cleanly and stop the heart."""
        if self.solo:
            return
        with self._lock:
            self._stopped = True
            coord, partitioner = self._coord, self._partitioner
            self._coord = None
            self._partitioner = None
        self.connected = False
        if coord is None:
            return
        try:
            if partitioner is not None:
                coord.leave_partitioned_group(partitioner)
        except Exception:
            LOG.debug("leaving the evaluator group failed", exc_info=True)
        _quiet_stop(coord)
        LOG.info("left evaluator group as %s", self.member_id.decode())


def _quiet_stop(
    coord: coordination.CoordinationDriver, wait: float = 5.0
) -> None:
    """Stop *coord*, waiting at most *wait* seconds.

    During a backend outage tooz's heart thread may be stuck retrying a
    connection, and ``stop()`` waits for it: never let that block the
    worker (the thread is a daemon and ends with the process).
    """

    def _stop() -> None:
        try:
            coord.stop()
        except Exception:
            LOG.debug("stopping the coordinator failed", exc_info=True)

    thread = threading.Thread(target=_stop, name="tooz-stop", daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        LOG.warning("coordinator did not stop within %.0f s", wait)


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***")
    return url
