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

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from alarmer.engine import archive_policy as ap

#: Primitive columns that accumulate in O(1) per appended point.
PRIMITIVES = ("count", "sum", "min", "max", "first", "last", "m2")
RATE = "rate:"
_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)


class AggregationError(ValueError):
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
    return ts - ts % granularity


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
        return np.sort(values.reshape(nseg, width), axis=1).reshape(n)
    if nseg * width <= 2 * n + 4096:
        seg = np.repeat(np.arange(nseg), counts)
        col = np.arange(n) - np.repeat(offsets, counts)
        grid = np.full((nseg, width), np.inf)
        grid[seg, col] = values
        grid.sort(axis=1)
        return grid[seg, col]
    seg = np.repeat(np.arange(nseg), counts)
    return values[np.lexsort((values, seg))]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    # numpy.percentile's 'linear' interpolation, with its rounding.
    diff = b - a
    out = a + diff * t
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
        return np.where(odd, upper, (lower + upper) / 2)
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
    mask: np.ndarray | None = count > 0 if prefix else None
    if base == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = cols[prefix + "sum"] / count
    elif base == "std":
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.sqrt(np.maximum(cols[prefix + "m2"], 0.0) / (count - 1))
        mask = count > 1
    else:
        vals = cols[prefix + base]
    return vals, mask


# ---------------------------------------------------------------------------
# Per-metric state


