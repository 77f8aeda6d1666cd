"""The metrics engine: aggregate measures on write, read series back.

:class:`SeriesStore` glues the pure aggregation core
(:mod:`alarmer.metrics.series.aggregation`) to a series storage driver
(:mod:`alarmer.metrics.series.drivers`).  Each metric is a log of
records in the driver: one snapshot of its
:class:`~alarmer.metrics.series.aggregation.MetricState` then one delta
per write (the accepted points), compacted into a new snapshot every so
often.  Decoded states are kept in a byte-bounded LRU cache, trimmed to
the buckets writes can still change plus the newest few; they are
brought up to date from the log before every read, and every write is
conditional on the version of the log the cached state came from, so
several processes (or hosts, with Redis) can share the storage without
losing a point.

A damaged log (a read or a write that meets damage, or a record that
cannot be decoded) is repaired on the spot: the driver checks it again
where no write is in progress, the engine keeps the last snapshot that
decodes and the deltas after it that decode and apply, the driver sets
the damaged log aside and writes the kept records as a new log, and the
metric is served from what was recovered (:meth:`SeriesStore.repair`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from oslo_config import cfg

from alarmer import conf as aconf
from alarmer.errors import AlarmerError
from alarmer.metrics import policy as ap
from alarmer.metrics.series import aggregation as agg
from alarmer.metrics.series import codec
from alarmer.metrics.series import drivers as storage

# A pure value (cross-series functions build them too), defined beside
# the aggregation; the store's readers return it.
from alarmer.metrics.series.aggregation import Series

# The drivers make_driver knows.
from alarmer.metrics.series.drivers import file as file_driver
from alarmer.metrics.series.drivers import redis as redis_driver

LOG = logging.getLogger(__name__)

_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)
#: Conditional writes retried this many times before giving up.
MAX_WRITE_ATTEMPTS = 200
_STRIPES = 64


class SeriesError(AlarmerError):
    """Base class of the metrics engine errors."""


class UnknownMethod(SeriesError, ValueError):
    """The aggregation method does not exist at all."""

    def __init__(self, method: str) -> None:
        super().__init__(f"Unknown aggregation method {method!r}")
        self.method = method


class AggregationNotStored(SeriesError, LookupError):
    """The metric's archive policy does not store this method."""

    def __init__(self, metric_id: str, method: str) -> None:
        super().__init__(
            f"Aggregation method {method!r} for metric {metric_id} "
            "does not exist"
        )
        self.metric_id = metric_id
        self.method = method


class GranularityNotStored(SeriesError, LookupError):
    """The metric's archive policy has no such granularity."""

    def __init__(self, metric_id: str, granularity: int) -> None:
        super().__init__(
            f"Granularity '{granularity / 1e9:g}' for metric {metric_id} "
            "does not exist"
        )
        self.metric_id = metric_id
        self.granularity = granularity


class WriteConflict(SeriesError):
    """Too many concurrent writers on one metric; the write was not done."""


@dataclasses.dataclass(frozen=True)
class MetricRef:
    """What the engine needs to know of a metric to write to it."""

    id: str
    policy: ap.ArchivePolicy


@dataclasses.dataclass(frozen=True)
class WriteResult:
    """Outcome of one metric's write."""

    stored: int
    refused: int
    oldest_accepted: int | None


@dataclasses.dataclass(frozen=True)
class Finding:
    """What checking (or repairing) one metric's stored series found."""

    metric_id: str
    #: Where the log is (a path, a key).
    where: str
    #: Every damage found; empty when the series is sound.
    damage: tuple[storage.Damage, ...]
    #: Records that verify, and those a repair keeps (or kept).
    frames: int
    kept: int
    #: Buckets of the state the kept records rebuild.
    points: int
    #: Where the damaged log was set aside (None: not repaired).
    aside: str | None = None

    @property
    def damaged(self) -> bool:
        """Whether anything was found."""
        return bool(self.damage)


