"""alarmer's own metrics, in the Prometheus model.

One :class:`Telemetry` is built per process (the
:class:`~alarmer.runtime.Runtime` carries it) and holds every metric
object; the services record into it and ``GET /metrics`` renders it.

Two modes, chosen when the object is built:

* **one process** (the default): the metrics live in a
  :class:`~prometheus_client.CollectorRegistry` of their own, so two
  runtimes in one interpreter (tests) never share a counter;
* **several processes**: when ``PROMETHEUS_MULTIPROC_DIR`` names a
  directory (the supervisor of ``alarmer serve`` exports it to its
  children), prometheus-client writes every value to a file of that
  directory and :meth:`Telemetry.render` merges the files of every
  process at scrape time.

Labels are bounded: alarm types, states, outcomes, URL schemes and
route templates, never an alarm, metric or resource id.  Values that
live in the database (queue depth, dead letters, alarms per state) are
read at scrape time by a collector the API adds (:meth:`Telemetry.add`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client import multiprocess as mp
from prometheus_client.registry import Collector

LOG = logging.getLogger(__name__)

#: The environment variable naming the directory shared by the
#: processes of one installation.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Content type of :meth:`Telemetry.render`.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Outcomes of one evaluation.
UNCHANGED = "unchanged"
TRANSITION = "transition"
REPEAT = "repeat"
FROZEN = "skipped"
ERROR = "error"
CONFLICT = "conflict"
#: What started an evaluation.
EVENT = "event"
PERIODIC = "periodic"

_FAST = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_LAG = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_DELIVERY = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def _writes_files() -> bool:
    """True when new metric values are written to the shared directory."""
    return getattr(values.ValueClass, "__name__", "") == "MmapedValue"


def multiprocess_dir() -> str | None:
    """The shared directory of a multi-process installation, if any."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


