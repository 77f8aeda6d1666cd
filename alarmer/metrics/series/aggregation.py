"""Pure numpy aggregation with Gnocchi's bucket semantics (no I/O).

Buckets are epoch-aligned and stamped at their start.  A metric keeps,
for each granularity of its archive policy, a set of *columns*: the
primitive per-bucket quantities from which every stored method is read
(``count``, ``sum``, ``min``, ``max``, ``first``, ``last``, ``m2`` -- the
sum of squared deviations from the bucket mean -- and one column per
sorted statistic such as ``median`` or ``95pct``).  ``mean`` is read as
``sum / count`` and ``std`` as ``sqrt(m2 / (count - 1))`` (sample standard
deviation; a one-point bucket has no std value).  ``rate:X`` columns are
the same quantities over the differences of consecutive raw values, each
stamped at the later point.

Keeping primitives instead of final values makes appending a point to the
open bucket an O(1) update (Welford's algorithm for ``m2``), while bulk
computation uses ``ufunc.reduceat`` over the sorted input (O(n), no
argsort).  Sorted statistics are computed with one per-bucket sort that
serves every percentile.

:class:`MetricState` holds one metric: the policy, the raw points still
inside the back window and one :class:`Level` per granularity.
:meth:`MetricState.apply` merges new points (refusing late ones) and
recomputes only what they change.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np

from alarmer.errors import AlarmerError
from alarmer.metrics import policy as ap

#: Buckets held beyond a level's timespan, for the series whose newest
#: value is older than the newest bucket (``std``, ``rate:``).
RETENTION_SLACK = 16
#: Primitive columns that accumulate in O(1) per appended point.
PRIMITIVES = ("count", "sum", "min", "max", "first", "last", "m2")
RATE = "rate:"
_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Series:
    """One aggregated series: bucket starts (int64 ns) and values."""

    granularity: int
    timestamps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.timestamps.size)


class AggregationError(AlarmerError, ValueError):
    """Base class of the aggregation errors."""


class UnknownMethodError(AggregationError):
    """The aggregation method does not exist."""

    def __init__(self, method: str) -> None:
        super().__init__(f"Unknown aggregation method {method!r}")
        self.method = method


def _base_columns(base: str) -> tuple[str, ...]:
    if base == "mean":
        return ("sum", "count")
    if base == "std":
        return ("sum", "count", "m2")
    if base in PRIMITIVES:
        return (base,)
    return (base,)  # median / Npct: a sorted column of its own


def columns_for(methods: Iterable[str]) -> tuple[str, ...]:
    """Columns needed to answer every method of *methods*.

    ``count`` is always kept (it marks which buckets exist), and
    ``rate:count`` as soon as one ``rate:`` method is stored.
    """
    cols = {"count"}
    for method in methods:
        if not ap.is_valid_method(method):
            raise UnknownMethodError(method)
        if method.startswith(RATE):
            base = method[len(RATE) :]
            cols.add(RATE + "count")
            cols.update(RATE + c for c in _base_columns(base))
        else:
            cols.update(_base_columns(method))
    return tuple(sorted(cols))


def _is_sorted_column(col: str) -> bool:
    return col.removeprefix(RATE) not in PRIMITIVES


def _quantile_of(col: str) -> float | None:
    """None for ``median``, else the percentile (0..100) of a column."""
    base = col.removeprefix(RATE)
    if base == "median":
        return None
    pct = ap.percentile_of(base)
    assert pct is not None, col
    return float(pct)


# ---------------------------------------------------------------------------
# Bulk computation over sorted raw points


def bucket_starts(ts: np.ndarray, granularity: int) -> np.ndarray:
    """Epoch-aligned bucket start of each timestamp (ns, ts >= 0)."""
    starts: np.ndarray = ts - ts % granularity
    return starts


def segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, start offsets) of runs in sorted *keys*."""
    if keys.size == 0:
        return _EMPTY_I, _EMPTY_I
    brk = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    offsets = np.empty(brk.size + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = brk
    return keys[offsets], offsets


def sort_segments(
    values: np.ndarray, offsets: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Return *values* with each segment sorted ascending, in place order.

    Uniform segments are sorted as the rows of a 2-D view; ragged ones as
    the rows of a padded 2-D array when the padding stays small, else with
    one lexicographic sort of (segment, value).
    """
    n = values.size
    nseg = offsets.size
    if n == 0:
        return values.copy()
    width = int(counts.max())
    if width == int(counts.min()):
        rows: np.ndarray = np.sort(values.reshape(nseg, width), axis=1)
        return rows.reshape(n)
    if nseg * width <= 2 * n + 4096:
        seg = np.repeat(np.arange(nseg), counts)
        col = np.arange(n) - np.repeat(offsets, counts)
        grid = np.full((nseg, width), np.inf)
        grid[seg, col] = values
        grid.sort(axis=1)
        padded: np.ndarray = grid[seg, col]
        return padded
    seg = np.repeat(np.arange(nseg), counts)
    return values[np.lexsort((values, seg))]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    # numpy.percentile's 'linear' interpolation, with its rounding.
    diff = b - a
    out: np.ndarray = a + diff * t
    np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5)
    return out


def segment_quantile(
    sorted_values: np.ndarray,
    offsets: np.ndarray,
    counts: np.ndarray,
    q: float | None,
) -> np.ndarray:
    """Per-segment median (*q* None) or percentile *q* (linear)."""
    if offsets.size == 0:
        return _EMPTY_F
    if q is None:
        half = counts // 2
        upper = sorted_values[offsets + half]
        lower = sorted_values[offsets + np.maximum(half - 1, 0)]
        odd = (counts % 2) == 1
        medians: np.ndarray = np.where(odd, upper, (lower + upper) / 2)
        return medians
    quant = q / 100
    virtual = counts * quant + (1 - quant) - 1
    prev = np.floor(virtual)
    gamma = virtual - prev
    lo = np.clip(prev.astype(np.int64), 0, counts - 1)
    hi = np.minimum(lo + 1, counts - 1)
    return _lerp(
        sorted_values[offsets + lo], sorted_values[offsets + hi], gamma
    )


def _stats(
    values: np.ndarray,
    offsets: np.ndarray,
    counts: np.ndarray,
    wanted: Iterable[str],
) -> dict[str, np.ndarray]:
    """Primitive and sorted columns (unprefixed names) over segments."""
    out: dict[str, np.ndarray] = {}
    wanted = set(wanted)
    n = values.size
    if offsets.size == 0:
        return {c: _EMPTY_F for c in wanted}
    if "count" in wanted:
        out["count"] = counts.astype(np.float64)
    need_sum = "sum" in wanted or "m2" in wanted
    if need_sum:
        sums = np.add.reduceat(values, offsets)
        if "sum" in wanted:
            out["sum"] = sums
    if "min" in wanted:
        out["min"] = np.minimum.reduceat(values, offsets)
    if "max" in wanted:
        out["max"] = np.maximum.reduceat(values, offsets)
    if "first" in wanted:
        out["first"] = values[offsets]
    if "last" in wanted:
        ends = np.empty_like(offsets)
        ends[:-1] = offsets[1:]
        ends[-1] = n
        out["last"] = values[ends - 1]
    if "m2" in wanted:
        means = sums / counts
        dev = values - np.repeat(means, counts)
        out["m2"] = np.add.reduceat(dev * dev, offsets)
    sorted_cols = [c for c in wanted if c not in PRIMITIVES]
    if sorted_cols:
        sv = sort_segments(values, offsets, counts)
        for col in sorted_cols:
            out[col] = segment_quantile(sv, offsets, counts, _quantile_of(col))
    return out


def compute_buckets(
    ts: np.ndarray,
    values: np.ndarray,
    granularity: int,
    columns: Sequence[str],
    prev_value: float | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Aggregate sorted, unique raw points into buckets.

    :param prev_value: the raw value just before ``ts[0]`` (for ``rate:``
        columns), None when there is none.
    :returns: (bucket starts, {column: values}); rate columns hold NaN
        (and ``rate:count`` 0) in buckets without any difference.
    """
    keys = bucket_starts(ts, granularity)
    starts, offsets = segments(keys)
    counts = np.diff(np.append(offsets, ts.size))
    plain = [c for c in columns if not c.startswith(RATE)]
    rated = [c[len(RATE) :] for c in columns if c.startswith(RATE)]
    cols = _stats(values, offsets, counts, plain)
    if rated:
        if prev_value is None:
            dvals = np.diff(values)
            dkeys = keys[1:]
        else:
            dvals = np.diff(values, prepend=prev_value)
            dkeys = keys
        rstarts, roffsets = segments(dkeys)
        rcounts = np.diff(np.append(roffsets, dvals.size))
        rcols = _stats(dvals, roffsets, rcounts, rated)
        pos = np.searchsorted(starts, rstarts)
        for name, arr in rcols.items():
            full = np.full(starts.size, 0.0 if name == "count" else np.nan)
            full[pos] = arr
            cols[RATE + name] = full
    return starts, cols


# ---------------------------------------------------------------------------
# Reading a method out of columns


def _list_quantile(ordered: list[float], q: float | None) -> float:
    """:func:`segment_quantile` of one sorted Python list."""
    n = len(ordered)
    if q is None:
        half = n // 2
        if n % 2:
            return ordered[half]
        return (ordered[half - 1] + ordered[half]) / 2
    quant = q / 100
    virtual = n * quant + (1 - quant) - 1
    prev = math.floor(virtual)
    gamma = virtual - prev
    lo = min(max(prev, 0), n - 1)
    hi = min(lo + 1, n - 1)
    a = ordered[lo]
    diff = ordered[hi] - a
    if gamma >= 0.5:
        return ordered[hi] - diff * (1 - gamma)
    return a + diff * gamma


def method_values(
    method: str, cols: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Values of *method* and a mask of the buckets that have one.

    The mask is None when every bucket has a value.
    """
    prefix = ""
    base = method
    if method.startswith(RATE):
        prefix = RATE
        base = method[len(RATE) :]
    count = cols[prefix + "count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        if base == "mean":
            vals = cols[prefix + "sum"] / count
        elif base == "std":
            m2 = cols[prefix + "m2"]
            vals = np.sqrt(np.maximum(m2, 0.0) / (count - 1))
            # One value: no std, unless one was kept (as -std, see
            # _keep_rates).
            single = count <= 1
            vals[single] = np.where(m2[single] < 0, -m2[single], np.nan)
        else:
            vals = cols[prefix + base]
    # NaN marks a bucket without a value (one-point std, no difference
    # yet for rate:, a method added to the policy after the bucket).
    mask = ~np.isnan(vals)
    if prefix:
        mask &= count > 0
    if mask.all():
        return vals, None
    return vals, mask


# ---------------------------------------------------------------------------
# Per-metric state


def _grown(arr: np.ndarray, lo: int, hi: int, cap: int) -> np.ndarray:
    out = np.empty(cap, dtype=arr.dtype)
    out[: hi - lo] = arr[lo:hi]
    return out


class Level:
    """The buckets of one granularity: timestamps and columns.

    Arrays carry spare capacity at the end (appending a bucket is O(1)
    amortized) and a moving start (retention drops old buckets without
    copying); :attr:`ts` and :attr:`cols` are views of the live part.
    """

    __slots__ = ("_cols", "_ts", "granularity", "hi", "lo", "span")

    def __init__(
        self,
        granularity: int,
        ts: np.ndarray,
        cols: dict[str, np.ndarray],
        span: int | None = None,
    ) -> None:
        self.granularity = granularity
        #: The policy's timespan (ns) of this granularity (None: forever).
        self.span = span
        self._set(ts, cols)

    def _set(self, ts: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        self._ts = ts
        self._cols = dict(cols)
        self.lo = 0
        self.hi = int(ts.size)

    @classmethod
    def empty(
        cls,
        granularity: int,
        columns: Iterable[str],
        span: int | None = None,
    ) -> Level:
        return cls(granularity, _EMPTY_I, {c: _EMPTY_F for c in columns}, span)

    @property
    def ts(self) -> np.ndarray:
        """Bucket starts (a view)."""
        return self._ts[self.lo : self.hi]

    @property
    def cols(self) -> dict[str, np.ndarray]:
        """Columns (views)."""
        lo, hi = self.lo, self.hi
        return {k: v[lo:hi] for k, v in self._cols.items()}

    def __len__(self) -> int:
        return self.hi - self.lo

    def nbytes(self) -> int:
        """Bytes held, spare capacity included."""
        return self._ts.nbytes + sum(v.nbytes for v in self._cols.values())

    def replace_from(
        self, start: int, ts: np.ndarray, cols: dict[str, np.ndarray]
    ) -> None:
        """Replace every bucket >= *start* by the given ones."""
        cut = self.lo + int(np.searchsorted(self.ts, start))
        end = cut + int(ts.size)
        if end <= self._ts.size:
            self._ts[cut:end] = ts
            for name, arr in self._cols.items():
                arr[cut:end] = cols[name]
            self.hi = end
            return
        if cut == self.lo:
            self._set(ts, cols)
            return
        self._set(
            np.concatenate((self._ts[self.lo : cut], ts)),
            {
                name: np.concatenate((arr[self.lo : cut], cols[name]))
                for name, arr in self._cols.items()
            },
        )

    def append(self, start: int) -> int:
        """Add an (uninitialised) bucket at the end; return its index."""
        if self.hi == self._ts.size:
            live = self.hi - self.lo
            cap = max(16, live * 2)
            self._ts = _grown(self._ts, self.lo, self.hi, cap)
            self._cols = {
                k: _grown(v, self.lo, self.hi, cap)
                for k, v in self._cols.items()
            }
            self.lo, self.hi = 0, live
        index = self.hi
        self._ts[index] = start
        self.hi += 1
        return index

    def truncate(self, points: int | None) -> None:
        """Drop the buckets no read can return any more.

        A series keeps the buckets newer than its own newest value minus
        ``points * granularity``; the newest value of ``std`` or of a
        ``rate:`` method may be a few buckets older than the newest
        bucket, so :data:`RETENTION_SLACK` more buckets stay held and
        reads cut each series (:meth:`horizon`).
        """
        if points is None or self.hi == self.lo:
            return
        horizon = (
            int(self._ts[self.hi - 1])
            - (points + RETENTION_SLACK) * self.granularity
        )
        if self._ts[self.lo] > horizon:
            return
        self.lo += int(np.searchsorted(self.ts, horizon, side="right"))

    def horizon(self, method: str) -> int | None:
        """Newest bucket start *method*'s series no longer returns.

        The newest bucket with a value of *method* minus the timespan;
        None when the level keeps every bucket, and the newest bucket
        held when *method* has no value in any bucket.
        """
        if self.span is None or self.hi == self.lo:
            return None
        hi = self.hi
        step = 4
        names = method_columns(method)
        while hi > self.lo:
            lo = max(hi - step, self.lo)
            _, mask = method_values(
                method, {k: self._cols[k][lo:hi] for k in names}
            )
            if mask is None:
                return int(self._ts[hi - 1]) - self.span
            found = np.flatnonzero(mask)
            if found.size:
                return int(self._ts[lo + int(found[-1])]) - self.span
            hi = lo
            step *= 4
        return int(self._ts[self.hi - 1])


class RawBuffer:
    """Raw points still inside the back window (sorted, unique)."""

    __slots__ = ("_ts", "_values", "hi", "lo")

    def __init__(self, ts: np.ndarray, values: np.ndarray) -> None:
        self.set(ts, values)

    def set(self, ts: np.ndarray, values: np.ndarray) -> None:
        self._ts = ts
        self._values = values
        self.lo = 0
        self.hi = int(ts.size)

    @property
    def ts(self) -> np.ndarray:
        return self._ts[self.lo : self.hi]

    @property
    def values(self) -> np.ndarray:
        return self._values[self.lo : self.hi]

    def append(self, ts: int, value: float) -> None:
        if self.hi == self._ts.size:
            live = self.hi - self.lo
            cap = max(16, live * 2)
            self._ts = _grown(self._ts, self.lo, self.hi, cap)
            self._values = _grown(self._values, self.lo, self.hi, cap)
            self.lo, self.hi = 0, live
        self._ts[self.hi] = ts
        self._values[self.hi] = value
        self.hi += 1

    def nbytes(self) -> int:
        return self._ts.nbytes + self._values.nbytes


def _init_bucket(
    cols: dict[str, np.ndarray], i: int, v: float, prefix: str
) -> None:
    cols[prefix + "count"][i] = 1.0
    for name in ("sum", "min", "max", "first", "last"):
        arr = cols.get(prefix + name)
        if arr is not None:
            arr[i] = v
    arr = cols.get(prefix + "m2")
    if arr is not None:
        arr[i] = 0.0


def _keep_rates(level: Level, start: int, cols: dict[str, np.ndarray]) -> None:
    """Keep what bucket *start* had for ``rate:`` methods it now lacks.

    *cols* is the recomputed first bucket (index 0) with at most one
    difference.  As Gnocchi merges a recomputed series into the stored
    one, a method without a value in it keeps its stored value: every
    ``rate:`` one when there is no difference, ``rate:std`` when there
    is one (then kept as ``-std`` in the ``m2`` column).
    """
    ts = level.ts
    k = int(np.searchsorted(ts, start))
    if k == ts.size or ts[k] != start:
        return
    k += level.lo
    old = level._cols
    if cols[RATE + "count"][0] == 0:
        for name, arr in old.items():
            if name.startswith(RATE):
                cols[name][0] = arr[k]
        return
    m2 = RATE + "m2"
    if m2 in cols:
        count = float(old[RATE + "count"][k])
        kept = float(old[m2][k])
        if count > 1:
            kept = -math.sqrt(max(kept, 0.0) / (count - 1))
        cols[m2][0] = min(kept, 0.0)


def _empty_rate_bucket(cols: dict[str, np.ndarray], i: int) -> None:
    for name, arr in cols.items():
        if name.startswith(RATE):
            arr[i] = 0.0 if name == RATE + "count" else np.nan


def _update_bucket(
    cols: dict[str, np.ndarray], i: int, v: float, prefix: str
) -> None:
    counts = cols[prefix + "count"]
    n0 = float(counts[i])
    if n0 == 0.0:
        _init_bucket(cols, i, v, prefix)
        return
    n1 = n0 + 1.0
    counts[i] = n1
    sums = cols.get(prefix + "sum")
    if sums is not None:
        s0 = float(sums[i])
        s1 = s0 + v
        sums[i] = s1
        m2 = cols.get(prefix + "m2")
        if m2 is not None:
            # Welford: M2 += (v - old mean) * (v - new mean); one value
            # has M2 0 (the column may hold a kept std then).
            m2_0 = float(m2[i]) if n0 > 1.0 else 0.0
            m2[i] = m2_0 + (v - s0 / n0) * (v - s1 / n1)
    arr = cols.get(prefix + "min")
    if arr is not None and v < arr[i]:
        arr[i] = v
    arr = cols.get(prefix + "max")
    if arr is not None and v > arr[i]:
        arr[i] = v
    arr = cols.get(prefix + "last")
    if arr is not None:
        arr[i] = v


@dataclasses.dataclass
class ApplyResult:
    """Outcome of :meth:`MetricState.apply`."""

    stored: int
    refused: int
    #: The accepted points, sorted and unique (what a log must replay).
    ts: np.ndarray
    values: np.ndarray


def dedupe_sorted(
    ts: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sort by timestamp; on duplicates the smallest value wins.

    That is Gnocchi's rule for one processing batch: it sorts the batch
    by (timestamp, value) and keeps the first point of each timestamp.
    """
    ts = np.asarray(ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if ts.size <= 1:
        return ts, values
    steps = np.diff(ts)
    if (steps > 0).all():
        return ts, values
    order = np.lexsort((values, ts))
    ts = ts[order]
    values = values[order]
    keep = np.empty(ts.size, dtype=bool)
    keep[0] = True
    np.not_equal(ts[1:], ts[:-1], out=keep[1:])
    return ts[keep], values[keep]


#: Batches up to this size, all newer than the last point, take the
#: scalar incremental path (O(1) per point and level).
FAST_PATH_MAX = 16


class MetricState:
    """Everything stored for one metric (pure data, no I/O)."""

    __slots__ = (
        "_open_sorted",
        "_sorted_cols",
        "columns",
        "has_rate",
        "history_from",
        "last_ts",
        "levels",
        "policy",
        "raw",
    )

    def __init__(self, policy: ap.ArchivePolicy) -> None:
        self.last_ts: int | None = None
        self.raw = RawBuffer(_EMPTY_I, _EMPTY_F)
        #: granularity -> first bucket held in memory, for the levels
        #: whose older buckets were dropped by :meth:`trim` (they are
        #: only in storage); empty when the state is complete.
        self.history_from: dict[int, int] = {}
        self._adopt(policy)
        self.levels: dict[int, Level] = {
            item.granularity: Level.empty(
                item.granularity, self.columns, item.timespan
            )
            for item in policy.definition
        }

    def _adopt(self, policy: ap.ArchivePolicy) -> None:
        self.policy = policy
        self.columns = columns_for(policy.aggregation_methods)
        self.has_rate = any(c.startswith(RATE) for c in self.columns)
        self._sorted_cols = tuple(
            c for c in self.columns if _is_sorted_column(c)
        )
        #: granularity -> (open bucket start, its sorted values, sorted
        #: differences): a cache for the sorted columns, rebuilt lazily.
        self._open_sorted: dict[
            int, tuple[int, list[float], list[float] | None]
        ] = {}

    @property
    def raw_ts(self) -> np.ndarray:
        """Timestamps of the raw points kept."""
        return self.raw.ts

    @property
    def raw_values(self) -> np.ndarray:
        """Values of the raw points kept."""
        return self.raw.values

    # -- policy ------------------------------------------------------------

    def first_block_timestamp(self) -> int | None:
        """Oldest timestamp still accepted (None: everything is).

        The start of the coarsest bucket of the newest point, minus
        ``back_window`` such blocks, and one block more when the policy
        stores a ``rate:`` method (as Gnocchi keeps one more block of raw
        points then).  This is also where the raw points a write
        aggregates begin.
        """
        if self.last_ts is None:
            return None
        block = self.policy.max_granularity
        last = self.last_ts
        blocks = self.policy.back_window + (1 if self.has_rate else 0)
        return last - last % block - blocks * block

    def _raw_keep_from(self) -> int | None:
        fbt = self.first_block_timestamp()
        if fbt is None:
            return None
        return min(fbt - fbt % g for g in self.policy.granularities)

    def set_policy(self, policy: ap.ArchivePolicy) -> None:
        """Adopt a new definition of the metric's policy.

        Points and back_window changes apply from now on.  A new column
        (a method added) or a new granularity gets values from the
        buckets the raw points kept still cover completely; older
        buckets have no value for it.
        """
        if policy == self.policy:
            return
        if self.trimmed:
            raise ValueError("set_policy needs the complete state")
        old_columns = self.columns
        fbt = self.first_block_timestamp()
        self._adopt(policy)
        levels = {}
        for g in policy.granularities:
            level = self.levels.get(g)
            if level is not None and self.columns == old_columns:
                levels[g] = level
                continue
            if level is None:
                level = Level.empty(g, self.columns)
            else:
                n = len(level)
                old = level.cols
                cols = {}
                for col in self.columns:
                    if col in old:
                        cols[col] = old[col].copy()
                    elif col == RATE + "count":
                        cols[col] = np.zeros(n)
                    else:
                        cols[col] = np.full(n, np.nan)
                level = Level(g, level.ts.copy(), cols)
            if fbt is not None:
                start = fbt - fbt % g
                raw_ts = self.raw.ts
                i0 = int(np.searchsorted(raw_ts, start))
                if i0 < raw_ts.size:
                    prev = (
                        float(self.raw.values[i0 - 1])
                        if self.has_rate and i0 > 0
                        else None
                    )
                    starts, cols = compute_buckets(
                        raw_ts[i0:],
                        self.raw.values[i0:],
                        g,
                        self.columns,
                        prev,
                    )
                    level.replace_from(start, starts, cols)
            levels[g] = level
        self.levels = levels
        for g, level in self.levels.items():
            item = policy.item(g)
            level.span = item.timespan if item else None
            level.truncate(item.points if item else None)

    # -- writes ------------------------------------------------------------

    def apply(self, ts: np.ndarray, values: np.ndarray) -> ApplyResult:
        """Merge new points; refuse those older than the back window.

        One call is one Gnocchi processing batch, with its results:
        duplicated timestamps in the batch keep the smallest value, a
        stored point is replaced by a new one at its timestamp, and each
        granularity is recomputed from the bucket of the batch's oldest
        point (of the oldest raw point kept, when that one is refused)
        using the raw points from :meth:`first_block_timestamp` on.  So
        the first difference of that bucket, for ``rate:``, counts only
        when the point before it lies less than one granularity before
        the bucket and is still kept; other buckets count every
        difference.
        """
        ts = np.asarray(ts, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        fbt = self.first_block_timestamp()
        if 0 < ts.size <= FAST_PATH_MAX and self.last_ts is not None:
            tl = ts.tolist()
            if (
                tl[0] > self.last_ts
                and all(a < b for a, b in itertools.pairwise(tl))
                and (not self.has_rate or self._entry_kept(tl[0], fbt))
            ):
                vl = values.tolist()
                if self.has_rate or self._sorted_cols:
                    first = True
                    for t, v in zip(tl, vl, strict=True):
                        self._append_point(t, v, fbt if first else None)
                        first = False
                else:
                    self._append_points(tl, vl)
                self._truncate_raw()
                return ApplyResult(len(tl), 0, ts, values)
        ts, values = dedupe_sorted(ts, values)
        refused = 0
        if fbt is not None and ts.size and ts[0] < fbt:
            refused = int(np.searchsorted(ts, fbt))
        if ts.size == 0:
            return ApplyResult(0, 0, ts, values)
        self._merge(ts[refused:], values[refused:], fbt, from_kept=refused > 0)
        # A log replays the batch through this method: one refused point
        # (refused again then) makes the replay recompute the same.
        keep = max(refused - 1, 0)
        return ApplyResult(
            int(ts.size) - refused, refused, ts[keep:], values[keep:]
        )

    def _entry_kept(self, t: int, fbt: int | None) -> bool:
        """Whether a batch starting at *t* (after every point) may append.

        Each newest bucket that *t* falls in is recomputed by the batch;
        appending keeps its first difference, which is right only when
        the point before the bucket is less than one granularity before
        it and not older than *fbt* (or there is no such point).
        """
        raw_ts = self.raw.ts
        for g, level in self.levels.items():
            start = t - t % g
            if level.hi == level.lo or level._ts[level.hi - 1] != start:
                continue
            j = int(np.searchsorted(raw_ts, start))
            if j == 0:
                continue
            before = int(raw_ts[j - 1])
            if before < start - g or (fbt is not None and before < fbt):
                return False
        return True

    def _append_point(self, t: int, v: float, fbt: int | None) -> None:
        """In-order append of one point: O(1) per level (scalar code).

        :param fbt: for the first point of a batch, the first block
            timestamp before the batch (a bucket it opens counts the
            difference from the point before only if that point is
            within one granularity and not older); None for the others.
        """
        raw = self.raw
        prev = None
        prev_ts = 0
        if raw.hi > raw.lo:
            prev = float(raw._values[raw.hi - 1])
            prev_ts = int(raw._ts[raw.hi - 1])
        raw.append(t, v)
        self.last_ts = t
        has_rate = self.has_rate
        for g, level in self.levels.items():
            start = t - t % g
            i = level.hi - 1
            d = None if prev is None else v - prev
            if i >= level.lo and level._ts[i] == start:
                cols = level._cols
                _update_bucket(cols, i, v, "")
                if has_rate and d is not None:
                    _update_bucket(cols, i, d, RATE)
                new = False
            else:
                if fbt is not None and (prev_ts < start - g or prev_ts < fbt):
                    d = None
                i = level.append(start)
                cols = level._cols
                _init_bucket(cols, i, v, "")
                if has_rate:
                    if d is None:
                        _empty_rate_bucket(cols, i)
                    else:
                        _init_bucket(cols, i, d, RATE)
                new = True
            if self._sorted_cols:
                self._recompute_sorted(level, i, start, v, d, new=new)
            if new:
                item = self.policy.item(g)
                if item is not None and item.points is not None:
                    level.truncate(item.points)

    def _append_points(self, tl: list[int], vl: list[float]) -> None:
        """:meth:`_append_point` for several in-order points at once.

        Only for policies without rates or sorted columns.  Each bucket
        is read once into Python floats, takes its points in order with
        the same arithmetic as :func:`_update_bucket` (so the same
        results, bit for bit), and is written back once.
        """
        raw = self.raw
        for t, v in zip(tl, vl, strict=True):
            raw.append(t, v)
        self.last_ts = tl[-1]
        n = len(tl)
        for g, level in self.levels.items():
            new = False
            k = 0
            while k < n:
                t = tl[k]
                start = t - t % g
                end = start + g
                i = level.hi - 1
                if i >= level.lo and level._ts[i] == start:
                    count = float(level._cols["count"][i])
                else:
                    i = level.append(start)
                    count = 0.0
                    new = True
                # Fetched after the append, which may grow the arrays.
                cols = level._cols
                count_col = cols["count"]
                sum_col = cols.get("sum")
                m2_col = cols.get("m2")
                min_col = cols.get("min")
                max_col = cols.get("max")
                first_col = cols.get("first")
                last_col = cols.get("last")
                if count == 0.0:
                    v = vl[k]
                    count, total, m2, low, high = 1.0, v, 0.0, v, v
                    if first_col is not None:
                        first_col[i] = v
                    k += 1
                else:
                    total = float(sum_col[i]) if sum_col is not None else 0.0
                    m2 = (
                        float(m2_col[i])
                        if m2_col is not None and count > 1.0
                        else 0.0
                    )
                    low = float(min_col[i]) if min_col is not None else 0.0
                    high = float(max_col[i]) if max_col is not None else 0.0
                while k < n and tl[k] < end:
                    v = vl[k]
                    n1 = count + 1.0
                    s1 = total + v
                    # Welford: M2 += (v - old mean) * (v - new mean)
                    m2 = m2 + (v - total / count) * (v - s1 / n1)
                    count, total = n1, s1
                    low = min(low, v)
                    high = max(high, v)
                    k += 1
                count_col[i] = count
                if sum_col is not None:
                    sum_col[i] = total
                    if m2_col is not None:
                        m2_col[i] = m2
                if min_col is not None:
                    min_col[i] = low
                if max_col is not None:
                    max_col[i] = high
                if last_col is not None:
                    last_col[i] = vl[k - 1]
            if new:
                item = self.policy.item(g)
                if item is not None and item.points is not None:
                    level.truncate(item.points)

    def _recompute_sorted(
        self,
        level: Level,
        i: int,
        start: int,
        v: float,
        d: float | None,
        *,
        new: bool,
    ) -> None:
        """Sorted columns of the newest bucket after appending *v*.

        The sorted values of the open bucket (and of its differences)
        are kept per level as Python lists, so an append costs one
        ``bisect.insort`` (a pointer memmove), not a sort of the bucket.
        """
        g = level.granularity
        cached = self._open_sorted.get(g)
        if cached is not None and cached[0] == start:
            plain = cached[1]
            bisect.insort(plain, v)
            rated = cached[2]
            if rated is not None and d is not None:
                bisect.insort(rated, d)
        elif new:
            plain = [v]
            rated = None
            if self.has_rate:
                rated = [] if d is None else [d]
            self._open_sorted[g] = (start, plain, rated)
        else:
            raw_ts = self.raw.ts
            raw_values = self.raw.values
            j = int(np.searchsorted(raw_ts, start))
            plain = np.sort(raw_values[j:]).tolist()
            rated = None
            if self.has_rate:
                # A batch appends to a bucket whose first difference
                # counts when there is a point before it (_entry_kept).
                rated = np.sort(np.diff(raw_values[max(j - 1, 0) :])).tolist()
            self._open_sorted[g] = (start, plain, rated)
        cols = level._cols
        for col in self._sorted_cols:
            data = rated if col.startswith(RATE) else plain
            cols[col][i] = (
                _list_quantile(data, _quantile_of(col)) if data else np.nan
            )

    def _merge(
        self,
        ts: np.ndarray,
        values: np.ndarray,
        fbt: int | None,
        *,
        from_kept: bool,
    ) -> None:
        """Merge accepted points, recompute what the batch changes.

        :param fbt: the first block timestamp before the batch (raw
            points older than it take no part).
        :param from_kept: recompute from the oldest raw point kept (the
            batch's oldest point was refused) instead of from ``ts[0]``.
        """
        self._open_sorted.clear()
        raw_ts = self.raw.ts
        raw_values = self.raw.values
        if ts.size == 0:
            pass
        elif raw_ts.size == 0 or ts[0] > raw_ts[-1]:
            self.raw.set(
                np.concatenate((raw_ts, ts)),
                np.concatenate((raw_values, values)),
            )
        else:
            pos = np.searchsorted(raw_ts, ts)
            inside = pos < raw_ts.size
            dup = np.zeros(ts.size, dtype=bool)
            dup[inside] = raw_ts[pos[inside]] == ts[inside]
            old_ts = np.delete(raw_ts, pos[dup])
            old_vals = np.delete(raw_values, pos[dup])
            where = np.searchsorted(old_ts, ts)
            self.raw.set(
                np.insert(old_ts, where, ts),
                np.insert(old_vals, where, values),
            )
        raw_ts = self.raw.ts
        raw_values = self.raw.values
        if ts.size and (self.last_ts is None or ts[-1] > self.last_ts):
            self.last_ts = int(ts[-1])
        floor = -1 if fbt is None else fbt
        if from_kept:
            first = int(raw_ts[np.searchsorted(raw_ts, floor)])
        else:
            first = int(ts[0])
        for g, level in self.levels.items():
            start = first - first % g
            # whole buckets (Gnocchi would drop the points before floor
            # from a bucket straddling it: a granularity that does not
            # divide the coarsest one)
            i0 = int(np.searchsorted(raw_ts, start))
            prev = None
            if (
                self.has_rate
                and i0 > 0
                and raw_ts[i0 - 1] >= max(start - g, floor)
            ):
                prev = float(raw_values[i0 - 1])
            starts, cols = compute_buckets(
                raw_ts[i0:], raw_values[i0:], g, self.columns, prev
            )
            if self.has_rate and starts.size and cols[RATE + "count"][0] <= 1:
                _keep_rates(level, int(starts[0]), cols)
            level.replace_from(int(starts[0]), starts, cols)
            item = self.policy.item(g)
            level.truncate(item.points if item else None)
        self._truncate_raw()

    def _truncate_raw(self) -> None:
        keep_from = self._raw_keep_from()
        raw = self.raw
        if keep_from is None or raw.hi == raw.lo:
            return
        if raw._ts[raw.lo] >= keep_from:
            return
        idx = int(np.searchsorted(raw.ts, keep_from))
        if self.has_rate:
            idx = max(idx - 1, 0)
        raw.lo += idx

    # -- memory --------------------------------------------------------------

    @property
    def trimmed(self) -> bool:
        """True when older buckets were dropped from memory."""
        return bool(self.history_from)

    def trim(self, keep: int) -> None:
        """Drop from memory the buckets no write can change any more.

        A level longer than ``2 * keep`` buckets keeps its newest *keep*
        ones and every bucket a late point could still touch (from the
        first block timestamp on).  Writes work on a trimmed state;
        reads of the dropped part, snapshots and policy changes need the
        complete state from storage.
        """
        fbt = self.first_block_timestamp()
        if fbt is None:
            return
        raw = self.raw
        if raw._ts.size > 2 * (raw.hi - raw.lo) + 64:
            raw.set(raw.ts.copy(), raw.values.copy())
        for g, level in self.levels.items():
            if len(level) <= 2 * keep:
                continue
            newest = int(level._ts[level.hi - 1])
            horizon = min(fbt - fbt % g, newest - (keep - 1) * g)
            cut = level.lo + int(np.searchsorted(level.ts, horizon))
            if cut == level.lo:
                continue
            level._set(
                level._ts[cut : level.hi].copy(),
                {k: v[cut : level.hi].copy() for k, v in level._cols.items()},
            )
            self.history_from[g] = max(self.history_from.get(g, 0), horizon)

    def covers(self, granularity: int, start: int | None) -> bool:
        """True when memory holds every bucket >= *start* (None: all)."""
        horizon = self.history_from.get(granularity)
        if horizon is None:
            return True
        if start is None:
            return False
        return start - start % granularity >= horizon

    # -- reads -------------------------------------------------------------

    def read(
        self,
        method: str,
        granularity: int,
        start: int | None = None,
        stop: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(timestamps, values) of one stored series in [start, stop)."""
        level = self.levels[granularity]
        ts = level.ts
        lo = 0
        hi = ts.size
        horizon = level.horizon(method)
        if horizon is not None:
            lo = int(np.searchsorted(ts, horizon, side="right"))
        if start is not None:
            start -= start % granularity
            lo = max(lo, int(np.searchsorted(ts, start)))
        if stop is not None:
            hi = int(np.searchsorted(ts, stop))
        if hi <= lo:
            return _EMPTY_I, _EMPTY_F
        base = level.lo
        cols = {k: v[base + lo : base + hi] for k, v in level._cols.items()}
        vals, mask = method_values(method, cols)
        ts = ts[lo:hi]
        if mask is not None:
            return ts[mask], vals[mask]
        return ts.copy(), np.array(vals, dtype=np.float64)

    def read_last(
        self, method: str, granularity: int, n: int, stop: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The newest *n* buckets of one stored series.

        With *stop*, only buckets starting before *stop* count.
        """
        level = self.levels[granularity]
        hi = level.hi if stop is None else _cut(level, stop)
        if n <= 0 or hi == level.lo:
            return _EMPTY_I, _EMPTY_F
        # Buckets within the timespan of the newest one are in every
        # series; older ones only up to the method's own horizon, looked
        # for when the read gets there.
        first = level.lo
        span = level.span
        exact = span is None
        if span is not None:
            newest = int(level._ts[level.hi - 1])
            first += int(np.searchsorted(level.ts, newest - span, "right"))
        # Read a few more when some buckets may have no value.
        lo = max(hi - n, first)
        while True:
            cols = {k: v[lo:hi] for k, v in level._cols.items()}
            vals, mask = method_values(method, cols)
            ts = level._ts[lo:hi]
            if mask is not None:
                ts = ts[mask]
                vals = vals[mask]
            if ts.size >= n or (lo <= first and exact):
                return ts[-n:].copy(), np.array(vals[-n:], dtype=np.float64)
            if lo <= first:
                exact = True
                horizon = level.horizon(method)
                assert horizon is not None
                first = level.lo + int(
                    np.searchsorted(level.ts, horizon, side="right")
                )
                if lo <= first:
                    return ts[-n:].copy(), np.array(
                        vals[-n:], dtype=np.float64
                    )
            lo = max(lo - 2 * n, first)


def stored_bytes_estimate(state: MetricState) -> int:
    """Bytes held by the arrays of *state* (for statistics)."""
    return (
        state.raw.nbytes()
        + sum(level.nbytes() for level in state.levels.values())
        + sum(
            32 * (len(c[1]) + len(c[2] or ()))
            for c in state._open_sorted.values()
        )
    )


def method_columns(method: str) -> tuple[str, ...]:
    """The columns :func:`method_values` reads to answer *method*."""
    prefix = ""
    base = method
    if method.startswith(RATE):
        prefix = RATE
        base = method[len(RATE) :]
    cols = {prefix + "count"}
    cols.update(prefix + c for c in _base_columns(base))
    return tuple(sorted(cols))


def _cut(level: Level, stop: int) -> int:
    """Index past the last bucket of *level* starting before *stop*."""
    hi = level.hi
    if hi == level.lo or int(level._ts[hi - 1]) < stop:
        return hi
    return level.lo + int(np.searchsorted(level.ts, stop, side="left"))


def read_last_many(
    levels: Sequence[Level | None],
    method: str,
    n: int,
    stop: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`MetricState.read_last` of many levels at once, where cheap.

    Gathers the newest *n* buckets of each level into matrices, reading
    only the columns *method* needs, and computes the values for all the
    rows in one go.  A row is answered only when its level holds at
    least *n* buckets and each of the newest *n* has a value: then it is
    exactly what ``read_last`` returns.  Other rows (None levels
    included) are left to ``read_last``.  With *stop*, only buckets
    starting before *stop* count.

    :param n: >= 1.
    :returns: (timestamps int64[M, n], values float64[M, n], ok bool[M]),
        rows not ok hold garbage.
    """
    m = len(levels)
    names = method_columns(method)
    tsm = np.zeros((m, n), dtype=np.int64)
    mats = [np.zeros((m, n), dtype=np.float64) for _ in names]
    ok = np.zeros(m, dtype=bool)
    pairs = tuple(zip(names, mats, strict=True))
    for i, level in enumerate(levels):
        if level is None:
            continue
        hi = level.hi if stop is None else _cut(level, stop)
        lo = hi - n
        if lo < level.lo:
            continue
        if level.span is not None and (
            # the series is cut from its newest value: the row's newest
            # bucket must be the level's, and the oldest inside the span
            hi != level.hi or level._ts[lo] <= level._ts[hi - 1] - level.span
        ):
            continue
        tsm[i] = level._ts[lo:hi]
        cols = level._cols
        for name, mat in pairs:
            mat[i] = cols[name][lo:hi]
        ok[i] = True
    vals, mask = method_values(method, dict(zip(names, mats, strict=True)))
    if mask is not None:
        ok &= mask.all(axis=1)
    return tsm, np.asarray(vals, dtype=np.float64), ok
