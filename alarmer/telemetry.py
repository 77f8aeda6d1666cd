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
read by a collector the API adds (:meth:`Telemetry.add`), closed with
the telemetry (:meth:`Telemetry.close`).

Recording is cheap: a counter increment or a histogram observation is
one append to the array of values its label set holds in this process
(appending is atomic: no lock, and nothing is allocated);
a flushing thread takes those values every :data:`FLUSH_SECONDS`, sums
them per label set (a histogram's per bucket, counted in one vectorised
pass) and writes the sums to the metric objects (and, with several
processes, to their files); :meth:`Telemetry.render` flushes first.
The metric objects' own calls cost several microseconds each (a lock
per value, a file write per value with several processes), paid once
per label set and bucket per flush instead of once per evaluation or
delivery.  :meth:`Telemetry.close` writes what is left and stops the
thread.

With several processes, :meth:`Telemetry.render` reads the files with
:class:`FileExposition` (prometheus-client's merge, without decoding
every key, summing value by value and formatting every line again at
each scrape).
"""

from __future__ import annotations

import array
import collections
import functools
import itertools
import json
import logging
import math
import mmap
import operator
import os
import struct
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
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
from prometheus_client.utils import floatToGoString

LOG = logging.getLogger(__name__)

#: The environment variable naming the directory shared by the
#: processes of one installation.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Content type of :meth:`Telemetry.render`.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Longest delay before a tally reaches the metric objects (seconds).
FLUSH_SECONDS = 1.0
#: Empty flushing rounds after which the flushing thread ends.
IDLE_FLUSHES = 5

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


_C = TypeVar("_C", bound=Collector)

if TYPE_CHECKING:
    _Values = array.array[float]
else:  # not subscriptable at run time before Python 3.12
    _Values = array.array


class Tallies(dict[tuple[str, ...], _Values]):
    """What one metric recorded in this process and did not write yet:
    per label values, an array of amounts (a counter) or of observed
    values (a histogram), as C doubles.

    Recording is ``tallies[labels].append(value)``: an array's append is
    atomic, and a label set seen for the first time gets its array from
    :meth:`dict.setdefault` (atomic too), so threads record without a
    lock.  Only :meth:`Telemetry.flush` (one at a time) takes values out,
    from the front of an array: an append made meanwhile is left for the
    next flush, never lost.  Nothing is allocated per value (no object
    for the collector to track), and a flush reads the values in place
    (:func:`numpy.frombuffer`).

    :param metric: the prometheus-client metric the values go to.
    :param bounds: a histogram's upper bounds (``+Inf`` last), ``None``
        for a counter.
    """

    __slots__ = ("bounds", "metric")

    def __init__(
        self, metric: Any, bounds: tuple[float, ...] | None = None
    ) -> None:
        super().__init__()
        self.metric = metric
        self.bounds = bounds

    def __missing__(self, labels: tuple[str, ...]) -> array.array[float]:
        return self.setdefault(labels, array.array("d"))


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
        #: The tallies of every metric recorded through :meth:`flush`.
        self._all: list[Tallies] = []
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
        ) -> TalliedHistogram:
            return TalliedHistogram(
                self,
                Histogram(
                    name, doc, list(labels), registry=reg, buckets=buckets
                ),
                buckets,
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
            "Time of one delivery attempt, as its plugin measured it, "
            "by URL scheme.",
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
        #: What each counter recorded and did not write yet (the
        #: histograms' own are made with them, :class:`TalliedHistogram`).
        self._evaluations = self._tallied(self.evaluations)
        self._transitions = self._tallied(self.transitions)
        self._cache_requests = self._tallied(self.cache_requests)
        self._deliveries = self._tallied(self.deliveries)
        self._measures_stored = self._tallied(self.measures_stored)
        self._measures_refused = self._tallied(self.measures_refused)
        self._requests = self._tallied(self.requests)
        self._evaluation_seconds = self.evaluation_seconds.tallies
        self._attempt_seconds = self.delivery_seconds.tallies
        #: The duration of each delivery of one attempt, per (outcome,
        #: scheme): both its count and its attempt's observation.
        self._once = Tallies(None)
        #: Whether a flushing thread runs (or, closed, may not start).
        self._armed = False
        #: Whether a recorder was handed out (:meth:`delivery_recorder`):
        #: the flushing thread then runs until :meth:`close`.
        self._pinned = False
        self._closed = False
        #: Set to end the flushing thread (:meth:`close`).
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Reads the shared directory (multi-process mode), made once.
        self._files: FileExposition | None = None
        self._lock = threading.Lock()
        #: Held by :meth:`flush`: one flush takes values out at a time.
        self._flush_lock = threading.Lock()
        # A forked child must not write what its parent recorded.  The
        # hook cannot be unregistered: it holds this object weakly, and
        # :meth:`close` empties it.
        self._after_fork = forget_after_fork(self)

    # -- recording ----------------------------------------------------------

    def _tallied(
        self, metric: Any, bounds: tuple[float, ...] | None = None
    ) -> Tallies:
        """The tallies of *metric*, flushed by :meth:`flush`."""
        tallies = Tallies(metric, bounds)
        self._all.append(tallies)
        return tallies

    def _child(self, metric: Any, *labels: str) -> Any:
        """The child of *metric* for *labels*, looked up once.

        ``labels()`` costs several microseconds per call; the children
        are kept (their number is bounded by the label values).
        """
        if not labels:
            return metric
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def _arm(self) -> None:
        """Start the flushing thread unless it runs (or this is closed)."""
        with self._lock:
            if self._armed:
                return
            self._armed = True
            self._thread = threading.Thread(
                target=self._flushing, name="telemetry-flush", daemon=False
            )
            self._thread.start()

    def _flushing(self) -> None:
        """Flush every :data:`FLUSH_SECONDS` while there is something to.

        The thread ends after :data:`IDLE_FLUSHES` empty rounds (unless
        a recorder was handed out), when :meth:`close` is called, or once
        the main thread ended (after a last flush: nothing recorded is
        lost when the process exits normally).
        """
        main = threading.main_thread()
        stop = self._stop
        idle = 0
        while (idle < IDLE_FLUSHES or self._pinned) and main.is_alive():
            if stop.wait(FLUSH_SECONDS):
                break
            if self.flush():
                idle = 0
            else:
                idle += 1
        with self._lock:
            if not self._closed:
                self._armed = False
        # What was recorded while the thread decided to end.
        self.flush()

    def _forget(self) -> None:
        """Drop what a parent process recorded (its to write).

        The arrays are emptied in place: the recorders handed out keep
        recording into them, and their flushing thread is started again.
        """
        for tallies in (*self._all, self._once):
            for pending in tallies.values():
                del pending[:]
        self._armed = False
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        if self._pinned:
            self._arm()

    def close(self) -> None:
        """Write what was recorded and end the flushing thread.

        No flushing thread starts again for this object, nor for its
        copy in a forked child (values recorded after this are written
        by :meth:`flush` or :meth:`render` only).  The added collectors
        that can be are closed too (their threads end).
        """
        for collector in self._extra.values():
            closing = getattr(collector, "close", None)
            if closing is not None:
                closing()
        with self._lock:
            self._closed = True
            self._armed = True  # never started again
            thread = self._thread
        self._after_fork.clear()
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.flush()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def flush(self) -> int:
        """Write the recordings to the metric objects (and their files).

        Amounts are summed per label set, observations counted per
        bucket: one write per label set and bucket, however many were
        recorded.  Returns the number of values written.
        """
        written = 0
        with self._flush_lock:
            # Deliveries of one attempt: a count and an observation each.
            bounds = self.delivery_seconds.bounds
            for (outcome, scheme), values in list(self._once.items()):
                chunk = _take(values)
                if chunk:
                    written += len(chunk)
                    self._child(self.deliveries, outcome).inc(len(chunk))
                    child = self._child(self.delivery_seconds.metric, scheme)
                    _observe_all(child, bounds, chunk)
            for tallies in self._all:
                for labels, values in list(tallies.items()):
                    chunk = _take(values)
                    if not chunk:
                        continue
                    written += len(chunk)
                    child = self._child(tallies.metric, *labels)
                    if tallies.bounds is None:
                        child.inc(float(np.frombuffer(chunk).sum()))
                    else:
                        _observe_all(child, tallies.bounds, chunk)
        return written

    def evaluated(
        self, alarm_type: str, outcome: str, event: bool, seconds: float
    ) -> None:
        """Count one evaluation of an alarm of *alarm_type*."""
        self._evaluations[
            (alarm_type, outcome, EVENT if event else PERIODIC)
        ].append(1)
        self._evaluation_seconds[(alarm_type,)].append(seconds)
        if not self._armed:
            self._arm()

    def evaluated_many(
        self, evaluations: Iterable[tuple[str, str, bool]], seconds: float
    ) -> None:
        """Count evaluations that took *seconds* each (those of one tick).

        :param evaluations: (alarm type, outcome, event) of each.
        """
        counted: dict[tuple[str, str, bool], int] = {}
        for key in evaluations:
            counted[key] = counted.get(key, 0) + 1
        per_type: dict[str, int] = {}
        for (alarm_type, outcome, event), n in counted.items():
            self._evaluations[
                (alarm_type, outcome, EVENT if event else PERIODIC)
            ].append(n)
            per_type[alarm_type] = per_type.get(alarm_type, 0) + n
        observed = self._evaluation_seconds
        for alarm_type, n in per_type.items():
            observed[(alarm_type,)].extend(itertools.repeat(seconds, n))
        if not self._armed:
            self._arm()

    def transitioned(self, state: str) -> None:
        """Count one committed transition to *state*."""
        self._transitions[(state,)].append(1)
        if not self._armed:
            self._arm()

    def cache_seen(self, hits: int, misses: int, entries: int) -> None:
        """Record the bucket cache's running totals (deltas are counted)."""
        old_hits, old_misses = self._cache_seen
        if hits > old_hits:
            self._cache_requests[("hit",)].append(hits - old_hits)
        if misses > old_misses:
            self._cache_requests[("miss",)].append(misses - old_misses)
        self._cache_seen = (hits, misses)
        self.cache_entries.set(entries)
        if not self._armed:
            self._arm()

    def delivered(self, outcome: str) -> None:
        """Count one delivery outcome (delivered, retry, dead)."""
        self._deliveries[(outcome,)].append(1)
        if not self._armed:
            self._arm()

    def attempt(self, scheme: str, seconds: float) -> None:
        """Observe the duration of one delivery attempt."""
        self.delivery_seconds.observe(seconds, scheme)

    def delivery(
        self, outcome: str, scheme: str, attempts: Sequence[float]
    ) -> None:
        """:meth:`delivered` and :meth:`attempt` for each of *attempts*
        (durations in seconds) of one delivery, in one recording."""
        if len(attempts) == 1:
            self._once[(outcome, scheme)].append(attempts[0])
        else:
            self._deliveries[(outcome,)].append(1)
            self._attempt_seconds[(scheme,)].extend(attempts)
        if not self._armed:
            self._arm()

    def delivery_recorder(
        self, outcome: str, scheme: str
    ) -> Callable[[float], None]:
        """What records one delivery to *scheme* ending with *outcome*,
        made in one attempt (the usual delivery), given that attempt's
        duration in seconds: :meth:`delivery` as one C call.

        The flushing thread runs from then on until :meth:`close`
        (the recorder does not look whether it runs).
        """
        record = self._once[(outcome, scheme)].append
        with self._lock:
            self._pinned = True
        if not self._armed:
            self._arm()
        return record

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
            self._measures_stored[()].append(stored)
        if refused:
            self._measures_refused[()].append(refused)
        if not self._armed:
            self._arm()

    def request(
        self, method: str, route: str, status: int, seconds: float
    ) -> None:
        """Count one API request and observe its latency."""
        self._requests[(method, route, str(status))].append(1)
        self.request_seconds.tallies[(method, route)].append(seconds)
        if not self._armed:
            self._arm()

    # -- exposition ---------------------------------------------------------

    def add(self, key: str, collector: _C) -> _C:
        """Add a collector read at each scrape (e.g. database gauges).

        A second collector under the same *key* is ignored (several
        applications may be built on one runtime).

        :returns: the collector registered under *key*.
        """
        found = self._extra.get(key)
        if found is not None:
            return found  # type: ignore[return-value]
        self._extra[key] = collector
        self.registry.register(collector)
        return collector

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        self.flush()
        if not self.multiprocess:
            return generate_latest(self.registry)
        path = multiprocess_dir()
        if path is None:
            raise ValueError(f"{MULTIPROC_ENV} does not name a directory")
        if self._files is None or self._files.path != path:
            self._files = FileExposition(path)
        # The database gauges (the only collectors of the registry).
        return self._files.render() + generate_latest(self.registry)

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