class Telemetry:
    """The metric objects of one process.

    :param multiprocess: record into ``PROMETHEUS_MULTIPROC_DIR`` and
        render every process's values; by default, when the variable
        names a directory.
    """

    def __init__(self, multiprocess: bool | None = None) -> None:
        if multiprocess is None:
            multiprocess = multiprocess_dir() is not None
        self.multiprocess = multiprocess
        if multiprocess and not _writes_files():
            # prometheus-client chooses where values live when it is
            # imported; a supervisor that exported the directory after
            # importing it (alarmer's modules are loaded before the
            # children fork) switches it here, as its import would have.
            values.ValueClass = values.MultiProcessValue()
        #: The registry of this process's metrics (one-process mode); in
        #: multi-process mode the metrics are in files, and this registry
        #: holds only the collectors added by :meth:`add`.
        self.registry = CollectorRegistry(auto_describe=True)
        self._extra: dict[str, Collector] = {}
        reg = None if multiprocess else self.registry

        def counter(
            name: str, doc: str, labels: Iterable[str] = ()
        ) -> Counter:
            return Counter(name, doc, list(labels), registry=reg)

        def histogram(
            name: str,
            doc: str,
            buckets: tuple[float, ...],
            labels: Iterable[str] = (),
        ) -> Histogram:
            return Histogram(
                name, doc, list(labels), registry=reg, buckets=buckets
            )

        def gauge(
            name: str, doc: str, mode: str, labels: Iterable[str] = ()
        ) -> Gauge:
            return Gauge(
                name,
                doc,
                list(labels),
                registry=reg,
                multiprocess_mode=mode,  # type: ignore[arg-type]
            )

        # -- evaluator ------------------------------------------------------
        self.evaluations = counter(
            "alarmer_evaluations",
            "Alarm evaluations by alarm type, outcome and trigger "
            "(event: new measures; periodic: the schedule).",
            ("type", "outcome", "trigger"),
        )
        self.evaluation_seconds = histogram(
            "alarmer_evaluation_duration_seconds",
            "Time to evaluate one alarm (read, decide, commit).",
            _FAST,
            ("type",),
        )
        self.schedule_lag = histogram(
            "alarmer_evaluation_schedule_lag_seconds",
            "Delay between an alarm's slot and its periodic evaluation.",
            _LAG,
        )
        self.transitions = counter(
            "alarmer_alarm_transitions",
            "State transitions committed, by new state.",
            ("state",),
        )
        self.owned_alarms = gauge(
            "alarmer_evaluator_owned_alarms",
            "Alarms owned by the evaluators (summed over processes).",
            "livesum",
        )
        self.members = gauge(
            "alarmer_coordination_members",
            "Evaluators in the coordination group, as an evaluator sees it.",
            "livemax",
        )
        self.cache_entries = gauge(
            "alarmer_series_cache_entries",
            "Metrics held in the evaluators' bucket cache.",
            "livesum",
        )
        self.cache_requests = counter(
            "alarmer_series_cache_requests",
            "Bucket cache look-ups by result (hit or miss).",
            ("result",),
        )
        # -- notifier -------------------------------------------------------
        self.deliveries = counter(
            "alarmer_deliveries",
            "Delivery outcomes: delivered, retry (to be tried again), "
            "dead (dead-lettered).",
            ("outcome",),
        )
        self.delivery_seconds = histogram(
            "alarmer_delivery_attempt_duration_seconds",
            "Time of one delivery attempt, by URL scheme.",
            _DELIVERY,
            ("scheme",),
        )
        self.retention_removed = counter(
            "alarmer_retention_removed_rows",
            "Rows removed by retention passes (the notifier's and "
            "'alarmer expire'), by kind: history, delivered, dead_letters "
            "(expired or purged), attempts, notifications, silences.",
            ("kind",),
        )
        self.retention_passes = counter(
            "alarmer_retention_passes",
            "Retention passes completed.",
        )
        # -- ingest ---------------------------------------------------------
        self.measures_stored = counter(
            "alarmer_measures_ingested",
            "Measures stored into the series.",
        )
        self.measures_refused = counter(
            "alarmer_measures_refused",
            "Measures refused (older than the archive policy's back "
            "window accepts).",
        )
        # -- API ------------------------------------------------------------
        self.requests = counter(
            "alarmer_api_requests",
            "API requests by method, route template and status code.",
            ("method", "route", "status"),
        )
        self.request_seconds = histogram(
            "alarmer_api_request_duration_seconds",
            "API request latency by method and route template.",
            _FAST,
            ("method", "route"),
        )
        # Delta bookkeeping for :meth:`cache_seen` (this process only).
        self._cache_seen = (0, 0)
        #: Labelled children already looked up (see :meth:`_child`).
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    # -- recording ----------------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """The child of *metric* for *labels*, looked up once.

        ``labels()`` costs several microseconds per call; the children
        are kept (their number is bounded by the label values).
        """
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def evaluated(
        self, alarm_type: str, outcome: str, event: bool, seconds: float
    ) -> None:
        """Count one evaluation of an alarm of *alarm_type*."""
        trigger = EVENT if event else PERIODIC
        self._child(self.evaluations, alarm_type, outcome, trigger).inc()
        self._child(self.evaluation_seconds, alarm_type).observe(seconds)

    def transitioned(self, state: str) -> None:
        """Count one committed transition to *state*."""
        self._child(self.transitions, state).inc()

    def cache_seen(self, hits: int, misses: int, entries: int) -> None:
        """Record the bucket cache's running totals (deltas are counted)."""
        old_hits, old_misses = self._cache_seen
        if hits > old_hits:
            self._child(self.cache_requests, "hit").inc(hits - old_hits)
        if misses > old_misses:
            self._child(self.cache_requests, "miss").inc(misses - old_misses)
        self._cache_seen = (hits, misses)
        self.cache_entries.set(entries)

    def delivered(self, outcome: str) -> None:
        """Count one delivery outcome (delivered, retry, dead)."""
        self._child(self.deliveries, outcome).inc()

    def attempt(self, scheme: str, seconds: float) -> None:
        """Observe the duration of one delivery attempt."""
        self._child(self.delivery_seconds, scheme).observe(seconds)

    def retention_pass(self, removed: Mapping[str, int]) -> None:
        """Count one retention pass and the rows it removed, per kind.

        Every kind is counted, zeros too, so that each series exists
        from the first pass on.
        """
        self.retention_passes.inc()
        for kind, count in removed.items():
            self._child(self.retention_removed, kind).inc(count)

    def ingested(self, stored: int, refused: int) -> None:
        """Count measures stored and refused by one write."""
        if stored:
            self.measures_stored.inc(stored)
        if refused:
            self.measures_refused.inc(refused)

    def request(
        self, method: str, route: str, status: int, seconds: float
    ) -> None:
        """Count one API request and observe its latency."""
        self._child(self.requests, method, route, str(status)).inc()
        self._child(self.request_seconds, method, route).observe(seconds)

    # -- exposition ---------------------------------------------------------

    def add(self, key: str, collector: Collector) -> None:
        """Add a collector read at each scrape (e.g. database gauges).

        A second collector under the same *key* is ignored (several
        applications may be built on one runtime).
        """
        if key in self._extra:
            return
        self._extra[key] = collector
        self.registry.register(collector)

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        scrape = CollectorRegistry(auto_describe=False)
        mp.MultiProcessCollector(scrape)
        for collector in self._extra.values():
            scrape.register(collector)
        return generate_latest(scrape)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's value as rendered (0 when absent); for tests."""
        from prometheus_client.parser import text_string_to_metric_families

        wanted = labels or {}
        for family in text_string_to_metric_families(self.render().decode()):
            for s in family.samples:
                if s.name == name and all(
                    s.labels.get(k) == v for k, v in wanted.items()
                ):
                    return float(s.value)
        return 0.0


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of an ended process (multi-process mode)."""
    path = multiprocess_dir()
    if path is not None:
        mp.mark_process_dead(pid, path)
