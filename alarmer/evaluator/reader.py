"""Reading an alarm's points from the metrics engine.

Two steps, as in Aodh's Gnocchi evaluators:

* *resolution*: which metrics a rule reads (:func:`resolve`):
  ``gnocchi_resources_threshold`` -> the metric named ``metric`` of
  resource ``resource_id``; ``gnocchi_aggregation_by_metrics_threshold``
  -> the listed ``metrics``; ``gnocchi_aggregation_by_resources_threshold``
  -> the metric named ``metric`` of every resource of ``resource_type``
  matching ``query`` at evaluation time;
* *reading*: the newest buckets of the rule's granularity, aggregated
  across metrics when there are several (:func:`read_outcome`), turned
  into a :class:`~alarmer.evaluator.decide.Outcome`.

Every failure becomes an ``insufficient data`` outcome with Aodh's texts
(``metric X for resource R does not exists``, ``At least of metrics in
[...] does not exist``, ``alarm statistics retrieval failed: <error>``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from sqlalchemy import orm

from alarmer.alarms import model
from alarmer.evaluator import decide
from alarmer.evaluator.decide import Outcome
from alarmer.metrics import query
from alarmer.metrics.index import Indexer, ResolutionCache, seen_by
from alarmer.metrics.series.store import Series

LOG = logging.getLogger(__name__)

RESOURCES = model.RESOURCES_THRESHOLD
BY_METRICS = model.BY_METRICS_THRESHOLD
BY_RESOURCES = model.BY_RESOURCES_THRESHOLD
THRESHOLD_TYPES = model.THRESHOLD_TYPES
COMPOSITE = model.COMPOSITE


class SeriesLike(Protocol):
    """What the engine returns: bucket starts (ns) and values."""

    @property
    def timestamps(self) -> np.ndarray:
        """Bucket starts, int64 nanoseconds."""

    @property
    def values(self) -> np.ndarray:
        """One value per bucket."""


class SeriesReader(Protocol):
    """The part of the metrics engine the evaluator uses."""

    def last_buckets(
        self,
        metric_id: str,
        method: str,
        granularity: int,
        n: int,
        *,
        stop: int | None = None,
    ) -> SeriesLike:
        """Newest *n* buckets of one series starting before *stop*."""


class Unresolved(Exception):
    """A rule's metrics cannot be found; the message is Aodh's reason."""


def base_method(method: str) -> str:
    """The per-metric method of a cross-metric aggregation (Aodh)."""
    return method[5:] if method.startswith("rate:") else method


def resolve_resource_metric(
    index: Indexer,
    session: orm.Session,
    resource_id: str,
    metric_name: str,
    project_id: str | None = None,
) -> str:
    """Metric id of *metric_name* on the resource *resource_id*.

    A UUID is the stored id; another string is looked up by the original
    id the client used.  With the alarm's project *project_id*, only a
    resource that project may see counts, however it is named (see
    :meth:`alarmer.metrics.index.Indexer.metric_of_resource`): another
    project's resource is unresolved as a missing one is.  An original
    id that still names several resources is ambiguous: unresolved
    rather than another project's data.

    :raises Unresolved: with Aodh's reason when there is none.
    """
    found = index.metric_of_resource(
        session, resource_id, metric_name, project_id=project_id
    )
    if found:
        return found
    raise Unresolved(
        f"metric {metric_name} for resource {resource_id} does not exists"
    )


def _no_metrics(metric_ids: Sequence[str]) -> Unresolved:
    return Unresolved(
        f"At least of metrics in {list(metric_ids)!r} does not exist"
    )


def _no_resource_metric(rule: Mapping[str, Any]) -> Unresolved:
    return Unresolved(
        f"metric {rule.get('metric')} for resource {rule.get('resource_id')} "
        "does not exists"
    )


def resolve_metrics(
    index: Indexer,
    session: orm.Session,
    metric_ids: Sequence[str],
    project_id: str | None = None,
) -> list[str]:
    """Check that every listed metric exists (and is the project's).

    With *project_id* (the alarm's project), a metric that project may
    not read (see :func:`alarmer.metrics.index.access.seen_by`) counts
    as missing: the same reason, nothing of it read.

    :raises Unresolved: ``At least of metrics in [...] does not exist``.
    """
    wanted = [str(m) for m in metric_ids]
    if project_id is None:
        found = index.existing_metric_ids(session, wanted)
    else:
        found = index.visible_metric_ids(session, wanted, project_id)
    if not wanted or any(m not in found for m in wanted):
        raise _no_metrics(metric_ids)
    return wanted


def resolve_by_resources(
    index: Indexer,
    session: orm.Session,
    rule: Mapping[str, Any],
    cache: ResolutionCache | None = None,
    project_id: str | None = None,
) -> list[str]:
    """Metric ids named ``metric`` of the resources matching the query.

    The group is resolved now (see
    :meth:`alarmer.metrics.index.Indexer.resolve_group`), among the
    resources *project_id* (the alarm's project) may see when given,
    whatever the stored query says; *cache* reuses the answer while the
    resource index is unchanged.

    :raises Unresolved: unknown resource type, bad query, or no match.
    """
    try:
        ids = index.resolve_group(
            session,
            rule.get("resource_type") or "generic",
            rule.get("query") or "{}",
            str(rule.get("metric")),
            project_id,
            cache=cache,
        )
    except Exception as exc:
        raise Unresolved(f"alarm statistics retrieval failed: {exc}") from exc
    if not ids:
        raise Unresolved(
            f"No datapoint for granularity {rule.get('granularity')}"
        )
    return ids


def resolve(
    index: Indexer,
    session: orm.Session,
    alarm_type: str,
    rule: Mapping[str, Any],
    cache: ResolutionCache | None = None,
    *,
    project_id: str,
) -> list[str]:
    """Metric ids a threshold rule of *alarm_type* reads now.

    *project_id* is the alarm's project: only what it may see is read
    (see :func:`alarmer.metrics.index.access.seen_by`), and a resource
    named by a non-UUID id is looked up among its resources.  Anything
    else is unresolved with the reason of a missing metric or resource,
    so that nothing of another project shows in the alarm's state.

    :raises Unresolved: with the reason the alarm reports.
    """
    if alarm_type == RESOURCES:
        return [
            resolve_resource_metric(
                index,
                session,
                str(rule.get("resource_id")),
                str(rule.get("metric")),
                project_id,
            )
        ]
    if alarm_type == BY_METRICS:
        return resolve_metrics(
            index, session, rule.get("metrics") or [], project_id
        )
    if alarm_type == BY_RESOURCES:
        return resolve_by_resources(index, session, rule, cache, project_id)
    raise Unresolved(f"alarm type {alarm_type} cannot be evaluated")


def buckets_needed(rule: Mapping[str, Any], lag: float) -> int:
    """How many newest buckets cover the look-back window."""
    granularity = float(rule["granularity"])
    return int(rule["evaluation_periods"]) + 2 + math.ceil(lag / granularity)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What evaluating one threshold rule needs, computed once per rule."""

    alarm_type: str
    method: str
    read_method: str
    granularity: float
    gran_ns: int
    periods: int
    n: int
    threshold: float
    comparison_operator: str
    lag_ns: int
    metric: str | None
    resource_id: str | None

    @classmethod
    def of(
        cls, alarm_type: str, rule: Mapping[str, Any], lag: float = 0
    ) -> Plan:
        """The plan of *rule* (raises KeyError/ValueError when invalid)."""
        method = rule.get("aggregation_method") or "mean"
        granularity = float(rule["granularity"])
        operator = rule.get("comparison_operator") or "eq"
        if operator not in decide.COMPARATORS:
            raise ValueError(f"unknown comparison operator {operator!r}")
        return cls(
            alarm_type=alarm_type,
            method=method,
            read_method=(
                method if alarm_type == RESOURCES else base_method(method)
            ),
            granularity=granularity,
            gran_ns=round(granularity * decide.NS),
            periods=int(rule["evaluation_periods"]),
            n=buckets_needed(rule, lag),
            threshold=float(rule["threshold"]),
            comparison_operator=operator,
            lag_ns=round(lag * decide.NS),
            metric=rule.get("metric"),
            resource_id=rule.get("resource_id"),
        )

    @property
    def window_ns(self) -> int:
        """Length of the look-back window."""
        return self.gran_ns * (self.periods + 1) + self.lag_ns


class BucketCache:
    """The newest buckets read per (metric, method, granularity).

    An entry is dropped when the metric channel announces new measures
    for its metric (:meth:`invalidate`) and in any case after *ttl*
    seconds, so that an announcement lost on the way delays what the
    evaluator sees by at most *ttl*.  At most *max_metrics* metrics are
    kept (oldest first out).
    """

    def __init__(self, ttl: float, max_metrics: int = 200_000) -> None:
        self.ttl = ttl
        self.max_metrics = max_metrics
        self._entries: dict[str, dict[tuple[Any, ...], Any]] = {}
        # Per-metric generation, bumped by invalidate(); cross-metric
        # results remember the generations they were computed from.
        self._gens: dict[str, int] = {}
        self._counter = itertools.count(1)
        self._cross: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(
        self,
        engine: SeriesReader,
        metric_id: str,
        method: str,
        gran_ns: int,
        n: int,
        *,
        stop: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bucket starts and values, from the cache or the engine.

        *stop* cuts the buckets as the engine does; it is rounded up to
        a bucket start first, so reads within one bucket share an entry.
        """
        stop = cut_time(stop, gran_ns)
        key = (method, gran_ns, n, stop)
        now = time.monotonic()
        per_metric = self._entries.get(metric_id)
        if per_metric is not None:
            found = per_metric.get(key)
            if found is not None and found[0] > now:
                self.hits += 1
                return found[1], found[2]
        self.misses += 1
        with self._lock:
            self._gens.setdefault(metric_id, 0)
        series = engine.last_buckets(metric_id, method, gran_ns, n, stop=stop)
        entry = (now + self.ttl, series.timestamps, series.values)
        with self._lock:
            per_metric = self._entries.get(metric_id)
            if per_metric is None:
                per_metric = self._entries[metric_id] = {}
                while len(self._entries) > self.max_metrics:
                    self._entries.pop(next(iter(self._entries)))
            per_metric[key] = entry
        return series.timestamps, series.values

    def invalidate(self, metric_ids: Sequence[str]) -> None:
        """Forget what was read of *metric_ids*."""
        with self._lock:
            for metric_id in metric_ids:
                self._entries.pop(metric_id, None)
                if metric_id in self._gens:
                    self._gens[metric_id] = next(self._counter)

    def track(self, metric_ids: Sequence[str]) -> None:
        """Start following the generations of *metric_ids*.

        Call before reading them without :meth:`get`, so that a
        cross-metric result computed from that read can be kept.
        """
        gens = self._gens
        if all(m in gens for m in metric_ids):
            return
        with self._lock:
            for metric_id in metric_ids:
                gens.setdefault(metric_id, 0)

    def generations(self, metric_ids: Sequence[str]) -> tuple[int, ...]:
        """Current generations of *metric_ids* (read before fetching)."""
        gens = self._gens
        return tuple(gens.get(m, -1) for m in metric_ids)

    def cross_get(
        self, key: tuple[Any, ...], metric_ids: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """A cross-metric reduction still valid for *metric_ids*."""
        found = self._cross.get(key)
        if found is None or found[0] <= time.monotonic():
            return None
        if found[1] != self.generations(metric_ids):
            return None
        self.hits += 1
        return found[2], found[3]

    def cross_put(
        self,
        key: tuple[Any, ...],
        gens: tuple[int, ...],
        times: np.ndarray,
        reduced: np.ndarray,
    ) -> None:
        """Remember a cross-metric reduction computed at *gens*."""
        if -1 in gens:
            return
        with self._lock:
            self._cross[key] = (
                time.monotonic() + self.ttl,
                gens,
                times,
                reduced,
            )
            while len(self._cross) > self.max_metrics:
                self._cross.pop(next(iter(self._cross)))

    def __len__(self) -> int:
        return len(self._entries)


#: At most this many buckets are read beyond a rule's window to assess
#: it as of several instants with one read (a late evaluation).
MAX_EXTRA_BUCKETS = 64


def cut_time(stop: int | None, gran_ns: int) -> int | None:
    """*stop* rounded up to a bucket start of *gran_ns*.

    Buckets start at multiples of their granularity: the buckets
    starting before *stop* are those starting before the rounded value.
    """
    if stop is None or gran_ns <= 0:
        return stop
    return -(-int(stop) // gran_ns) * gran_ns


def span(plan: Plan, instants: Sequence[int]) -> tuple[int, int]:
    """(stop, n): one read covering *plan*'s window at every instant."""
    stop = max(instants)
    extra = -(-(stop - min(instants)) // plan.gran_ns)
    return stop, plan.n + min(int(extra), MAX_EXTRA_BUCKETS)


def _fetch(
    engine: SeriesReader,
    cache: BucketCache | None,
    metric_id: str,
    method: str,
    *,
    gran_ns: int,
    n: int,
    stop: int,
) -> tuple[np.ndarray, np.ndarray]:
    if cache is not None:
        return cache.get(engine, metric_id, method, gran_ns, n, stop=stop)
    series = engine.last_buckets(metric_id, method, gran_ns, n, stop=stop)
    return series.timestamps, series.values


def _reduce_read(
    engine: SeriesReader,
    cache: BucketCache | None,
    plan: Plan,
    metric_ids: Sequence[str],
    *,
    base: str,
    n: int,
    stop: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Read the rule's buckets of every metric and reduce them across.

    With an engine that reads many series at once
    (``last_buckets_many``), one call and one matrix reduction; else
    one read per metric (through *cache* when given).
    """
    many = getattr(engine, "last_buckets_many", None)
    if many is None:
        per_metric = [
            Series(
                plan.gran_ns,
                *_fetch(
                    engine,
                    cache,
                    m,
                    plan.read_method,
                    gran_ns=plan.gran_ns,
                    n=n,
                    stop=stop,
                ),
            )
            for m in metric_ids
        ]
        return query.reduce_across(per_metric, base)
    times, grid = many(
        metric_ids, plan.read_method, plan.gran_ns, n, stop=stop
    )
    return query.reduce_grid(times, grid, base)


def _read_reduced(
    engine: SeriesReader,
    cache: BucketCache | None,
    plan: Plan,
    metric_ids: Sequence[str],
    *,
    n: int,
    stop: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The cross-metric reduction of the newest *n* buckets before *stop*."""
    base = plan.method.removeprefix("rate:")
    if cache is None:
        return _reduce_read(
            engine, None, plan, metric_ids, base=base, n=n, stop=stop
        )
    key = (
        tuple(metric_ids),
        plan.read_method,
        base,
        plan.gran_ns,
        n,
        cut_time(stop, plan.gran_ns),
    )
    found = cache.cross_get(key, metric_ids)
    if found is not None:
        return found
    cache.track(metric_ids)
    gens = cache.generations(metric_ids)
    times, reduced = _reduce_read(
        engine, cache, plan, metric_ids, base=base, n=n, stop=stop
    )
    cache.cross_put(key, gens, times, reduced)
    return times, reduced


def assess_at(
    plan: Plan,
    times: np.ndarray,
    values: np.ndarray,
    now_ns: int,
    *,
    reduced: bool,
) -> Outcome:
    """Assess *plan* on buckets read up to at least *now_ns*, as of it.

    *times*/*values* are one series' bucket starts and values, or with
    *reduced* a cross-metric reduction (see ``reduce_grid``) not yet
    windowed.  Aodh's window ``[floor(now - window), now)`` is taken
    here, so the same read serves several instants.
    """
    if reduced:
        times, values = query.window_across(
            times,
            values,
            plan.method,
            plan.gran_ns,
            start=now_ns - plan.window_ns,
            stop=now_ns,
        )
    selected = decide.select_window(
        times,
        values,
        gran_ns=plan.gran_ns,
        periods=plan.periods,
        now_ns=now_ns,
        lag_ns=plan.lag_ns,
    )
    return decide.assess(
        selected,
        threshold=plan.threshold,
        comparison_operator=plan.comparison_operator,
        evaluation_periods=plan.periods,
        granularity=plan.granularity,
    )


def single_series(plan: Plan, metric_ids: Sequence[str]) -> bool:
    """True when *plan* reads one series as is (no cross-metric step)."""
    return plan.alarm_type == RESOURCES and len(metric_ids) == 1


def lookup_failure(plan: Plan, exc: Exception) -> Outcome:
    """The outcome of a read that found no such aggregation (Aodh's)."""
    if plan.alarm_type == RESOURCES:
        return decide.insufficient(
            f"aggregation {plan.method} does not exist for metric "
            f"{plan.metric} of resource {plan.resource_id}"
        )
    return decide.insufficient(f"alarm statistics retrieval failed: {exc}")


def read_outcomes(
    engine: SeriesReader,
    plan: Plan,
    metric_ids: Sequence[str],
    instants: Sequence[int],
    *,
    cache: BucketCache | None = None,
) -> list[Outcome]:
    """Read the points of a threshold rule and assess them at *instants*.

    One read covers every instant (ns): the buckets starting before the
    latest, enough of them for the window of the earliest (see
    :func:`span`).  Buckets stamped after an instant never take part
    in its assessment, nor push valid ones out of the read.

    Missing aggregations or granularities become ``insufficient data``
    outcomes with Aodh's text; other engine errors propagate (the caller
    logs them with the alarm id and reports ``alarm statistics retrieval
    failed``).
    """
    stop, n = span(plan, instants)
    single = single_series(plan, metric_ids)
    try:
        if single:
            times, values = _fetch(
                engine,
                cache,
                metric_ids[0],
                plan.read_method,
                gran_ns=plan.gran_ns,
                n=n,
                stop=stop,
            )
        else:
            times, values = _read_reduced(
                engine, cache, plan, metric_ids, n=n, stop=stop
            )
    except LookupError as exc:
        return [lookup_failure(plan, exc)] * len(instants)
    return [
        assess_at(plan, times, values, t, reduced=not single) for t in instants
    ]


def read_outcome(
    engine: SeriesReader,
    plan: Plan,
    metric_ids: Sequence[str],
    now_ns: int,
    *,
    cache: BucketCache | None = None,
) -> Outcome:
    """Read the points of a threshold rule and assess them at *now_ns*.

    See :func:`read_outcomes`.
    """
    return read_outcomes(engine, plan, metric_ids, [now_ns], cache=cache)[0]


class BatchRead:
    """The reads of many threshold rules, gathered into few engine calls.

    :meth:`want` registers what a rule needs; :meth:`run` reads every
    wanted series with one ``last_buckets_many`` call per (method,
    granularity, cut) group, as many buckets as the neediest rule of
    the group wants; :meth:`outcomes` then assesses each rule from its
    rows (its own window is taken there, so the extra buckets others
    asked for change nothing).  The instants of one tick all end at the
    tick's "now": one group per method and granularity.  A group whose
    read fails is left to the per-rule path (:func:`read_outcomes`),
    which reports the rule's own error.
    """

    def __init__(self, engine: SeriesReader) -> None:
        self.engine = engine
        self._many = getattr(engine, "last_buckets_many", None)
        #: group -> (metric id -> row, buckets wanted)
        self._groups: dict[tuple[str, int, int], tuple[dict[str, int], int]]
        self._groups = {}
        self._results: dict[
            tuple[str, int, int], tuple[np.ndarray, np.ndarray] | None
        ] = {}
        #: Cross-metric rules wanted per group: (metric ids, reducer).
        self._rules: dict[tuple[str, int, int], dict[tuple[Any, ...], None]]
        self._rules = {}
        #: Their reductions, computed for all of a group at once.
        self._reduced: dict[tuple[Any, ...], np.ndarray] = {}

    @property
    def enabled(self) -> bool:
        """True when the engine reads many series in one call."""
        return self._many is not None

    @staticmethod
    def _key(plan: Plan, instants: Sequence[int]) -> tuple[str, int, int]:
        cut = cut_time(max(instants), plan.gran_ns)
        assert cut is not None
        return (plan.read_method, plan.gran_ns, cut)

    def want(
        self, plan: Plan, metric_ids: Sequence[str], instants: Sequence[int]
    ) -> None:
        """Register the series *plan* reads for *instants*."""
        key = self._key(plan, instants)
        _, n = span(plan, instants)
        # The cut may be up to one bucket later than the latest instant.
        n += 1
        found = self._groups.get(key)
        if found is None:
            rows: dict[str, int] = {}
        else:
            rows, wanted = found
            n = max(n, wanted)
        for metric_id in metric_ids:
            rows.setdefault(metric_id, len(rows))
        self._groups[key] = (rows, n)
        if not single_series(plan, metric_ids) and not plan.method.startswith(
            "rate:"
        ):
            rules = self._rules.setdefault(key, {})
            rules[(tuple(metric_ids), plan.method)] = None

    def run(self) -> None:
        """Read every registered group."""
        many = self._many
        if many is None:
            return
        for key, (rows, n) in self._groups.items():
            method, gran_ns, stop = key
            try:
                found = many(list(rows), method, gran_ns, n, stop=stop)
            except Exception as exc:
                LOG.debug(
                    "batched read of %d series failed: %s", len(rows), exc
                )
                self._results[key] = None
                continue
            self._results[key] = found
            self._reduce_all(key, rows, *found)

    def _reduce_all(
        self,
        key: tuple[str, int, int],
        rows: dict[str, int],
        times: np.ndarray,
        grid: np.ndarray,
    ) -> None:
        """Reduce every cross-metric rule of a group in a few numpy calls.

        Rules with as many metrics and the same reducer are stacked into
        one (metrics x rules*time) grid and reduced column-wise, as
        ``reduce_grid`` reduces each rule's own grid; a timestamp none of
        a rule's metrics has is NaN (not a point) for that rule, as when
        the rule's grid is laid out alone.
        """
        by_shape: dict[tuple[int, str], list[tuple[str, ...]]] = {}
        for ids, method in self._rules.get(key, {}):
            by_shape.setdefault((len(ids), method), []).append(ids)
        width = times.size
        if width == 0:
            return
        for (k, method), members in by_shape.items():
            index = np.array(
                [[rows[m] for m in ids] for ids in members], dtype=np.intp
            )
            stacked = grid[index]  # (rules, k, T)
            present = ~np.isnan(stacked)
            flat = stacked.transpose(1, 0, 2).reshape(k, len(members) * width)
            try:
                reduced = query.reduce_columns(flat, method).reshape(
                    len(members), width
                )
            except Exception as exc:
                # Left to each rule's own reduction (and its error).
                LOG.debug("stacked %s reduction failed: %s", method, exc)
                continue
            reduced[~present.any(axis=1)] = np.nan
            for ids, row in zip(members, reduced, strict=True):
                self._reduced[(key, ids, method)] = row

    def outcomes(
        self, plan: Plan, metric_ids: Sequence[str], instants: Sequence[int]
    ) -> list[Outcome] | None:
        """The rule's outcomes at *instants*; None: read it alone."""
        key = self._key(plan, instants)
        found = self._results.get(key)
        if found is None:
            return None
        times, grid = found
        row = self._reduced.get((key, tuple(metric_ids), plan.method))
        if row is not None:
            return [
                assess_at(plan, times, row, t, reduced=True) for t in instants
            ]
        rows = self._groups[key][0]
        if len(metric_ids) == 1 and single_series(plan, metric_ids):
            values = grid[rows[metric_ids[0]]]
            return [
                assess_at(plan, times, values, t, reduced=False)
                for t in instants
            ]
        sub = grid[[rows[m] for m in metric_ids]]
        keep = ~np.isnan(sub).all(axis=0)
        if not keep.all():
            times, sub = times[keep], sub[:, keep]
        if single_series(plan, metric_ids):
            return [
                assess_at(plan, times, sub[0], t, reduced=False)
                for t in instants
            ]
        base = plan.method.removeprefix("rate:")
        times, reduced = query.reduce_grid(times, sub, base)
        return [
            assess_at(plan, times, reduced, t, reduced=True) for t in instants
        ]


def bulk_resolve(
    index: Indexer,
    session: orm.Session,
    items: Sequence[tuple[str, Mapping[str, Any]]],
    cache: ResolutionCache | None = None,
    *,
    projects: Sequence[str],
) -> list[list[str] | Unresolved]:
    """Resolve many ``(alarm type, threshold rule)`` pairs at once.

    Each item is resolved for the project at the same position in
    *projects* (its alarm's), as :func:`resolve` does.
    ``gnocchi_resources_threshold`` rules on UUID resources and
    by-metrics rules are resolved with one query per chunk of ids,
    whatever the number of projects (the owners come back with the ids
    and are compared here); the others one by one (see :func:`resolve`).
    Each result is the metric ids or the :class:`Unresolved` error.
    """
    results: list[list[str] | Unresolved | None] = [None] * len(items)
    by_pair: dict[tuple[str, str], list[int]] = {}
    by_metric: dict[int, list[str]] = {}
    for position, (alarm_type, rule) in enumerate(items):
        if alarm_type == RESOURCES:
            try:
                rid = str(uuid.UUID(str(rule.get("resource_id"))))
            except ValueError:
                continue
            key = (rid, str(rule.get("metric")))
            by_pair.setdefault(key, []).append(position)
        elif alarm_type == BY_METRICS:
            by_metric[position] = [str(m) for m in rule.get("metrics") or []]
    named = index.named_metric_owners(session, by_pair)
    for key, positions in by_pair.items():
        found = named.get(key)
        for position in positions:
            if found is not None and seen_by(projects[position], *found[1]):
                results[position] = [found[0]]
            else:
                results[position] = _no_resource_metric(items[position][1])
    owners = index.metric_owners(
        session, sorted({m for ms in by_metric.values() for m in ms})
    )
    for position, metric_ids in by_metric.items():
        project = projects[position]
        if metric_ids and all(
            m in owners and seen_by(project, *owners[m]) for m in metric_ids
        ):
            results[position] = metric_ids
        else:
            results[position] = _no_metrics(
                items[position][1].get("metrics") or []
            )
    final: list[list[str] | Unresolved] = []
    for position, result in enumerate(results):
        if result is not None:
            final.append(result)
            continue
        alarm_type, rule = items[position]
        try:
            final.append(
                resolve(
                    index,
                    session,
                    alarm_type,
                    rule,
                    cache,
                    project_id=projects[position],
                )
            )
        except Unresolved as exc:
            final.append(exc)
    return final