class Level:
    """The buckets of one granularity: timestamps and columns."""

    __slots__ = ("cols", "granularity", "ts")

    def __init__(
        self,
        granularity: int,
        ts: np.ndarray,
        cols: dict[str, np.ndarray],
    ) -> None:
        self.granularity = granularity
        self.ts = ts
        self.cols = cols

    @classmethod
    def empty(cls, granularity: int, columns: Iterable[str]) -> Level:
        return cls(granularity, _EMPTY_I, {c: _EMPTY_F for c in columns})

    def replace_from(
        self, start: int, ts: np.ndarray, cols: dict[str, np.ndarray]
    ) -> None:
        """Replace every bucket >= *start* by the given ones."""
        cut = int(np.searchsorted(self.ts, start))
        if cut == self.ts.size:
            self.ts = np.concatenate((self.ts, ts)) if cut else ts
            for name in self.cols:
                old = self.cols[name]
                self.cols[name] = (
                    np.concatenate((old, cols[name])) if cut else cols[name]
                )
            return
        self.ts = np.concatenate((self.ts[:cut], ts))
        for name in self.cols:
            self.cols[name] = np.concatenate(
                (self.cols[name][:cut], cols[name])
            )

    def truncate(self, points: int | None) -> None:
        """Keep the buckets newer than newest - points * granularity."""
        if points is None or self.ts.size == 0:
            return
        horizon = int(self.ts[-1]) - points * self.granularity
        if self.ts[0] > horizon:
            return
        cut = int(np.searchsorted(self.ts, horizon, side="right"))
        self.ts = self.ts[cut:]
        for name in self.cols:
            self.cols[name] = self.cols[name][cut:]


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
    """Sort by timestamp; on duplicates the last occurrence wins."""
    ts = np.asarray(ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if ts.size <= 1:
        return ts, values
    steps = np.diff(ts)
    if (steps > 0).all():
        return ts, values
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    values = values[order]
    keep = np.empty(ts.size, dtype=bool)
    keep[-1] = True
    np.not_equal(ts[1:], ts[:-1], out=keep[:-1])
    return ts[keep], values[keep]


class MetricState:
    """Everything stored for one metric (pure data, no I/O)."""

    __slots__ = (
        "columns",
        "has_rate",
        "last_ts",
        "levels",
        "policy",
        "raw_ts",
        "raw_values",
    )

    def __init__(self, policy: ap.ArchivePolicy) -> None:
        self.policy = policy
        self.columns = columns_for(policy.aggregation_methods)
        self.has_rate = any(c.startswith(RATE) for c in self.columns)
        self.last_ts: int | None = None
        self.raw_ts = _EMPTY_I
        self.raw_values = _EMPTY_F
        self.levels: dict[int, Level] = {
            g: Level.empty(g, self.columns) for g in policy.granularities
        }

    # -- policy ------------------------------------------------------------

    def first_block_timestamp(self) -> int | None:
        """Oldest timestamp still accepted (None: everything is)."""
        if self.last_ts is None:
            return None
        block = self.policy.max_granularity
        last = self.last_ts
        return last - last % block - self.policy.back_window * block

    def _raw_keep_from(self) -> int | None:
        fbt = self.first_block_timestamp()
        if fbt is None:
            return None
        return min(fbt - fbt % g for g in self.policy.granularities)

    def set_policy(self, policy: ap.ArchivePolicy) -> None:
        """Adopt a new definition of the metric's policy.

        Points and back_window changes apply from now on; a level whose
        granularity or columns are new is rebuilt from the raw points
        still kept.
        """
        if policy == self.policy:
            return
        columns = columns_for(policy.aggregation_methods)
        same_cols = columns == self.columns
        self.policy = policy
        self.columns = columns
        self.has_rate = any(c.startswith(RATE) for c in columns)
        levels = {}
        for g in policy.granularities:
            level = self.levels.get(g)
            if level is None or not same_cols:
                level = Level.empty(g, columns)
                if self.raw_ts.size:
                    starts, cols = compute_buckets(
                        self.raw_ts, self.raw_values, g, columns
                    )
                    level.replace_from(0, starts, cols)
            levels[g] = level
        self.levels = levels
        for g, level in self.levels.items():
            item = policy.item(g)
            level.truncate(item.points if item else None)

    # -- writes ------------------------------------------------------------

    def apply(self, ts: np.ndarray, values: np.ndarray) -> ApplyResult:
        """Merge new points; refuse those older than the back window.

        Duplicated timestamps: the newest write wins (in a batch, the
        last occurrence).
        """
        ts, values = dedupe_sorted(ts, values)
        refused = 0
        fbt = self.first_block_timestamp()
        if fbt is not None and ts.size and ts[0] < fbt:
            cut = int(np.searchsorted(ts, fbt))
            refused = cut
            ts = ts[cut:]
            values = values[cut:]
        if ts.size == 0:
            return ApplyResult(0, refused, ts, values)
        self._merge(ts, values)
        return ApplyResult(int(ts.size), refused, ts, values)

    def _merge(self, ts: np.ndarray, values: np.ndarray) -> None:
        first_new = int(ts[0])
        if self.raw_ts.size == 0 or first_new > self.raw_ts[-1]:
            self.raw_ts = np.concatenate((self.raw_ts, ts))
            self.raw_values = np.concatenate((self.raw_values, values))
        else:
            pos = np.searchsorted(self.raw_ts, ts)
            inside = pos < self.raw_ts.size
            dup = np.zeros(ts.size, dtype=bool)
            dup[inside] = self.raw_ts[pos[inside]] == ts[inside]
            old_ts = np.delete(self.raw_ts, pos[dup])
            old_vals = np.delete(self.raw_values, pos[dup])
            where = np.searchsorted(old_ts, ts)
            self.raw_ts = np.insert(old_ts, where, ts)
            self.raw_values = np.insert(old_vals, where, values)
        last_new = int(ts[-1])
        if self.last_ts is None or last_new > self.last_ts:
            self.last_ts = last_new
        for g, level in self.levels.items():
            start = first_new - first_new % g
            i0 = int(np.searchsorted(self.raw_ts, start))
            prev = (
                float(self.raw_values[i0 - 1])
                if self.has_rate and i0 > 0
                else None
            )
            starts, cols = compute_buckets(
                self.raw_ts[i0:], self.raw_values[i0:], g, self.columns, prev
            )
            level.replace_from(start, starts, cols)
            item = self.policy.item(g)
            level.truncate(item.points if item else None)
        self._truncate_raw()

    def _truncate_raw(self) -> None:
        keep_from = self._raw_keep_from()
        if keep_from is None or self.raw_ts.size == 0:
            return
        if self.raw_ts[0] >= keep_from:
            return
        idx = int(np.searchsorted(self.raw_ts, keep_from))
        if self.has_rate:
            idx = max(idx - 1, 0)
        if idx:
            self.raw_ts = self.raw_ts[idx:]
            self.raw_values = self.raw_values[idx:]

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
        if start is not None:
            start -= start % granularity
            lo = int(np.searchsorted(ts, start))
        if stop is not None:
            hi = int(np.searchsorted(ts, stop))
        if hi <= lo:
            return _EMPTY_I, _EMPTY_F
        cols = {k: v[lo:hi] for k, v in level.cols.items()}
        vals, mask = method_values(method, cols)
        ts = ts[lo:hi]
        if mask is not None:
            return ts[mask], vals[mask]
        return ts.copy(), np.array(vals, dtype=np.float64)

    def read_last(
        self, method: str, granularity: int, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The newest *n* buckets of one stored series."""
        level = self.levels[granularity]
        size = level.ts.size
        if n <= 0 or size == 0:
            return _EMPTY_I, _EMPTY_F
        # Read a few more when some buckets may have no value.
        lo = max(size - n, 0)
        while True:
            cols = {k: v[lo:] for k, v in level.cols.items()}
            vals, mask = method_values(method, cols)
            ts = level.ts[lo:]
            if mask is not None:
                ts = ts[mask]
                vals = vals[mask]
            if ts.size >= n or lo == 0:
                return ts[-n:].copy(), np.array(vals[-n:], dtype=np.float64)
            lo = max(lo - 2 * n, 0)


def stored_bytes_estimate(state: MetricState) -> int:
    """Bytes held by the arrays of *state* (for statistics)."""
    total = state.raw_ts.nbytes + state.raw_values.nbytes
    for level in state.levels.values():
        total += level.ts.nbytes
        total += sum(c.nbytes for c in level.cols.values())
    return total


def is_finite(value: float) -> bool:
    """True for a finite float (helper of callers validating input)."""
    return math.isfinite(value)
