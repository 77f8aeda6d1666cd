"""The metrics engine: aggregate measures on write, read series back.

:class:`Engine` glues the pure aggregation core
(:mod:`alarmer.engine.aggregation`) to a series storage driver
(:mod:`alarmer.engine.storage`).  Each metric is a log of records in the
driver: one snapshot of its :class:`~alarmer.engine.aggregation.MetricState`
then one delta per write (the accepted points), compacted into a new
snapshot every so often.  Decoded states are kept in a byte-bounded LRU
cache, trimmed to the buckets writes can still change plus the newest
few; they are brought up to date from the log before every read, and
every write is conditional on the version of the log the cached state
came from, so several processes (or hosts, with Redis) can share the
storage without losing a point.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import zlib
from collections.abc import Sequence

import numpy as np
from oslo_config import cfg

from alarmer.engine import aggregation as agg
from alarmer.engine import archive_policy as ap
from alarmer.engine import storage
from alarmer.engine.storage import codec

LOG = logging.getLogger(__name__)

_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)
#: Conditional writes retried this many times before giving up.
MAX_WRITE_ATTEMPTS = 200
_STRIPES = 64


class EngineError(Exception):
    """Base class of the metrics engine errors."""


class UnknownMethod(EngineError, ValueError):
    """The aggregation method does not exist at all."""

    def __init__(self, method: str) -> None:
        super().__init__(f"Unknown aggregation method {method!r}")
        self.method = method


class AggregationNotStored(EngineError, LookupError):
    """The metric's archive policy does not store this method."""

    def __init__(self, metric_id: str, method: str) -> None:
        super().__init__(
            f"Aggregation method {method!r} for metric {metric_id} "
            "does not exist"
        )
        self.metric_id = metric_id
        self.method = method


class GranularityNotStored(EngineError, LookupError):
    """The metric's archive policy has no such granularity."""

    def __init__(self, metric_id: str, granularity: int) -> None:
        super().__init__(
            f"Granularity '{granularity / 1e9:g}' for metric {metric_id} "
            "does not exist"
        )
        self.metric_id = metric_id
        self.granularity = granularity


class WriteConflict(EngineError):
    """Too many concurrent writers on one metric; the write was not done."""


@dataclasses.dataclass(frozen=True)
class MetricRef:
    """What the engine needs to know of a metric to write to it."""

    id: str
    policy: ap.ArchivePolicy


@dataclasses.dataclass(frozen=True)
class Series:
    """One aggregated series: bucket starts (int64 ns) and values."""

    granularity: int
    timestamps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.timestamps.size)


@dataclasses.dataclass(frozen=True)
class WriteResult:
    """Outcome of one metric's write."""

    stored: int
    refused: int
    oldest_accepted: int | None


@dataclasses.dataclass
class _Entry:
    state: agg.MetricState | None = None
    version: storage.Version | None = None
    deltas: int = 0
    delta_bytes: int = 0
    size: int = 0


