"""How the API is watched: request ids, one log line per request, metrics.

:func:`install` adds to an application:

* a **request id** per request, ``req-<uuid4>`` as OpenStack services
  make them: a well-formed ``X-Openstack-Request-Id`` sent by the caller
  is kept, anything else is replaced; the id is answered in the same
  header and carried by every log record emitted while the request is
  served (:data:`alarmer.logformat.REQUEST_ID`);
* **one log line per request** on the ``alarmer.api.access`` logger
  (method, path, status, duration, caller's project), at ``INFO``;
* the **counters** of :class:`alarmer.telemetry.Telemetry` (requests by
  route template and status, latency);
* ``GET /metrics``: every metric of the process (or of every process
  sharing ``PROMETHEUS_MULTIPROC_DIR``) in the Prometheus text format,
  with gauges read from the database by :class:`DatabaseCollector`
  (in the background: a scrape never waits for a count).  It needs no
  identity, as Prometheus scrapes without one; it shows counts only,
  never ids.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import flask
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from alarmer import telemetry
from alarmer.alarms import counters
from alarmer.alarms.model import STATES
from alarmer.alarms.tables import Alarm
from alarmer.db import Database
from alarmer.logformat import REQUEST_ID
from alarmer.runtime import Runtime
from api import context
from notifiers import tables as delivery_tables

LOG = logging.getLogger(__name__)
ACCESS = logging.getLogger("alarmer.api.access")

HEADER = "X-Openstack-Request-Id"
_WELL_FORMED = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
#: Route label of requests that matched no route (bounded cardinality).
UNMATCHED = "unmatched"
#: A reading of the database gauges counts the alarms again when its
#: count is older than this (seconds), even if no change was seen.
RECOUNT_SECONDS = 300.0


def new_request_id() -> str:
    """A fresh OpenStack-style request id."""
    return f"req-{uuid.uuid4()}"


def request_id_of(value: str | None) -> str:
    """The caller's request id if well-formed, else a new one."""
    if value and _WELL_FORMED.match(value.strip().lower()):
        return value.strip().lower()
    return new_request_id()


def _before() -> None:
    flask.g.started = time.perf_counter()
    rid = request_id_of(flask.request.headers.get(HEADER))
    flask.g.request_id = rid
    flask.g.request_id_token = REQUEST_ID.set(rid)


def _route() -> str:
    rule = flask.request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def _after(response: flask.Response) -> flask.Response:
    rid = flask.g.get("request_id")
    if rid is None:  # a failure before _before ran
        rid = new_request_id()
    response.headers[HEADER] = rid
    started = flask.g.get("started")
    seconds = time.perf_counter() - started if started else 0.0
    request = flask.request
    route = _route()
    context.runtime().telemetry.request(
        request.method, route, response.status_code, seconds
    )
    who = flask.g.get("identity")
    ACCESS.info(
        "%s %s %s %d %.1fms project=%s",
        request.remote_addr or "-",
        request.method,
        request.full_path.rstrip("?"),
        response.status_code,
        seconds * 1000,
        getattr(who, "project_id", None) or "-",
        extra={"request_id": rid},
    )
    return response


def _teardown(_exc: BaseException | None) -> None:
    token = flask.g.pop("request_id_token", None)
    if token is not None:
        REQUEST_ID.reset(token)


class _Reading(NamedTuple):
    """One reading of the database gauges."""

    #: Deliveries by status (the open ones and the dead letters).
    by_status: dict[str, int]
    #: Alarms by (state, enabled).
    by_state: list[tuple[str, bool, int]]
    #: The newest alarm change when the alarms were counted.
    changed: str
    #: When the reading started (:func:`time.monotonic`).
    read: float
    #: When the alarms were last counted (:func:`time.monotonic`).
    counted: float