#: The gauge modes combined by a maximum or a minimum.
_TOPS = {"livemax": "max", "max": "max", "livemin": "min", "min": "min"}

#: The aggregation of each gauge mode across processes (the modes
#: alarmer's gauges use and their non-live forms).
_GAUGE_MODES: dict[str, Callable[[float, float], float]] = {
    "livesum": operator.add,
    "sum": operator.add,
    "livemax": max,
    "max": max,
    "livemin": min,
    "min": min,
}


def _label_text(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        '{}="{}"'.format(
            k, v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        )
        for k, v in labels
    )
    return "{" + inner + "}"


#: The decoding of one key of a file: (family, sample name, labels
#: without ``le``, bucket bound or ``None``, help).
_Key = tuple[str, str, tuple[tuple[str, str], ...], float | None, str]

_INT = struct.Struct("i").unpack_from


class _File:
    """What is known of one metric file: the entries read so far.

    A file only grows: prometheus-client appends a key when a new
    series appears and writes values in place, so the entries below
    :attr:`used` keep their key and place.
    """

    __slots__ = ("index", "keys", "used")

    def __init__(self) -> None:
        #: Bytes of the file read into :attr:`keys` (8: the header).
        self.used = 8
        #: The keys of the entries, in file order.
        self.keys: list[str] = []
        #: Where each entry's value is, in doubles from the file's start.
        self.index = np.zeros(0, dtype=np.intp)

    def grow(self, data: bytes, used: int) -> None:
        """Read the entries between :attr:`used` and *used*."""
        pos = self.used
        positions = []
        while pos < used:
            length = _INT(data, pos)[0]
            if length + pos > used:
                raise RuntimeError("metric file is corrupted")
            pos += 4
            self.keys.append(data[pos : pos + length].decode("utf-8"))
            pos += length + (8 - (length + 4) % 8)
            positions.append(pos // 8)
            pos += 16
        self.index = np.concatenate(
            [self.index, np.asarray(positions, dtype=np.intp)]
        )
        self.used = used


class _Plan:
    """Where each value of the files goes in the text, for one set of
    files and entries (made again when a file or an entry appears).

    The values of every file, one after the other, form one array;
    sums are :func:`numpy.bincount` over it, maxima and minima
    :func:`numpy.maximum.at` / :func:`numpy.minimum.at`, histogram
    buckets a cumulative sum along each series' bounds.
    """

    def __init__(
        self, names: list[str], files: list[_File], key: Callable[[str], _Key]
    ) -> None:
        self.names = names
        kinds: dict[str, str] = {}
        docs: dict[str, str] = {}
        #: family -> (sample name, labels) -> plain slot
        plain: dict[str, dict[Any, int]] = collections.defaultdict(dict)
        nplain = 0
        #: family -> labels -> bound -> bucket slot
        bucket: dict[str, dict[Any, dict[float, int]]] = (
            collections.defaultdict(dict)
        )
        sums: tuple[list[int], list[int]] = ([], [])
        tops: dict[str, tuple[list[int], list[int]]] = {
            "max": ([], []),
            "min": ([], []),
        }
        bsrc: list[int] = []
        bdst: list[int] = []
        nbuckets = 0
        src = 0
        for name, state in zip(names, files, strict=True):
            parts = name[: -len(".db")].split("_")
            kind = parts[0]
            mode = parts[1] if kind == "gauge" else ""
            top = _TOPS.get(mode)
            for k in state.keys:
                family, sample, labels, bound, doc = key(k)
                kinds[family] = kind
                docs[family] = doc
                if kind == "gauge" and mode not in _GAUGE_MODES:
                    labels = (*labels, ("pid", parts[-1]))
                if bound is not None:
                    per = bucket[family].setdefault(labels, {})
                    slot = per.get(bound)
                    if slot is None:
                        slot = per[bound] = nbuckets
                        nbuckets += 1
                    bsrc.append(src)
                    bdst.append(slot)
                else:
                    lines = plain[family]
                    slot = lines.get((sample, labels))
                    if slot is None:
                        slot = lines[(sample, labels)] = nplain
                        nplain += 1
                    target = tops[top] if top else sums
                    target[0].append(src)
                    target[1].append(slot)
                src += 1
        self.nplain = nplain
        self.nbuckets = nbuckets
        arr = functools.partial(np.asarray, dtype=np.intp)
        self.sums = (arr(sums[0]), arr(sums[1]))
        self.tops = {m: (arr(a), arr(b)) for m, (a, b) in tops.items() if a}
        self.buckets = (arr(bsrc), arr(bdst))
        #: Per histogram family: its series' bucket slots, bounds in
        #: order (a missing bound reads the zero after the last slot).
        self.matrices: list[np.ndarray] = []
        #: The text, a piece per line (values filled by the render).
        self.texts: list[str] = []
        #: Per value of the output array: its line's text before the
        #: value, and its place in :attr:`texts` (-1: no line).
        heads: list[str] = [""] * self.nplain
        where: list[int] = [-1] * self.nplain
        hist_heads: list[str] = []
        hist_where: list[int] = []
        for family in sorted(kinds):
            kind = kinds[family]
            shown = family + "_total" if kind == "counter" else family
            doc = docs[family].replace("\\", "\\\\").replace("\n", "\\n")
            self.texts.append(f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n")
            lines = plain.get(family, {})
            for (sample, labels), slot in sorted(
                lines.items(), key=operator.itemgetter(1)
            ):
                heads[slot] = sample + _label_text(labels) + " "
                where[slot] = len(self.texts)
                self.texts.append("")
            series = bucket.get(family)
            if not series:
                continue
            bounds = sorted({b for per in series.values() for b in per})
            matrix = np.full((len(series), len(bounds)), nbuckets, np.intp)
            for row, (labels, per) in enumerate(series.items()):
                for col, bound in enumerate(bounds):
                    le = (*labels, ("le", floatToGoString(bound)))
                    hist_heads.append(
                        family + "_bucket" + _label_text(le) + " "
                    )
                    if bound in per:
                        matrix[row, col] = per[bound]
                        hist_where.append(len(self.texts))
                        self.texts.append("")
                    else:
                        hist_where.append(-1)
                hist_heads.append(
                    family + "_count" + _label_text(labels) + " "
                )
                hist_where.append(len(self.texts))
                self.texts.append("")
            self.matrices.append(matrix)
        # Plain values first (in slot order), then per histogram family
        # each series' buckets and count.
        self.heads = heads + hist_heads
        self.where = where + hist_where
        self.last: np.ndarray | None = None

    def values(self, raw: np.ndarray) -> np.ndarray:
        """The value of each line, from the files' values in order."""
        src, dst = self.sums
        plain = np.bincount(dst, weights=raw[src], minlength=self.nplain)
        for mode, (src, dst) in self.tops.items():
            plain[dst] = -math.inf if mode == "max" else math.inf
            ufunc = np.maximum if mode == "max" else np.minimum
            ufunc.at(plain, dst, raw[src])
        src, dst = self.buckets
        per = np.bincount(dst, weights=raw[src], minlength=self.nbuckets + 1)
        out = [plain]
        for matrix in self.matrices:
            # Each series' buckets and count, as rendered.
            cumulative = np.cumsum(per[matrix], axis=1)
            out.append(
                np.concatenate(
                    [cumulative, cumulative[:, -1:]], axis=1
                ).ravel()
            )
        return np.concatenate(out)

    def render(self, raw: np.ndarray) -> bytes:
        """The text, the lines whose value moved written again."""
        out = self.values(raw)
        last = self.last
        changed = (
            range(len(out)) if last is None else np.flatnonzero(out != last)
        )
        texts, heads, where = self.texts, self.heads, self.where
        for i in changed:
            at = where[i]
            if at >= 0:
                texts[at] = heads[i] + floatToGoString(out[i]) + "\n"
        self.last = out
        return "".join(texts).encode()


class FileExposition:
    """The values of every process's files in the text format.

    What :class:`prometheus_client.multiprocess.MultiProcessCollector`
    with :func:`~prometheus_client.generate_latest` answer (a test
    compares them), read again at each call; what does not change
    between scrapes is kept:

    * each file's entries (keys and places): a file only grows, so a
      scrape decodes only the entries added since the previous one;
    * where each value goes (:class:`_Plan`), made again when a file or
      an entry appears: a scrape then reads the values of all files as
      one array and sums them with a few array operations;
    * each line's text: only the lines whose value moved are formatted
      again.

    Everything kept is bounded by the series alarmer's labels allow and
    the processes of the installation.

    :param path: the shared directory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        #: File key -> its decoding.
        self._keys: dict[str, _Key] = {}
        #: File name -> its entries read so far.
        self._files: dict[str, _File] = {}
        self._plan: _Plan | None = None

    def _key(self, key: str) -> _Key:
        found = self._keys.get(key)
        if found is None:
            family, name, labels, doc = json.loads(key)
            bound = None
            if name.endswith("_bucket") and "le" in labels:
                bound = float(labels.pop("le"))
            found = (family, name, tuple(sorted(labels.items())), bound, doc)
            self._keys[key] = found
        return found

    def render(self) -> bytes:
        """Every process's values, summed per series, as text."""
        names: list[str] = []
        files: list[_File] = []
        chunks: list[np.ndarray] = []
        grew = False
        for name in os.listdir(self.path):
            if not name.endswith(".db"):
                continue
            try:
                with open(os.path.join(self.path, name), "rb") as f:
                    data = f.read(mmap.PAGESIZE)
                    used = _INT(data, 0)[0] if len(data) >= 8 else 8
                    if used > len(data):
                        data += f.read(used - len(data))
            except FileNotFoundError:  # a process ended meanwhile
                continue
            used = max(8, min(used, len(data)))
            state = self._files.get(name)
            if state is None or used < state.used:
                state = self._files[name] = _File()
            if used > state.used:
                state.grow(data, used)
                grew = True
            names.append(name)
            files.append(state)
            chunks.append(
                np.frombuffer(data, dtype=np.float64, count=used // 8)[
                    state.index
                ]
            )
        plan = self._plan
        if plan is None or grew or plan.names != names:
            self._files = dict(zip(names, files, strict=True))
            plan = self._plan = _Plan(names, files, self._key)
        raw = np.concatenate(chunks) if chunks else np.zeros(0)
        return plan.render(raw)


class TalliedHistogram:
    """A histogram whose observations go through the tallies.

    :param telemetry: where the tallies are flushed from.
    :param metric: the prometheus-client histogram written at a flush.
    :param buckets: its upper bounds (``+Inf`` is added).
    """

    def __init__(
        self,
        telemetry: Telemetry,
        metric: Histogram,
        buckets: tuple[float, ...],
    ) -> None:
        self.metric = metric
        #: The upper bounds, ``+Inf`` last.
        self.bounds = (*buckets, math.inf)
        #: The values observed and not written yet, per label values.
        self.tallies = telemetry._tallied(metric, self.bounds)
        self._telemetry = telemetry

    def observe(self, value: float, *labels: str) -> None:
        """Observe *value* for *labels* (the metric's label values)."""
        self.tallies[labels].append(value)
        telemetry = self._telemetry
        if not telemetry._armed:
            telemetry._arm()


def _take(values: array.array[float]) -> array.array[float]:
    """The values a list holds now, taken out of it.

    Appends made meanwhile land after them and stay for the next take
    (one take at a time: :meth:`Telemetry.flush` holds its lock).
    """
    taken = len(values)
    chunk = values[:taken]
    del values[:taken]
    return chunk


def _observe_all(
    child: Any, bounds: tuple[float, ...], chunk: array.array[float]
) -> None:
    """Write the observations *chunk* to the histogram *child*: one
    write per bucket they fall in and one for their sum, as
    ``observe()`` makes for one value (prometheus-client's own fields;
    a value falls in the first bucket whose bound is not below it)."""
    observed = np.frombuffer(chunk, dtype=np.float64)
    where = np.searchsorted(bounds, observed, side="left")
    counts = np.bincount(where, minlength=len(bounds))
    child._sum.inc(float(observed.sum()))
    # A NaN is counted past the last bucket: in none, as by observe().
    for value, n in zip(child._buckets, counts.tolist(), strict=False):
        if n:
            value.inc(n)


class Forgetful(Protocol):
    """An object holding threads or locks a forked child must forget."""

    def _forget(self) -> None: ...


class _AfterFork:
    """What a forked child runs for one :class:`Forgetful` object.

    Holds it weakly (a registered hook stays registered for the life of
    the process), and nothing once :meth:`clear` was called.
    """

    __slots__ = ("holder",)

    def __init__(self, holder: Forgetful) -> None:
        self.holder: weakref.ref[Forgetful] | None = weakref.ref(holder)

    def clear(self) -> None:
        """Forget the holder: the hook does nothing from now on."""
        self.holder = None

    def __call__(self) -> None:
        ref = self.holder
        found = ref() if ref is not None else None
        if found is not None:
            found._forget()


def forget_after_fork(holder: Forgetful) -> _AfterFork:
    """Have a forked child call *holder*'s ``_forget`` (which should
    drop the parent's threads and locks); *holder* is not kept alive.

    :returns: the hook; its :meth:`~_AfterFork.clear` ends it.
    """
    hook = _AfterFork(holder)
    os.register_at_fork(after_in_child=hook)
    return hook


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of an ended process (multi-process mode)."""
    path = multiprocess_dir()
    if path is not None:
        mp.mark_process_dead(pid, path)