@dataclasses.dataclass
class _Entry:
    """A metric's cached state, at the version of its log.

    Points this process appended in order after the newest one (the
    common write) are kept *pending*: they are in the log, durable and
    visible to every reader of the log, and are folded into the state
    only when something reads it (:attr:`state`), so a write does not
    pay for aggregation that a compaction or a read may do for many
    writes at once.
    """

    held: agg.MetricState | None = None
    version: storage.Version | None = None
    deltas: int = 0
    delta_bytes: int = 0
    size: int = 0
    #: The driver's change stamp taken before this state was last
    #: brought up to date (None: unknown, ask the driver).
    stamp: object = None
    #: Memo of :meth:`SeriesStore.last_buckets_many` reads:
    #: (method, granularity, n, stop) -> (version, timestamps, values).
    reads: dict[
        tuple[str, int, int, int | None],
        tuple[object, np.ndarray, np.ndarray],
    ] = dataclasses.field(default_factory=dict)
    #: Appended deltas not yet applied to :attr:`held`, oldest first.
    pending: list[tuple[np.ndarray, np.ndarray]] = dataclasses.field(
        default_factory=list
    )
    #: Newest timestamp of the pending points (None: nothing pending).
    pending_last: int | None = None

    @property
    def state(self) -> agg.MetricState | None:
        """The state with every pending point applied."""
        if self.pending:
            self.settle()
        return self.held

    @state.setter
    def state(self, value: agg.MetricState | None) -> None:
        self.held = value
        self.pending = []
        self.pending_last = None

    def settle(self) -> None:
        """Apply the pending points, one write at a time.

        Each write is applied as its own batch, as a replay of the log
        applies it: Gnocchi's batch rules (where a ``rate:`` bucket's
        first difference counts, which duplicate wins) depend on where
        one write ends and the next begins.
        """
        pending = self.pending
        self.pending = []
        self.pending_last = None
        if not pending or self.held is None:
            return
        for ts, values in pending:
            self.held.apply(ts, values)

    def defer(self, ts: np.ndarray) -> bool:
        """Whether *ts* can be appended without applying it now.

        True when the state holds points and *ts* is strictly increasing
        and newer than every point held or pending: such points are
        never refused (the back window lies before the newest point)
        and are all stored, so the write's outcome is known without
        aggregating.
        """
        held = self.held
        if held is None or held.last_ts is None or not ts.size:
            return False
        newest = (
            self.pending_last
            if self.pending_last is not None
            else held.last_ts
        )
        if int(ts[0]) <= newest:
            return False
        return ts.size == 1 or bool((ts[1:] > ts[:-1]).all())

    def add_pending(self, ts: np.ndarray, values: np.ndarray) -> None:
        """Remember points appended after a successful :meth:`defer`."""
        self.pending.append((ts, values))
        self.pending_last = int(ts[-1])

    def first_block_timestamp(self) -> int | None:
        """The state's oldest accepted timestamp, pending points counted."""
        held = self.held
        if held is None:
            return None
        if self.pending_last is None:
            return held.first_block_timestamp()
        block = held.policy.max_granularity
        last = self.pending_last
        blocks = held.policy.back_window + (1 if held.has_rate else 0)
        return last - last % block - blocks * block