class DatabaseCollector(Collector):
    """Gauges read from the database, never inside a scrape.

    Delivery queue depth per status, dead letters, alarms per state and
    enabled flag.  Counting 100,000 alarms costs tens of milliseconds,
    more than a scrape may take, so a scrape answers with the last
    reading (stale-while-revalidate): when that reading is older than
    *max_age* seconds, the scrape answers with the old values and a new
    reading starts in a thread of this process once the answer is sent
    (:meth:`revalidate`).  One reading runs at a time; only the very
    first scrape of the process waits for one.
    ``alarmer_database_gauges_age_seconds`` tells how old the values
    served are, so a reading that is slow or failing (a locked table, a
    database away) shows as a growing age instead of a slow or empty
    scrape.

    A reading counts the deliveries (an index range of the open and dead
    statuses) and the newest alarm change (one index step); it counts
    the alarms again only when that moved, or when the count is older
    than :data:`RECOUNT_SECONDS` (a change committed after a later one
    carries an older time and would not move it).

    Counts kept up to date by the writers instead (a counts row, or
    triggers) were not chosen: one shared row would serialize every
    evaluator transaction that changes a state, and group commits that
    change many alarms could deadlock on it; a count that drifted would
    stay wrong.

    The thread is stopped by :meth:`close` (the runtime closes the
    telemetry, which closes its collectors); a forked child forgets the
    parent's thread and locks.

    :param db: the database.
    :param max_age: seconds; a scrape finding an older reading starts
        the next (``[api] metrics_count_max_age``, looked up at each
        scrape).
    """

    def __init__(self, db: Database, max_age: Callable[[], float]) -> None:
        self.db = db
        self.max_age = max_age
        self._reading: _Reading | None = None
        self._lock = threading.Lock()
        #: Held by the scrape making the first reading.
        self._first = threading.Lock()
        #: The thread reading in the background, if one runs.
        self._worker: threading.Thread | None = None
        self._closed = False
        #: Whether a scrape found the reading too old.
        self._due = False
        telemetry.forget_after_fork(self)

    def describe(self) -> list[Any]:
        """Nothing is described ahead (the registry need not call collect)."""
        return []

    def _read(self, previous: _Reading | None) -> _Reading:
        """Read the gauges, counting alarms only if they changed."""
        started = time.monotonic()
        delivery = delivery_tables.Delivery
        with self.db.read_session() as session:
            # Index ranges of the open statuses and the dead ones, never
            # the delivered history.
            by_status = {
                status: int(n)
                for status, n in session.execute(
                    sa.select(delivery.status, sa.func.count())
                    .where(
                        delivery.status.in_(
                            [*delivery_tables.OPEN, delivery_tables.DEAD]
                        )
                    )
                    .group_by(delivery.status)
                ).all()
            }
            # The change is read before the count: a change between the
            # two is counted and moves the next reading's token.
            changed = counters.last_change(session, None)
            if (
                previous is not None
                and previous.changed == changed
                and started - previous.counted < RECOUNT_SECONDS
            ):
                return _Reading(
                    by_status,
                    previous.by_state,
                    changed,
                    started,
                    previous.counted,
                )
            rows = session.execute(
                sa.select(
                    Alarm.state, Alarm.enabled, sa.func.count()
                ).group_by(Alarm.state, Alarm.enabled)
            ).all()
        by_state = [(st, bool(en), int(n)) for st, en, n in rows]
        return _Reading(by_status, by_state, changed, started, started)

    def refresh(self) -> None:
        """Read the gauges now (what the background thread runs)."""
        try:
            self._reading = self._read(self._reading)
        except Exception:
            LOG.warning("metrics: reading the database failed", exc_info=True)

    def _background(self) -> None:
        try:
            self.refresh()
        finally:
            with self._lock:
                self._worker = None

    def revalidate(self) -> None:
        """Start the background reading a scrape found due, unless one
        runs.

        :func:`scrape` calls it once its answer is sent, so that the
        reading does not compete with the answer for the interpreter.
        """
        with self._lock:
            if not self._due or self._worker is not None or self._closed:
                return
            self._worker = threading.Thread(
                target=self._background, name="metrics-count", daemon=True
            )
            self._worker.start()
            self._due = False

    def close(self, timeout: float = 5.0) -> None:
        """Start no more readings; wait for the one running, if any."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def _forget(self) -> None:
        """In a forked child: the parent's thread does not run here."""
        self._lock = threading.Lock()
        self._first = threading.Lock()
        self._worker = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The last reading's gauges; a new reading if it is too old."""
        reading = self._reading
        if reading is None:
            with self._first:
                if self._reading is None:
                    self.refresh()
                reading = self._reading
            if reading is None:
                return
        elif time.monotonic() - reading.read >= self.max_age():
            self._due = True
        age = GaugeMetricFamily(
            "alarmer_database_gauges_age_seconds",
            "Age of the values of alarmer_alarms, "
            "alarmer_delivery_queue_depth and alarmer_dead_letters: "
            "seconds since this API process read them from the database.",
        )
        age.add_metric([], max(0.0, time.monotonic() - reading.read))
        queue = GaugeMetricFamily(
            "alarmer_delivery_queue_depth",
            "Deliveries not final yet, by status (waiting, pending, "
            "in_flight).",
            labels=["status"],
        )
        for status in delivery_tables.OPEN:
            queue.add_metric([status], float(reading.by_status.get(status, 0)))
        dead = GaugeMetricFamily(
            "alarmer_dead_letters",
            "Dead-lettered deliveries kept in the database.",
        )
        dead.add_metric(
            [], float(reading.by_status.get(delivery_tables.DEAD, 0))
        )
        alarms = GaugeMetricFamily(
            "alarmer_alarms",
            "Alarms by state and enabled flag.",
            labels=["state", "enabled"],
        )
        counts = {
            (state, "true" if enabled else "false"): float(count)
            for state, enabled, count in reading.by_state
        }
        for state in STATES:
            for enabled in ("true", "false"):
                counts.setdefault((state, enabled), 0.0)
        for (state, enabled), count in sorted(counts.items()):
            alarms.add_metric([state, enabled], count)
        yield age
        yield queue
        yield dead
        yield alarms


#: Key of the application's :class:`DatabaseCollector` in its extensions.
COLLECTOR = "alarmer.observe.database"


def scrape() -> flask.Response:
    """``GET /metrics``: the Prometheus text exposition.

    A reading of the database gauges that the scrape found due starts
    once the answer is sent.
    """
    body = context.runtime().telemetry.render()
    response = flask.Response(body, content_type=telemetry.CONTENT_TYPE)
    response.call_on_close(flask.current_app.extensions[COLLECTOR].revalidate)
    return response


def install(app: flask.Flask, rt: Runtime) -> None:
    """Add request ids, access log, counters and ``/metrics`` to *app*."""
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
    app.extensions[COLLECTOR] = rt.telemetry.add(
        "database",
        DatabaseCollector(rt.db, lambda: rt.conf.api.metrics_count_max_age),
    )
    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])
