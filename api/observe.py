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
  with gauges read from the database at scrape time
  (:class:`DatabaseCollector`).  It needs no identity, as Prometheus
  scrapes without one; it shows counts only, never ids.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

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


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape.

    Delivery queue depth per status, dead letters, alarms per state.
    Each is one grouped count on an indexed column.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        #: Alarms per (state, enabled), kept under the time of the
        #: newest alarm change (one index step to check).
        self._alarms: tuple[str, list[tuple[str, bool, int]]] | None = None

    def describe(self) -> list[Any]:
        """Nothing is described ahead (the registry need not call collect)."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Count deliveries by status and alarms by state."""
        queue = GaugeMetricFamily(
            "alarmer_delivery_queue_depth",
            "Deliveries not final yet, by status (waiting, pending, "
            "in_flight).",
            labels=["status"],
        )
        dead = GaugeMetricFamily(
            "alarmer_dead_letters",
            "Dead-lettered deliveries kept in the database.",
        )
        alarms = GaugeMetricFamily(
            "alarmer_alarms",
            "Alarms by state and enabled flag.",
            labels=["state", "enabled"],
        )
        delivery = delivery_tables.Delivery
        try:
            with self.db.read_session() as session:
                # Index ranges of the open statuses and the dead ones,
                # never the delivered history.
                by_status = dict(
                    session.execute(
                        sa.select(delivery.status, sa.func.count())
                        .where(
                            delivery.status.in_(
                                [*delivery_tables.OPEN, delivery_tables.DEAD]
                            )
                        )
                        .group_by(delivery.status)
                    ).all()
                )
                changed = counters.last_change(session, None)
                if self._alarms is None or self._alarms[0] != changed:
                    rows = session.execute(
                        sa.select(
                            Alarm.state, Alarm.enabled, sa.func.count()
                        ).group_by(Alarm.state, Alarm.enabled)
                    ).all()
                    self._alarms = (
                        changed,
                        [(st, bool(en), int(n)) for st, en, n in rows],
                    )
                by_state = self._alarms[1]
        except Exception:
            LOG.warning("metrics: reading the database failed", exc_info=True)
            return
        for status in delivery_tables.OPEN:
            queue.add_metric([status], float(by_status.get(status, 0)))
        dead.add_metric([], float(by_status.get(delivery_tables.DEAD, 0)))
        counts = {
            (state, "true" if enabled else "false"): float(count)
            for state, enabled, count in by_state
        }
        for state in STATES:
            for enabled in ("true", "false"):
                counts.setdefault((state, enabled), 0.0)
        for (state, enabled), count in sorted(counts.items()):
            alarms.add_metric([state, enabled], count)
        yield queue
        yield dead
        yield alarms


def scrape() -> flask.Response:
    """``GET /metrics``: the Prometheus text exposition."""
    body = context.runtime().telemetry.render()
    return flask.Response(body, content_type=telemetry.CONTENT_TYPE)


def install(app: flask.Flask, rt: Runtime) -> None:
    """Add request ids, access log, counters and ``/metrics`` to *app*."""
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
    rt.telemetry.add("database", DatabaseCollector(rt.db))
    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])