class SeriesStore:
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
        # Results of last_buckets_many by (ids, method, granularity, n):
        # (change stamps taken before the read, timestamps, values,
        # estimated bytes); a quarter of cache_bytes at most.
        self._groups: collections.OrderedDict[
            tuple[object, ...],
            tuple[list[object], np.ndarray, np.ndarray, int],
        ] = collections.OrderedDict()
        self._group_bytes = 0

    # -- cache ---------------------------------------------------------------

    def _stripe(self, metric_id: str) -> threading.Lock:
        # str hashes are stable within a process, which is all the
        # stripes need (they only order this process's threads).
        return self._stripes[hash(metric_id) % _STRIPES]

    def _cache_get(self, metric_id: str) -> _Entry | None:
        with self._cache_lock:
            entry = self._cache.get(metric_id)
            if entry is not None:
                self._cache.move_to_end(metric_id)
            return entry

    def _cache_put(self, metric_id: str, entry: _Entry) -> None:
        held = entry.held
        size = 512 if held is None else agg.stored_bytes_estimate(held) + 512
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
        return self._apply_read(metric_id, cached, result)

    def _apply_read(
        self,
        metric_id: str,
        cached: _Entry | None,
        result: storage.LogRead,
    ) -> _Entry:
        """Bring *cached* (read at its version) up to *result*."""
        if result.damage is not None:
            return self._after_damage(metric_id, cache=True)
        if not result.reset and cached is not None:
            if not result.records:
                return cached
            entry = cached
        else:
            entry = _Entry(version=None)
        try:
            for record in result.records:
                self._replay(entry, record)
        except codec.CorruptRecord:
            return self._after_damage(metric_id, cache=True)
        entry.version = result.version
        if entry is cached and self._cache_get(metric_id) is cached:
            # Deltas applied in place to the cached entry: its size is
            # re-estimated at the next snapshot, as after a write.
            return entry
        if result.reset and entry.state is not None:
            entry.state.trim(self.hot_buckets)
        self._cache_put(metric_id, entry)
        return entry

    def _load_full(self, metric_id: str) -> _Entry:
        """The complete state, read afresh from the driver (not cached)."""
        result = self.driver.read(metric_id, None)
        if result.damage is not None:
            return self._after_damage(metric_id, cache=False)
        entry = _Entry(version=None)
        try:
            for record in result.records:
                self._replay(entry, record)
        except codec.CorruptRecord:
            return self._after_damage(metric_id, cache=False)
        entry.version = result.version
        return entry

    def _cache_trimmed(self, metric_id: str, entry: _Entry) -> None:
        if entry.state is not None:
            entry.state.trim(self.hot_buckets)
        self._cache_put(metric_id, entry)

    @staticmethod
    def _replay(entry: _Entry, record: bytes) -> None:
        """Apply one record to *entry*.

        :raises codec.CorruptRecord: undecodable, a delta with no
            snapshot before it, or one that does not apply.
        """
        kind = record[:1]
        if kind == codec.SNAPSHOT:
            entry.state = codec.decode_snapshot(record)
            entry.deltas = 0
            entry.delta_bytes = 0
            return
        if kind == codec.DELTA:
            if entry.state is None:
                raise codec.CorruptRecord("delta before any snapshot")
            ts, values = codec.decode_delta(record)
            try:
                entry.state.apply(ts, values)
            except Exception as exc:  # damaged values in a sound frame
                raise codec.CorruptRecord(
                    f"a delta that does not apply: {exc}"
                ) from exc
            entry.deltas += 1
            entry.delta_bytes += len(record)
            return
        raise codec.CorruptRecord(f"unknown record type {kind!r}")

    # -- damage --------------------------------------------------------------

    def _after_damage(self, metric_id: str, *, cache: bool) -> _Entry:
        """The metric's entry after a read met damage: repaired, re-read.

        What a read without lock took for damage may have been a write
        in progress; the driver checks again before repairing anything.
        """
        self._cache_drop(metric_id)
        for _attempt in range(3):
            _repair, entry = self._recover(metric_id)
            if entry is None:
                # Sound after all (or just repaired by someone else).
                result = self.driver.read(metric_id, None)
                if result.damage is not None:
                    continue
                entry = _Entry(version=None)
                try:
                    for record in result.records:
                        self._replay(entry, record)
                except codec.CorruptRecord:
                    continue
                entry.version = result.version
            if cache:
                self._cache_trimmed(metric_id, entry)
            return entry
        raise storage.SeriesStorageError(
            f"metric {metric_id}: stored series damaged again and again; "
            "not served"
        )

    @staticmethod
    def _salvage(
        scan: storage.Scan,
    ) -> tuple[storage.Salvage | None, _Entry]:
        """What to keep of a scanned log, and the state it rebuilds.

        The last snapshot that decodes, then every delta after it that
        decodes and applies.  None (and the state of the whole log) when
        the log is sound.
        """
        damage = list(scan.damage)
        snapshots: list[tuple[int, agg.MetricState]] = []
        deltas: list[tuple[int, np.ndarray, np.ndarray]] = []
        for index, record in enumerate(scan.records):
            try:
                kind = record[:1]
                if kind == codec.SNAPSHOT:
                    snapshots.append((index, codec.decode_snapshot(record)))
                elif kind == codec.DELTA:
                    deltas.append((index, *codec.decode_delta(record)))
                else:
                    raise codec.CorruptRecord(f"unknown record type {kind!r}")
            except codec.CorruptRecord as exc:
                damage.append(
                    storage.Damage(
                        storage.UNDECODABLE, f"record {index}: {exc}"
                    )
                )
        entry = _Entry(version=None)
        kept: list[bytes] = []
        if not snapshots:
            if deltas:
                damage.append(
                    storage.Damage(
                        storage.UNDECODABLE,
                        f"no snapshot that decodes: {len(deltas)} deltas "
                        "cannot be applied (left in the log set aside)",
                    )
                )
        else:
            start, state = snapshots[-1]
            early = sum(1 for d in deltas if d[0] < snapshots[0][0])
            if early:
                damage.append(
                    storage.Damage(
                        storage.UNDECODABLE,
                        f"{early} deltas before any snapshot (left in the "
                        "log set aside)",
                    )
                )
            entry.state = state
            kept.append(scan.records[start])
            for index, ts, values in deltas:
                if index < start:
                    continue  # folded into the snapshot
                try:
                    state.apply(ts, values)
                except Exception as exc:  # damaged values
                    damage.append(
                        storage.Damage(
                            storage.UNDECODABLE,
                            f"record {index}: a delta that does not "
                            f"apply: {exc}",
                        )
                    )
                    continue
                kept.append(scan.records[index])
                entry.deltas += 1
                entry.delta_bytes += len(scan.records[index])
        if not damage:
            return None, entry
        points = (
            sum(len(level) for level in entry.state.levels.values())
            if entry.state is not None
            else 0
        )
        return storage.Salvage(kept, damage, points), entry

    def _recover(
        self, metric_id: str
    ) -> tuple[storage.Repair | None, _Entry | None]:
        """Repair the log of *metric_id* if the driver finds it damaged.

        :returns: (the repair, the complete entry rebuilt from what was
            kept), or (None, None) when there was nothing to repair.
        """
        rebuilt: list[_Entry] = []

        def decide(scan: storage.Scan) -> storage.Salvage | None:
            salvage, entry = self._salvage(scan)
            rebuilt[:] = [entry]
            return salvage

        repair = self.driver.repair(metric_id, decide)
        if repair is None:
            return None, None
        entry = rebuilt[0]
        entry.version = repair.version
        if repair.version is None:
            entry = _Entry(version=None)
        with self._cache_lock:
            self._counters["damaged_series_repaired"] += 1
        LOG.error(
            "metric %s: damaged series %s (%s); kept %d of %d frames "
            "(%d points); the damaged log is kept at %s",
            metric_id,
            repair.where,
            "; ".join(f"{d.kind}: {d.detail}" for d in repair.damage),
            repair.kept,
            repair.frames,
            repair.points,
            repair.aside,
        )
        return repair, entry

    def inspect(self, metric_id: str) -> Finding | None:
        """Check the stored series of *metric_id*; change nothing.

        :returns: what was found (``damage`` empty: sound), None when
            nothing is stored.
        """
        scan = self.driver.scan(metric_id)
        if scan is None:
            return None
        salvage, entry = self._salvage(scan)
        points = (
            sum(len(level) for level in entry.state.levels.values())
            if entry.state is not None
            else 0
        )
        if salvage is None:
            n = len(scan.records)
            return Finding(metric_id, scan.where, (), n, n, points)
        return Finding(
            metric_id,
            scan.where,
            tuple(salvage.damage),
            len(scan.records),
            len(salvage.records),
            salvage.points,
        )

    def repair(self, metric_id: str) -> Finding | None:
        """Repair the stored series of *metric_id* if it is damaged.

        The damaged log is set aside (kept), a new one written from the
        last snapshot that decodes and the deltas after it, the repair
        logged and journaled.  :returns: the repair, or None when there
        was nothing to repair.
        """
        with self._stripe(metric_id):
            self._cache_drop(metric_id)
            repair, _entry = self._recover(metric_id)
        if repair is None:
            return None
        return Finding(
            metric_id,
            repair.where,
            repair.damage,
            repair.frames,
            repair.kept,
            repair.points,
            repair.aside,
        )

    def damage_report(self) -> dict[str, Any]:
        """Damaged series found and repaired so far, by every process.

        Read from the driver's journal, so it survives restarts.
        """
        journal = self.driver.damage_journal()
        kinds: collections.Counter[str] = collections.Counter()
        for entry in journal:
            kinds.update(entry.get("kinds") or ())
        last = journal[-1] if journal else None
        return {
            "repaired": len(journal),
            "by_kind": dict(sorted(kinds.items())),
            "last": None
            if last is None
            else {
                key: last.get(key)
                for key in ("time", "metric_id", "kinds", "kept", "aside")
            },
        }

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
        fresh = entry is None or entry.held is None
        if fresh:
            entry = self._load(metric.id)
        assert entry is not None
        due = (
            entry.deltas >= self.compact_deltas
            or entry.delta_bytes >= self.compact_bytes
        )
        # In-order points appended to a cached state: aggregated later.
        deferred = not due and self._deferrable(entry, metric, timestamps)
        if deferred:
            state = entry.held
            new = changed = compact = False
            applied = agg.ApplyResult(
                int(timestamps.size), 0, timestamps, values
            )
        else:
            state = entry.state
            new = state is None
            changed = state is not None and state.policy != metric.policy
            compact = new or changed or due
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
        if not deferred:
            applied = state.apply(timestamps, values)
        # Nothing to log: nothing changed (points all refused may still
        # change buckets; then ``applied.ts`` holds what to replay).
        if applied.ts.size == 0 and not changed:
            if not fresh:
                # Decide refusals on the latest data, not a stale cache.
                self._cache_drop(metric.id)
                return self._try_write(metric, timestamps, values)
            self._count(0, applied.refused, metric.id)
            return WriteResult(
                0, applied.refused, state.first_block_timestamp()
            )
        try:
            if compact:
                record = codec.encode_snapshot(state)
                if new and entry.version is None:
                    version = self.driver.append(metric.id, None, record)
                else:
                    version = self.driver.rewrite(
                        metric.id, entry.version, record
                    )
            else:
                record = codec.encode_delta(applied.ts, applied.values)
                version = self.driver.append(metric.id, entry.version, record)
        except storage.DamagedLog:
            # Nothing written: repair, then write again on what was kept.
            self._cache_drop(metric.id)
            self._recover(metric.id)
            return None
        if version is None:
            return None
        if compact:
            entry = _Entry(held=state, version=version)
            self._cache_trimmed(metric.id, entry)
        else:
            if deferred:
                entry.add_pending(timestamps, values)
            _appended(entry, version, record)
        self._count(applied.stored, applied.refused, metric.id)
        return WriteResult(
            applied.stored, applied.refused, entry.first_block_timestamp()
        )

    @staticmethod
    def _deferrable(
        entry: _Entry, metric: MetricRef, timestamps: np.ndarray
    ) -> bool:
        """Whether *timestamps* can be appended to the cached *entry*
        and applied later (see :meth:`_Entry.defer`)."""
        held = entry.held
        return (
            held is not None
            and entry.version is not None
            # The index hands out one policy object per name.
            and (held.policy is metric.policy or held.policy == metric.policy)
            and entry.defer(timestamps)
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

        With a driver whose ``append_many`` is cheaper than one append
        per metric (Redis: one pipeline; files: logs kept open), the
        common case -- a metric already in the cache receiving new points
        -- is aggregated and appended per stripe: the metrics of one
        stripe lock under that lock, with one ``append_many`` call, then
        the next stripe (a batch never holds the locks of metrics it is
        not writing).  Anything else (a new metric, a compaction due, a
        policy change, a lost race) goes through :meth:`add_measures`.
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
        results: list[WriteResult | None] = [None] * len(items)
        firsts, increasing = _runs(items)
        # One stripe at a time: a batch never holds the locks of metrics
        # it is not writing, so writers of other metrics go on.
        groups: dict[int, list[int]] = {}
        for pos, metric_id in enumerate(ids):
            groups.setdefault(hash(metric_id) % _STRIPES, []).append(pos)
        for stripe, positions in groups.items():
            with self._stripes[stripe]:
                self._write_cached(
                    items, positions, results, firsts, increasing
                )
        return [
            result if result is not None else self.add_measures(*items[pos])
            for pos, result in enumerate(results)
        ]

    def _write_cached(
        self,
        items: Sequence[tuple[MetricRef, np.ndarray, np.ndarray]],
        positions: Sequence[int],
        results: list[WriteResult | None],
        firsts: list[int],
        increasing: list[bool],
    ) -> None:
        """Write the cached metrics at *positions* with one
        ``append_many``; fill *results* for those written (the caller
        holds their stripe lock).

        *firsts* and *increasing*: each item's first timestamp and
        whether its timestamps are strictly increasing (see
        :func:`_runs`).
        """
        # (position, entry, points applied or None when deferred)
        pending: list[tuple[int, _Entry, agg.ApplyResult | None]] = []
        appends: list[tuple[str, storage.Version | None, bytes]] = []
        compact_deltas = self.compact_deltas
        compact_bytes = self.compact_bytes
        with self._cache_lock:
            cache = self._cache
            entries = [cache.get(items[pos][0].id) for pos in positions]
            for entry, pos in zip(entries, positions, strict=True):
                if entry is not None:
                    cache.move_to_end(items[pos][0].id)
        for pos, entry in zip(positions, entries, strict=True):
            metric, ts, vals = items[pos]
            if entry is None:
                continue
            held = entry.held
            if (
                held is None
                or entry.version is None
                or entry.deltas >= compact_deltas
                or entry.delta_bytes >= compact_bytes
            ):
                continue
            if held.policy is not metric.policy:
                if held.policy != metric.policy:
                    continue
                # The same policy: keep the index's object, which the
                # next writes hand in (compared by identity).
                held.policy = metric.policy
            # In-order points newer than everything held or pending are
            # appended and aggregated later (see _Entry.defer).
            newest = (
                entry.pending_last
                if entry.pending_last is not None
                else held.last_ts
            )
            if newest is not None and increasing[pos] and firsts[pos] > newest:
                pending.append((pos, entry, None))
                appends.append(
                    (metric.id, entry.version, codec.encode_delta(ts, vals))
                )
                continue
            state = entry.state
            assert state is not None
            applied = state.apply(ts, vals)
            if applied.ts.size == 0:
                continue
            pending.append((pos, entry, applied))
            appends.append(
                (
                    metric.id,
                    entry.version,
                    codec.encode_delta(applied.ts, applied.values),
                )
            )
        if not pending:
            return
        try:
            versions = self.driver.append_many(appends)
        except storage.DamagedLog:
            # Which appends were done is unknown: forget them all, write
            # each metric again (repairing the damaged one).
            for pos, _entry, _ in pending:
                self._cache_drop(items[pos][0].id)
            versions = [None] * len(pending)
        stored = refused = writes = conflicts = 0
        for (pos, entry, outcome), version, append in zip(
            pending, versions, appends, strict=True
        ):
            if version is None:
                conflicts += 1
                self._cache_drop(append[0])
                continue
            record = append[2]
            if outcome is None:
                _, ts, vals = items[pos]
                entry.pending.append((ts, vals))
                entry.pending_last = int(ts[-1])
                done = WriteResult(
                    int(ts.size), 0, entry.first_block_timestamp()
                )
            else:
                done = WriteResult(
                    outcome.stored,
                    outcome.refused,
                    entry.first_block_timestamp(),
                )
            entry.version = version
            entry.stamp = version.stamp
            entry.deltas += 1
            entry.delta_bytes += len(record)
            stored += done.stored
            refused += done.refused
            writes += 1
            results[pos] = done
        with self._cache_lock:
            self._counters["measures_stored"] += stored
            self._counters["writes"] += writes
            if refused:
                self._counters["measures_refused_late"] += refused
            if conflicts:
                self._counters["write_conflicts"] += conflicts

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
        self,
        metric_id: str,
        method: str,
        granularity: int,
        n: int,
        *,
        stop: int | None = None,
    ) -> Series:
        """The newest *n* buckets of one series (current one included).

        With *stop* (ns), only the buckets starting before *stop* count:
        the newest *n* of the series read ``[..., stop)``, as a Gnocchi
        read with ``stop`` returns them; buckets stamped later (a client
        clock ahead of ours) do not push older ones out.
        """
        stop = cut_time(stop, granularity)
        with self._stripe(metric_id):
            state = self._state_for_read(metric_id, method)
            if state is None:
                return Series(granularity, _EMPTY_I, _EMPTY_F)
            if granularity not in state.levels:
                raise GranularityNotStored(metric_id, granularity)
            ts, values = state.read_last(method, granularity, n, stop)
            if ts.size < n and not state.covers(granularity, None):
                full = self._complete_state(metric_id, method)
                if full is not None and granularity in full.levels:
                    ts, values = full.read_last(method, granularity, n, stop)
            return Series(granularity, ts, values)

    def last_buckets_many(
        self,
        metric_ids: Sequence[str],
        method: str,
        granularity: int,
        n: int,
        *,
        stop: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The newest *n* buckets of several series, as one matrix.

        Row *i* holds what :meth:`last_buckets` returns for
        ``metric_ids[i]``, laid on the union of the timestamps of all the
        rows (NaN where a series has no bucket).  Each metric costs one
        driver change stamp when its cached state is current (one
        ``stat()`` with the file driver) and one log read otherwise
        (one pipeline for all of them with Redis).

        The result is remembered while the driver's change stamps of the
        metrics are unchanged; the arrays are read-only.

        With *stop* (ns), each row is cut as :meth:`last_buckets` cuts
        it: only buckets starting before *stop*.

        :returns: (timestamps int64[T], values float64[M, T]).
        :raises UnknownMethod: *method* is not an aggregation method.
        :raises AggregationNotStored: a metric's policy does not store it.
        :raises GranularityNotStored: a metric's policy lacks
            *granularity*.
        """
        if not ap.is_valid_method(method):
            raise UnknownMethod(method)
        ids = list(metric_ids)
        if not ids:
            return _EMPTY_I, np.empty((0, 0), dtype=np.float64)
        stop = cut_time(stop, granularity)
        stamps = self.driver.stamps(ids)
        group_key = (tuple(ids), method, granularity, n, stop)
        if stamps is not None:
            found = self._groups.get(group_key)
            if found is not None and found[0] == stamps:
                with self._cache_lock:
                    if group_key in self._groups:
                        self._groups.move_to_end(group_key)
                return found[1], found[2]
        entries = self._current_entries(ids, stamps)
        times, grid = self._gather(
            ids, entries, method, granularity, n, stop=stop
        )
        if stamps is not None:
            self._remember_group(group_key, stamps, times, grid)
        return times, grid

    def _gather(
        self,
        ids: list[str],
        entries: list[_Entry],
        method: str,
        granularity: int,
        n: int,
        *,
        stop: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows of :meth:`last_buckets_many` from current *entries*.

        The common rows (a cached state holding at least *n* buckets,
        each with a value) are read as one matrix
        (:func:`~alarmer.metrics.series.aggregation.read_last_many`) under
        every
        stripe lock, so no write of this process is half applied; the
        others go through :meth:`_memo_read`, one by one.
        """
        key = (method, granularity, n, stop)
        m = len(ids)
        levels: list[agg.Level | None] = [None] * m
        checked: dict[int, bool] = {}
        if n > 0:
            for lock in self._stripes:
                lock.acquire()
            try:
                with self._cache_lock:
                    cache = self._cache
                    for i, entry in enumerate(entries):
                        state = entry.state
                        if state is None or cache.get(ids[i]) is not entry:
                            continue
                        policy = state.policy
                        good = checked.get(id(policy))
                        if good is None:
                            good = method in policy.aggregation_methods
                            checked[id(policy)] = good
                        if good:
                            levels[i] = state.levels.get(granularity)
                tsm, values, ok = agg.read_last_many(levels, method, n, stop)
            finally:
                for lock in self._stripes:
                    lock.release()
        else:
            ok = np.zeros(m, dtype=bool)
        slow = np.flatnonzero(~ok).tolist()
        if not slow:
            first = tsm[0]
            if m == 1 or bool((tsm == first).all()):
                return first.copy(), values
        rows_ts: list[np.ndarray] = [_EMPTY_I] * m
        rows_v: list[np.ndarray] = [_EMPTY_F] * m
        for i in np.flatnonzero(ok).tolist():
            rows_ts[i] = tsm[i]
            rows_v[i] = values[i]
        for i in slow:
            entry = entries[i]
            memo = entry.reads.get(key)
            if memo is None or memo[0] is not entry.version:
                memo = self._memo_read(ids[i], entry, key)
            rows_ts[i] = memo[1]
            rows_v[i] = memo[2]
        return align_rows(rows_ts, rows_v)

    def _remember_group(
        self,
        key: tuple[object, ...],
        stamps: list[object],
        times: np.ndarray,
        grid: np.ndarray,
    ) -> None:
        size = 96 * len(stamps) + 16 * grid.size + 512
        limit = self.cache_bytes // 4
        if size > limit // 16:
            return
        times.flags.writeable = False
        grid.flags.writeable = False
        with self._cache_lock:
            old = self._groups.pop(key, None)
            if old is not None:
                self._group_bytes -= old[3]
            self._groups[key] = (stamps, times, grid, size)
            self._group_bytes += size
            while self._group_bytes > limit:
                _, evicted = self._groups.popitem(last=False)
                self._group_bytes -= evicted[3]

    def _current_entries(
        self, ids: list[str], stamps: list[object] | None
    ) -> list[_Entry]:
        """Cached entries of *ids*, brought up to date where needed.

        *stamps*: the driver's change stamps, taken before this call.
        """
        with self._cache_lock:
            cache = self._cache
            found: list[_Entry | None] = []
            for metric_id in ids:
                entry = cache.get(metric_id)
                if entry is not None:
                    cache.move_to_end(metric_id)
                found.append(entry)
        if stamps is None:
            stale = list(range(len(ids)))
        else:
            stale = [
                i
                for i, entry in enumerate(found)
                if entry is None
                or entry.stamp is None
                or entry.stamp != stamps[i]
            ]
        if not stale:
            return found  # type: ignore[return-value]
        results = self.driver.read_many(
            [
                (ids[i], found[i].version if found[i] is not None else None)  # type: ignore[union-attr]
                for i in stale
            ]
        )
        for i, result in zip(stale, results, strict=True):
            metric_id = ids[i]
            with self._stripe(metric_id):
                cached = self._cache_get(metric_id)
                if cached is found[i] and (
                    cached is None or cached.version == found[i].version  # type: ignore[union-attr]
                ):
                    entry = self._apply_read(metric_id, cached, result)
                else:  # changed meanwhile in this process: read again
                    entry = self._load(metric_id)
                if stamps is not None:
                    entry.stamp = stamps[i]
            found[i] = entry
        return found  # type: ignore[return-value]

    def _memo_read(
        self,
        metric_id: str,
        entry: _Entry,
        key: tuple[str, int, int, int | None],
    ) -> tuple[object, np.ndarray, np.ndarray]:
        method, granularity, n, stop = key
        with self._stripe(metric_id):
            if self._cache_get(metric_id) is not entry:
                # Replaced or dropped (e.g. a lost write race): re-read.
                entry = self._load(metric_id)
            state = entry.state
            if state is None:
                memo = (entry.version, _EMPTY_I, _EMPTY_F)
                entry.reads[key] = memo
                return memo
            if method not in state.policy.aggregation_methods:
                raise AggregationNotStored(metric_id, method)
            if granularity not in state.levels:
                raise GranularityNotStored(metric_id, granularity)
            ts, values = state.read_last(method, granularity, n, stop)
            if ts.size < n and not state.covers(granularity, None):
                full = self._complete_state(metric_id, method)
                if full is not None and granularity in full.levels:
                    ts, values = full.read_last(method, granularity, n, stop)
            memo = (entry.version, ts, values)
            if len(entry.reads) >= 8:
                entry.reads.clear()
            entry.reads[key] = memo
            return memo

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
            self._groups.clear()
            self._group_bytes = 0
            self._cached_bytes = 0
        self.driver.close()


def _appended(entry: _Entry, version: storage.Version, record: bytes) -> None:
    """Bring *entry* to the *version* its delta *record* made."""
    entry.version = version
    entry.stamp = version.stamp
    entry.deltas += 1
    entry.delta_bytes += len(record)


def _runs(
    items: Sequence[tuple[MetricRef, np.ndarray, np.ndarray]],
) -> tuple[list[int], list[bool]]:
    """Each item's first timestamp (0 when it has none) and whether its
    timestamps are strictly increasing, computed for all items at once.
    """
    sizes = np.fromiter(
        (ts.size for _, ts, _ in items), dtype=np.int64, count=len(items)
    )
    if not sizes.all():
        firsts = [int(ts[0]) if ts.size else 0 for _, ts, _ in items]
        return firsts, [
            ts.size > 0 and bool((ts[1:] > ts[:-1]).all())
            for _, ts, _ in items
        ]
    stamps = np.concatenate([ts for _, ts, _ in items])
    starts = np.zeros(len(items), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    # rises[k]: stamps[k] > stamps[k - 1]; the first point of each item
    # has nothing before it in that item.
    rises = np.ones(stamps.size, dtype=bool)
    rises[1:] = stamps[1:] > stamps[:-1]
    rises[starts] = True
    increasing = np.logical_and.reduceat(rises, starts)
    return stamps[starts].tolist(), increasing.tolist()


def cut_time(stop: int | None, granularity: int) -> int | None:
    """*stop* rounded up to a bucket start of *granularity* (ns).

    Buckets start at multiples of their granularity, so "starting
    before *stop*" and "starting before the rounded value" select the
    same buckets; the rounded value keys the memos of reads made within
    one bucket alike.
    """
    if stop is None or granularity <= 0:
        return stop
    return -(-int(stop) // granularity) * granularity


def align_rows(
    rows_ts: Sequence[np.ndarray], rows_v: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Lay series on the union of their timestamps (NaN in the gaps).

    :param rows_ts: sorted, unique int64 timestamps of each series.
    :param rows_v: the values of each series.
    :returns: (timestamps int64[T], values float64[M, T]).
    """
    m = len(rows_ts)
    sizes = [t.size for t in rows_ts]
    width = sizes[0] if sizes else 0
    if all(size == width for size in sizes):
        if width == 0:
            return _EMPTY_I, np.empty((m, 0), dtype=np.float64)
        first = rows_ts[0]
        if m == 1 or bool(
            (np.concatenate(rows_ts).reshape(m, width) == first).all()
        ):
            values = np.concatenate(rows_v).astype(np.float64, copy=False)
            return first.copy(), values.reshape(m, width)
    times, inverse = np.unique(np.concatenate(rows_ts), return_inverse=True)
    grid = np.full((m, times.size), np.nan, dtype=np.float64)
    grid[np.repeat(np.arange(m), sizes), inverse] = np.concatenate(rows_v)
    return times.astype(np.int64, copy=False), grid


def make_driver(conf: cfg.ConfigOpts) -> storage.SeriesDriver:
    """Build the driver named by ``[storage] driver``."""
    name = conf.storage.driver
    if name == "file":
        base = conf.storage.file_basepath or os.path.join(
            aconf.data_dir(conf), "series"
        )
        return file_driver.FileDriver(base, fsync=conf.storage.file_fsync)
    if name == "redis":
        return redis_driver.RedisDriver(
            conf.storage.redis_url, prefix=conf.storage.redis_key_prefix
        )
    raise storage.SeriesStorageError(f"Unknown [storage] driver {name!r}")


def make_store(conf: cfg.ConfigOpts) -> SeriesStore:
    """Build the engine configured by the ``[storage]`` section."""
    return SeriesStore(
        make_driver(conf),
        cache_bytes=conf.storage.cache_size_mb * 1024 * 1024,
    )