class Engine:
    """Aggregate-on-write metrics engine over a series storage driver.

    :param driver: where the series live.
    :param cache_bytes: bound of the in-memory cache of decoded metrics.
    :param compact_deltas: rewrite a metric's log as one snapshot after
        this many deltas.
    :param hot_buckets: buckets per granularity kept in the cache (with
        every bucket a late point can still change); older ones are read
        from storage when a read needs them.
    """

    def __init__(
        self,
        driver: storage.SeriesDriver,
        *,
        cache_bytes: int = 256 * 1024 * 1024,
        compact_deltas: int = 64,
        compact_bytes: int = 256 * 1024,
        hot_buckets: int = 128,
    ) -> None:
        self.driver = driver
        self.cache_bytes = cache_bytes
        self.compact_deltas = compact_deltas
        self.compact_bytes = compact_bytes
        self.hot_buckets = hot_buckets
        self._cache: collections.OrderedDict[str, _Entry] = (
            collections.OrderedDict()
        )
        self._cached_bytes = 0
        self._cache_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._counters: collections.Counter[str] = collections.Counter()

    # -- cache ---------------------------------------------------------------

    def _stripe(self, metric_id: str) -> threading.Lock:
        return self._stripes[zlib.crc32(metric_id.encode()) % _STRIPES]

    def _cache_get(self, metric_id: str) -> _Entry | None:
        with self._cache_lock:
            entry = self._cache.get(metric_id)
            if entry is not None:
                self._cache.move_to_end(metric_id)
            return entry

    def _cache_put(self, metric_id: str, entry: _Entry) -> None:
        size = (
            agg.stored_bytes_estimate(entry.state) + 512
            if entry.state is not None
            else 512
        )
        with self._cache_lock:
            old = self._cache.pop(metric_id, None)
            if old is not None:
                self._cached_bytes -= old.size
            entry.size = size
            self._cache[metric_id] = entry
            self._cached_bytes += size
            while (
                self._cached_bytes > self.cache_bytes and len(self._cache) > 1
            ):
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= evicted.size

    def _cache_drop(self, metric_id: str) -> None:
        with self._cache_lock:
            old = self._cache.pop(metric_id, None)
            if old is not None:
                self._cached_bytes -= old.size

    # -- loading -------------------------------------------------------------

    def _load(self, metric_id: str) -> _Entry:
        """The metric's state, brought up to date from the driver."""
        cached = self._cache_get(metric_id)
        since = cached.version if cached is not None else None
        result = self.driver.read(metric_id, since)
        if not result.reset and cached is not None:
            if not result.records:
                return cached
            entry = cached
        else:
            entry = _Entry(version=None)
        for record in result.records:
            self._replay(metric_id, entry, record)
        entry.version = result.version
        if result.reset and entry.state is not None:
            entry.state.trim(self.hot_buckets)
        self._cache_put(metric_id, entry)
        return entry

    def _load_full(self, metric_id: str) -> _Entry:
        """The complete state, read afresh from the driver (not cached)."""
        result = self.driver.read(metric_id, None)
        entry = _Entry(version=None)
        for record in result.records:
            self._replay(metric_id, entry, record)
        entry.version = result.version
        return entry

    def _cache_trimmed(self, metric_id: str, entry: _Entry) -> None:
        if entry.state is not None:
            entry.state.trim(self.hot_buckets)
        self._cache_put(metric_id, entry)

    def _replay(self, metric_id: str, entry: _Entry, record: bytes) -> None:
        kind = record[:1]
        try:
            if kind == codec.SNAPSHOT:
                entry.state = codec.decode_snapshot(record)
                entry.deltas = 0
                entry.delta_bytes = 0
                return
            if kind == codec.DELTA:
                if entry.state is None:
                    raise codec.CorruptRecord("delta before any snapshot")
                ts, values = codec.decode_delta(record)
                entry.state.apply(ts, values)
                entry.deltas += 1
                entry.delta_bytes += len(record)
                return
            raise codec.CorruptRecord(f"unknown record type {kind!r}")
        except codec.CorruptRecord as exc:
            LOG.error("metric %s: unreadable record: %s", metric_id, exc)
            raise storage.StorageError(
                f"metric {metric_id}: unreadable stored data: {exc}"
            ) from exc

    # -- writes --------------------------------------------------------------

    def add_measures(
        self, metric: MetricRef, timestamps: np.ndarray, values: np.ndarray
    ) -> WriteResult:
        """Aggregate and store measures of one metric.

        :param timestamps: int64 ns since the epoch (any order).
        :param values: float64, finite.
        :returns: what was stored and refused; the data is durable when
            this returns.
        :raises WriteConflict: when concurrent writers kept winning.
        """
        timestamps = np.asarray(timestamps, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if timestamps.shape != values.shape or timestamps.ndim != 1:
            raise ValueError("timestamps and values must be 1-D, same size")
        with self._stripe(metric.id):
            for _attempt in range(MAX_WRITE_ATTEMPTS):
                result = self._try_write(metric, timestamps, values)
                if result is not None:
                    return result
                with self._cache_lock:
                    self._counters["write_conflicts"] += 1
                self._cache_drop(metric.id)
        raise WriteConflict(
            f"metric {metric.id}: too many concurrent writers, not written"
        )

    def _try_write(
        self, metric: MetricRef, timestamps: np.ndarray, values: np.ndarray
    ) -> WriteResult | None:
        # A cached state is used without asking the driver: the write is
        # conditional on its version, so a stale cache costs one retry.
        entry = self._cache_get(metric.id)
        fresh = entry is None or entry.state is None
        if fresh:
            entry = self._load(metric.id)
        assert entry is not None
        state = entry.state
        new = state is None
        changed = state is not None and state.policy != metric.policy
        compact = (
            new
            or changed
            or entry.deltas >= self.compact_deltas
            or entry.delta_bytes >= self.compact_bytes
        )
        if compact and state is not None and state.trimmed:
            # A snapshot holds everything: start from the complete state.
            full = self._load_full(metric.id)
            if full.version != entry.version:
                return None
            entry, state, fresh = full, full.state, True
        if state is None:
            state = agg.MetricState(metric.policy)
        if changed:
            state.set_policy(metric.policy)
        applied = state.apply(timestamps, values)
        if applied.stored == 0 and not changed:
            if not fresh:
                # Decide refusals on the latest data, not a stale cache.
                self._cache_drop(metric.id)
                return self._try_write(metric, timestamps, values)
            self._count(0, applied.refused, metric.id)
            return WriteResult(
                0, applied.refused, state.first_block_timestamp()
            )
        if compact:
            record = codec.encode_snapshot(state)
            if new and entry.version is None:
                version = self.driver.append(metric.id, None, record)
            else:
                version = self.driver.rewrite(metric.id, entry.version, record)
            if version is None:
                return None
            self._cache_trimmed(
                metric.id, _Entry(state=state, version=version)
            )
        else:
            record = codec.encode_delta(applied.ts, applied.values)
            version = self.driver.append(metric.id, entry.version, record)
            if version is None:
                return None
            entry.version = version
            entry.deltas += 1
            entry.delta_bytes += len(record)
        self._count(applied.stored, applied.refused, metric.id)
        return WriteResult(
            applied.stored, applied.refused, state.first_block_timestamp()
        )

    def _count(self, stored: int, refused: int, metric_id: str) -> None:
        with self._cache_lock:
            self._counters["measures_stored"] += stored
            self._counters["writes"] += 1
            if refused:
                self._counters["measures_refused_late"] += refused
        if refused:
            LOG.info(
                "metric %s: %d late measures refused (older than the "
                "back window)",
                metric_id,
                refused,
            )

    def add_measures_batch(
        self, batch: Sequence[tuple[MetricRef, np.ndarray, np.ndarray]]
    ) -> list[WriteResult]:
        """:meth:`add_measures` for several metrics, results in order.

        With a driver whose ``append_many`` saves round trips (Redis), the
        common case -- a metric already in the cache receiving new points
        -- is aggregated for the whole batch first, then every log append
        goes in one ``append_many`` call (one pipeline).  Anything else (a
        new metric, a compaction due, a policy change, a lost race) goes
        through :meth:`add_measures`.
        """
        items = [
            (
                metric,
                np.asarray(ts, dtype=np.int64),
                np.asarray(vals, dtype=np.float64),
            )
            for metric, ts, vals in batch
        ]
        for _metric, ts, vals in items:
            if ts.shape != vals.shape or ts.ndim != 1:
                raise ValueError(
                    "timestamps and values must be 1-D, same size"
                )
        ids = [metric.id for metric, _, _ in items]
        if (
            not self.driver.BATCHED_APPENDS
            or len(items) < 2
            or len(set(ids)) != len(ids)
        ):
            return [self.add_measures(*item) for item in items]
        stripes = sorted({zlib.crc32(i.encode()) % _STRIPES for i in ids})
        results: list[WriteResult | None] = [None] * len(items)
        for index in stripes:
            self._stripes[index].acquire()
        try:
            pending = []  # (position, entry, applied, record)
            for pos, (metric, ts, vals) in enumerate(items):
                entry = self._cache_get(metric.id)
                if (
                    entry is None
                    or entry.state is None
                    or entry.version is None
                    or entry.state.policy != metric.policy
                    or entry.deltas >= self.compact_deltas
                    or entry.delta_bytes >= self.compact_bytes
                ):
                    continue
                applied = entry.state.apply(ts, vals)
                if applied.stored == 0:
                    continue
                pending.append(
                    (
                        pos,
                        entry,
                        applied,
                        codec.encode_delta(applied.ts, applied.values),
                    )
                )
            versions = self.driver.append_many(
                [
                    (items[pos][0].id, entry.version, record)
                    for pos, entry, _, record in pending
                ]
            )
            for (pos, entry, applied, record), version in zip(
                pending, versions, strict=True
            ):
                metric = items[pos][0]
                if version is None:
                    with self._cache_lock:
                        self._counters["write_conflicts"] += 1
                    self._cache_drop(metric.id)
                    continue
                entry.version = version
                entry.deltas += 1
                entry.delta_bytes += len(record)
                self._count(applied.stored, applied.refused, metric.id)
                results[pos] = WriteResult(
                    applied.stored,
                    applied.refused,
                    entry.state.first_block_timestamp()
                    if entry.state
                    else None,
                )
        finally:
            for index in stripes:
                self._stripes[index].release()
        return [
            result if result is not None else self.add_measures(*items[pos])
            for pos, result in enumerate(results)
        ]

    # -- reads ---------------------------------------------------------------

    def _state_for_read(
        self, metric_id: str, method: str
    ) -> agg.MetricState | None:
        if not ap.is_valid_method(method):
            raise UnknownMethod(method)
        state = self._load(metric_id).state
        if (
            state is not None
            and method not in state.policy.aggregation_methods
        ):
            raise AggregationNotStored(metric_id, method)
        return state

    def get_measures(
        self,
        metric_id: str,
        method: str,
        granularity: int | None = None,
        start: int | None = None,
        stop: int | None = None,
    ) -> list[Series]:
        """Aggregated series of a metric in [start, stop).

        *start* is rounded down to the granularity.  All granularities,
        coarsest first, when *granularity* is None.  Nothing stored: an
        empty list (or one empty series for the asked granularity).

        :raises UnknownMethod: *method* is not an aggregation method.
        :raises AggregationNotStored: the policy does not store it.
        :raises GranularityNotStored: the policy has no *granularity*.
        """
        with self._stripe(metric_id):
            state = self._state_for_read(metric_id, method)
            if state is None:
                if granularity is None:
                    return []
                return [Series(granularity, _EMPTY_I, _EMPTY_F)]
            if granularity is None:
                grans = sorted(state.levels, reverse=True)
            elif granularity not in state.levels:
                raise GranularityNotStored(metric_id, granularity)
            else:
                grans = [granularity]
            if not all(state.covers(g, start) for g in grans):
                state = self._complete_state(metric_id, method)
                if state is None:
                    return [Series(g, _EMPTY_I, _EMPTY_F) for g in grans]
            return [
                Series(g, *state.read(method, g, start, stop)) for g in grans
            ]

    def _complete_state(
        self, metric_id: str, method: str
    ) -> agg.MetricState | None:
        """Read the complete state for a read reaching old buckets.

        Not cached: the cache keeps the trimmed state the caller has
        just brought up to date.
        """
        state = self._load_full(metric_id).state
        if (
            state is not None
            and method not in state.policy.aggregation_methods
        ):
            raise AggregationNotStored(metric_id, method)
        return state

    def last_buckets(
        self, metric_id: str, method: str, granularity: int, n: int
    ) -> Series:
        """The newest *n* buckets of one series (current one included)."""
        with self._stripe(metric_id):
            state = self._state_for_read(metric_id, method)
            if state is None:
                return Series(granularity, _EMPTY_I, _EMPTY_F)
            if granularity not in state.levels:
                raise GranularityNotStored(metric_id, granularity)
            ts, values = state.read_last(method, granularity, n)
            if ts.size < n and not state.covers(granularity, None):
                full = self._complete_state(metric_id, method)
                if full is not None and granularity in full.levels:
                    ts, values = full.read_last(method, granularity, n)
            return Series(granularity, ts, values)

    # -- admin ---------------------------------------------------------------

    def delete_metric(self, metric_id: str) -> None:
        """Forget every stored measure of *metric_id*."""
        with self._stripe(metric_id):
            self.driver.delete(metric_id)
            self._cache_drop(metric_id)

    def statistics(self) -> dict[str, int]:
        """Per-process counters plus what the driver reports."""
        with self._cache_lock:
            stats = {
                "measures_stored": 0,
                "measures_refused_late": 0,
                "write_conflicts": 0,
                **self._counters,
                "cached_metrics": len(self._cache),
                "cached_bytes": self._cached_bytes,
            }
        stats.update(self.driver.statistics())
        return stats

    def close(self) -> None:
        """Release the driver."""
        with self._cache_lock:
            self._cache.clear()
            self._cached_bytes = 0
        self.driver.close()


def make_engine(conf: cfg.ConfigOpts) -> Engine:
    """Build the engine configured by the ``[storage]`` section."""
    return Engine(
        storage.make_driver(conf),
        cache_bytes=conf.storage.cache_size_mb * 1024 * 1024,
    )
