"""Evaluating the aggregates language over already-fetched series.

Pure numpy, no I/O.  Three levels, each built on the one before:

* **the grid**: series of one granularity laid on the union of their
  timestamps (:func:`lay_out`), then Gnocchi's ``fill`` and
  ``needed_overlap`` rules (:func:`apply_fill`, the only place they are
  implemented); :func:`align` does both;
* **across series**: :func:`reduce_columns` reduces each timestamp
  ignoring NaN; :func:`aggregate_across` (series) and
  :func:`aggregate_matrix` (a grid already laid out) are Gnocchi's
  ``(aggregate M (metric ...))``; :func:`reduce_across`,
  :func:`reduce_grid` and :func:`window_across` split the same request
  in a reduction that can be kept and a window taken as time passes (the
  alarm evaluator's cross-metric reads);
* **the tree**: :func:`evaluate` runs a parsed operation tree
  (:mod:`alarmer.metrics.query.parse`) over the aligned series and
  returns a :class:`Block`.

``rate:M`` is the difference between consecutive values of M (stamped
at the later timestamp); ``std`` and ``var`` are population statistics
(``ddof=0``), as numpy's ``nanstd``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alarmer.metrics.query.parse import (
    BINARY,
    FILLS,
    UNARY,
    AggregateOp,
    BinaryOp,
    ClipOp,
    MetricOp,
    Operation,
    OperationError,
    QueryError,
    ResampleOp,
    RollingOp,
    UnaryOp,
    is_valid_method,
)
from alarmer.metrics.series.aggregation import Series

NS = 1_000_000_000
_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)
#: Fill modes after which results without a value are dropped.
_DROPPING = ("dropna", "ffill", "bfill", "full_ffill", "full_bfill")

Fill = float | str | None


class CrossAggregationError(QueryError):
    """The series cannot be aggregated together."""


class UnknownCrossMethod(CrossAggregationError):
    """Not a method :func:`aggregate_across` knows."""


class InvalidFill(CrossAggregationError):
    """Not a valid ``fill``."""


class GranularityMismatch(CrossAggregationError):
    """The series do not all have the same granularity."""


class NotEnoughOverlap(CrossAggregationError):
    """Less of the timestamps than asked are present in every series."""


# ---------------------------------------------------------------- grid --


def check_fill(fill: Fill) -> None:
    """Accept None, a finite number or one of :data:`FILLS`.

    :raises InvalidFill: otherwise.
    """
    if fill is None or (
        isinstance(fill, int | float) and not isinstance(fill, bool)
    ):
        if fill is not None and not np.isfinite(fill):
            raise InvalidFill(f"Invalid fill value {fill!r}: not finite")
        return
    if fill not in FILLS:
        raise InvalidFill(
            f"Invalid fill value {fill!r}: a number or one of "
            + ", ".join(FILLS)
        )


def _is_number(fill: Fill) -> bool:
    return fill is not None and not isinstance(fill, str)


def forward_fill(grid: np.ndarray) -> np.ndarray:
    """Fill NaN with the previous value of the same row."""
    mask = np.isnan(grid)
    idx = np.where(~mask, np.arange(grid.shape[1]), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    return grid[np.arange(grid.shape[0])[:, None], idx]


def backward_fill(grid: np.ndarray) -> np.ndarray:
    """Fill NaN with the next value of the same row."""
    return forward_fill(grid[:, ::-1])[:, ::-1]


def lay_out(
    series: Sequence[Series], filler: float = np.nan
) -> tuple[np.ndarray, np.ndarray]:
    """Put series on the sorted union of their timestamps.

    :param filler: the value of the gaps (a series without a bucket).
    :returns: (timestamps, values matrix ``n_series x n_times``).
    """
    if not series:
        return _EMPTY_I, np.empty((0, 0), dtype=np.float64)
    first = series[0].timestamps
    if all(
        s.timestamps.size == first.size and np.array_equal(s.timestamps, first)
        for s in series
    ):
        return first, np.vstack([s.values for s in series])
    sizes = [s.timestamps.size for s in series]
    times, inverse = np.unique(
        np.concatenate([s.timestamps for s in series]), return_inverse=True
    )
    grid = np.full((len(series), times.size), filler, dtype=np.float64)
    rows = np.repeat(np.arange(len(series)), sizes)
    grid[rows, inverse] = np.concatenate([s.values for s in series])
    return times, grid


def apply_fill(
    times: np.ndarray,
    grid: np.ndarray,
    *,
    fill: Fill,
    needed_overlap: float,
    bounded_start: bool,
    bounded_stop: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Gnocchi's ``fill`` and ``needed_overlap`` rules on a laid-out grid.

    A numeric *fill* is expected in the gaps already (see
    :func:`lay_out`); ``"ffill"``/``"bfill"`` take the previous/next
    value of the row, ``"full_ffill"``/``"full_bfill"`` then fill the
    other direction too; ``"null"`` and ``"dropna"`` leave NaN.  With
    *fill* None, at least *needed_overlap* percent of the timestamps
    must be present in every row, and an unbounded side is first cut to
    the first/last timestamp present in every row.

    :param bounded_start: the request gave a start.
    :param bounded_stop: the request gave a stop.
    :raises NotEnoughOverlap: ``No overlap`` or ``Less than N% of
        datapoints overlap in this timespan (P%)``.
    """
    if fill == "ffill":
        grid = forward_fill(grid)
    elif fill == "bfill":
        grid = backward_fill(grid)
    elif fill == "full_ffill":
        grid = backward_fill(forward_fill(grid))
    elif fill == "full_bfill":
        grid = forward_fill(backward_fill(grid))
    if fill is not None or (
        needed_overlap <= 0 and bounded_start and bounded_stop
    ):
        # Nothing to check, nothing to cut.
        return times, grid
    overlap = np.flatnonzero(~np.isnan(grid).any(axis=0))
    if overlap.size == 0 and needed_overlap > 0:
        raise NotEnoughOverlap("No overlap")
    if times.size:
        if not bounded_stop and overlap.size:
            times = times[: overlap[-1] + 1]
            grid = grid[:, : overlap[-1] + 1]
        if not bounded_start and overlap.size:
            times = times[overlap[0] :]
            grid = grid[:, overlap[0] :]
        percent = overlap.size * 100.0 / times.size
        if percent < needed_overlap:
            raise NotEnoughOverlap(
                f"Less than {needed_overlap:f}% of datapoints overlap "
                f"in this timespan ({percent:.2f}%)"
            )
    return times, grid


def _slice(
    series: Sequence[Series], start: int | None, stop: int | None
) -> list[Series]:
    granularity = series[0].granularity
    lo_ts = None if start is None else start - start % granularity
    sliced = []
    for s in series:
        ts = s.timestamps
        if ts.size == 0 or (
            (lo_ts is None or ts[0] >= lo_ts)
            and (stop is None or ts[-1] < stop)
        ):
            sliced.append(s)
            continue
        lo = 0 if lo_ts is None else np.searchsorted(ts, lo_ts)
        hi = ts.size if stop is None else np.searchsorted(ts, stop)
        sliced.append(Series(s.granularity, ts[lo:hi], s.values[lo:hi]))
    return sliced


def align(
    series: Sequence[Series],
    *,
    fill: Fill = None,
    needed_overlap: float = 100.0,
    start: int | None = None,
    stop: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Series of one granularity on one time grid, Gnocchi's rules applied.

    The series are cut to ``[start, stop)`` (*start* rounded down to the
    granularity), laid out (:func:`lay_out`, gaps take a numeric *fill*)
    and :func:`apply_fill` applies ``fill`` and ``needed_overlap``.

    :returns: (timestamps, values matrix ``n_series x n_times``).
    :raises InvalidFill: a bad *fill*.
    :raises NotEnoughOverlap: too little overlap (*fill* None).
    """
    check_fill(fill)
    if series and (start is not None or stop is not None):
        series = _slice(series, start, stop)
    numeric = _is_number(fill)
    times, grid = lay_out(series, float(fill) if numeric else np.nan)  # type: ignore[arg-type]
    return apply_fill(
        times,
        grid,
        fill=fill,
        needed_overlap=needed_overlap,
        bounded_start=start is not None,
        bounded_stop=stop is not None,
    )


# ------------------------------------------------------- across series --


def reduce_columns(grid: np.ndarray, method: str) -> np.ndarray:
    """Reduce each column of (series x time) *grid*, ignoring NaN.

    See :func:`_reduce_columns`; the result is a float64 array.
    """
    return np.asarray(_reduce_columns(grid, method), dtype=np.float64)


def _reduce_columns(grid: np.ndarray, method: str) -> Any:
    """Reduce each column of (series x time) *grid*, ignoring NaN.

    *method* is one of :data:`~alarmer.metrics.query.parse.METHODS`
    (without ``rate:``).  A column without any value gives NaN (0 for
    ``count`` and ``sum``).

    :raises UnknownCrossMethod: another method.
    """
    present = ~np.isnan(grid)
    count = present.sum(axis=0)
    if method == "count":
        return count.astype(np.float64)
    if method == "sum":
        return np.nansum(grid, axis=0)
    if method == "min":
        return np.fmin.reduce(grid, axis=0)
    if method == "max":
        return np.fmax.reduce(grid, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(grid, axis=0) / count
        if method == "mean":
            return mean
        if method in ("std", "var"):
            dev = np.where(present, grid - mean, 0.0)
            var = (dev * dev).sum(axis=0) / count
            return np.sqrt(var) if method == "std" else var
    if method == "median":
        empty = count == 0
        if empty.any():
            grid = grid.copy()
            grid[:, empty] = 0.0
            out = np.nanmedian(grid, axis=0)
            out[empty] = np.nan
            return out
        return np.nanmedian(grid, axis=0)
    raise UnknownCrossMethod(f"Unknown aggregation method {method!r}")


def _check_request(method: str, fill: Fill) -> None:
    if not is_valid_method(method):
        raise UnknownCrossMethod(f"Unknown aggregation method {method!r}")
    check_fill(fill)


def _reduced(
    granularity: int,
    times: np.ndarray,
    grid: np.ndarray,
    method: str,
    fill: Fill,
) -> Series:
    if times.size == 0:
        return Series(granularity, _EMPTY_I, _EMPTY_F)
    values = reduce_columns(grid, method.removeprefix("rate:"))
    if method.startswith("rate:"):
        values = np.diff(values)
        times = times[1:]
    if fill in _DROPPING:
        keep = np.isfinite(values)
        times = times[keep]
        values = values[keep]
    return Series(granularity, np.array(times, dtype=np.int64), values)


def aggregate_across(
    series: Sequence[Series],
    method: str,
    *,
    start: int | None = None,
    stop: int | None = None,
    needed_overlap: float = 100.0,
    fill: Fill = None,
) -> Series:
    """Reduce several series of one granularity timestamp by timestamp.

    :param method: one of :data:`~alarmer.metrics.query.parse.METHODS`,
        or ``rate:`` + one of them.
    :param start: keep buckets >= *start* rounded down to the
        granularity; when None, the result starts at the first timestamp
        present in every series (``fill`` None only).
    :param stop: keep buckets < *stop*; when None, the result ends at the
        last timestamp present in every series (``fill`` None only).
    :param needed_overlap: with ``fill`` None, the percentage of
        timestamps that must be present in every series.
    :param fill: None (NaN gaps, overlap checked), a number (gaps take
        it), ``"null"`` (NaN gaps), ``"dropna"`` (NaN gaps, empty results
        dropped), ``"ffill"``/``"bfill"`` (previous/next value of the
        series), ``"full_ffill"``/``"full_bfill"`` (both directions).
    :raises CrossAggregationError: (a subclass of it) on a bad method or
        fill, mixed granularities or too little overlap.
    """
    _check_request(method, fill)
    if not series:
        raise CrossAggregationError("No series to aggregate")
    granularity = series[0].granularity
    if any(s.granularity != granularity for s in series):
        raise GranularityMismatch(
            "The series do not all have the same granularity: "
            + ", ".join(
                f"{g / 1e9:g}s"
                for g in sorted({s.granularity for s in series})
            )
        )
    times, grid = align(
        series,
        fill=fill,
        needed_overlap=needed_overlap,
        start=start,
        stop=stop,
    )
    return _reduced(granularity, times, grid, method, fill)


def aggregate_matrix(
    granularity: int,
    timestamps: np.ndarray,
    grid: np.ndarray,
    method: str,
    *,
    start: int | None = None,
    stop: int | None = None,
    needed_overlap: float = 100.0,
    fill: Fill = None,
) -> Series:
    """:func:`aggregate_across` of series already laid on one time axis.

    *grid* (series x time, NaN where a series has no bucket) over the
    sorted *timestamps*, as returned by
    :meth:`~alarmer.metrics.series.store.SeriesStore.last_buckets_many`;
    the result equals :func:`aggregate_across` of the series the rows
    hold, without building one :class:`Series` per row.
    """
    _check_request(method, fill)
    if grid.ndim != 2 or grid.shape[0] == 0:
        raise CrossAggregationError("No series to aggregate")
    if grid.shape[1] != timestamps.size:
        raise ValueError("grid and timestamps do not match")
    times = timestamps
    if start is not None or stop is not None:
        lo = (
            0
            if start is None
            else int(times.searchsorted(start - start % granularity))
        )
        hi = times.size if stop is None else int(times.searchsorted(stop))
        times, grid = times[lo:hi], grid[:, lo:hi]
    if _is_number(fill):
        grid = np.where(np.isnan(grid), float(fill), grid)  # type: ignore[arg-type]
    times, grid = apply_fill(
        times,
        grid,
        fill=fill,
        needed_overlap=needed_overlap,
        bounded_start=start is not None,
        bounded_stop=stop is not None,
    )
    return _reduced(granularity, times, grid, method, fill)


def reduce_grid(
    times: np.ndarray, grid: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Aodh's cross-metric ``aggregate`` of a grid, not yet windowed.

    Aodh asks for no ``fill`` and ``needed_overlap=0`` over a bounded
    window; every timestamp of the grid is kept, and columns are reduced
    independently, so :func:`window_across` of the result equals
    :func:`aggregate_matrix` of the grid over that window.  The result
    can thus be kept and windowed again as time passes.

    :param method: a reducer without ``rate:`` (see
        :func:`window_across`).
    :returns: (timestamps, one value per timestamp).
    """
    if times.size == 0:
        return times, _EMPTY_F
    times, grid = apply_fill(
        times,
        grid,
        fill=None,
        needed_overlap=0.0,
        bounded_start=True,
        bounded_stop=True,
    )
    return times, reduce_columns(grid, method)


def reduce_across(
    series: Sequence[Series], method: str
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reduce_grid` of series of one granularity.

    Over the union of their buckets; ``window_across(*reduce_across(s,
    m), "rate:" + m, ...)`` equals ``aggregate_across(s, "rate:" + m,
    start=..., stop=..., needed_overlap=0)``.
    """
    times, grid = lay_out(series)
    return reduce_grid(np.asarray(times, dtype=np.int64), grid, method)


def window_across(
    times: np.ndarray,
    reduced: np.ndarray,
    method: str,
    granularity: int,
    *,
    start: int,
    stop: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``[start, stop)`` window of a :func:`reduce_grid` result.

    *start* is rounded down to *granularity*; a ``rate:`` *method* then
    takes the differences of consecutive values.
    """
    lo = int(times.searchsorted(start - start % granularity))
    hi = int(times.searchsorted(stop))
    times, reduced = times[lo:hi], reduced[lo:hi]
    if method.startswith("rate:"):
        return times[1:], np.diff(reduced)
    return times, reduced


# ---------------------------------------------------------------- tree --


@dataclasses.dataclass
class Block:
    """What an operation produces: series on common timestamps.

    ``rows`` gives, for each row of ``values``, the index of the input
    series it still stands for; ``aggregated`` means one combined series
    (``rows`` is then empty).
    """

    granularity: int
    times: np.ndarray
    values: np.ndarray
    rows: tuple[int, ...]
    aggregated: bool


@dataclasses.dataclass
class _Context:
    granularity: int
    times: np.ndarray
    grid: np.ndarray
    keys: Mapping[tuple[str, str], Sequence[int]]


def evaluate(
    op: Operation,
    granularity: int,
    series: Sequence[Series],
    keys: Mapping[tuple[str, str], Sequence[int]],
    *,
    fill: Fill = None,
    needed_overlap: float = 100.0,
    start: int | None = None,
    stop: int | None = None,
) -> Block:
    """Evaluate *op* over fetched series of one granularity.

    The series are first put on one grid by :func:`align` (``fill``,
    ``needed_overlap``, ``start`` and ``stop`` apply there), then the
    tree is evaluated on it.

    :param granularity: the granularity of every series (ns).
    :param series: the input series, in row order.
    :param keys: for each ``(reference, method)`` of the tree (see
        :func:`~alarmer.metrics.query.parse.metric_refs`), the indices of
        the input series it stands for.
    :raises OperationError: the tree does not apply to these series.
    :raises CrossAggregationError: a bad fill or too little overlap.
    """
    times, grid = align(
        series,
        fill=fill,
        needed_overlap=needed_overlap,
        start=start,
        stop=stop,
    )
    return _evaluate(op, _Context(granularity, times, grid, keys))


def _reduce(values: np.ndarray, method: str) -> np.ndarray:
    """Reduce axis 0 of *values* with *method* (``rate:`` diffs after)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return reduce_columns(values, method.removeprefix("rate:"))


def _rate(block: Block, method: str) -> Block:
    if not method.startswith("rate:"):
        return block
    return dataclasses.replace(
        block,
        times=block.times[1:],
        values=np.diff(block.values, axis=1),
    )


def _same_times(blocks: Sequence[Block], where: str) -> None:
    first = blocks[0]
    for other in blocks[1:]:
        if other.granularity != first.granularity or not np.array_equal(
            other.times, first.times
        ):
            raise OperationError(
                f"operations: '{where}' combines series with different "
                "timestamps or granularities"
            )


def _evaluate(op: Operation, ctx: _Context) -> Block:
    if isinstance(op, MetricOp):
        rows = tuple(
            r for key in dict.fromkeys(op.refs) for r in ctx.keys[key]
        )
        return Block(
            granularity=ctx.granularity,
            times=ctx.times,
            values=ctx.grid[list(rows)],
            rows=rows,
            aggregated=False,
        )
    if isinstance(op, AggregateOp):
        blocks = [_evaluate(child, ctx) for child in op.children]
        _same_times(blocks, "aggregate")
        stacked = np.vstack([b.values for b in blocks])
        reduced = Block(
            granularity=blocks[0].granularity,
            times=blocks[0].times,
            values=_reduce(stacked, op.method)[np.newaxis, :],
            rows=(),
            aggregated=True,
        )
        return _rate(reduced, op.method)
    if isinstance(op, BinaryOp):
        return _binary(op, ctx)
    child = _evaluate(op.child, ctx)
    if isinstance(op, UnaryOp):
        return _unary(op.name, child)
    if isinstance(op, ClipOp):
        return dataclasses.replace(
            child, values=np.clip(child.values, op.low, op.high)
        )
    if isinstance(op, RollingOp):
        return _rolling(op, child)
    return _resample(op, child)


def _binary(op: BinaryOp, ctx: _Context) -> Block:
    left = op.left if isinstance(op.left, float) else _evaluate(op.left, ctx)
    right = (
        op.right if isinstance(op.right, float) else _evaluate(op.right, ctx)
    )
    blocks = [b for b in (left, right) if isinstance(b, Block)]
    if len(blocks) == 2:
        _same_times(blocks, op.name)
        rows = {b.values.shape[0] for b in blocks}
        if len(rows) > 1 and 1 not in rows:
            counts = " and ".join(str(n) for n in sorted(rows))
            raise OperationError(
                f"operations: '{op.name}' between {counts} series"
            )
    lhs = left.values if isinstance(left, Block) else left
    rhs = right.values if isinstance(right, Block) else right
    with np.errstate(all="ignore"):
        values = np.asarray(BINARY[op.name](lhs, rhs), dtype=np.float64)
    if values.ndim == 1:  # pragma: no cover - a Block operand is 2-D
        values = values[np.newaxis, :]
    base = max(blocks, key=lambda b: b.values.shape[0])
    aggregated = values.shape[0] == 1 and (
        len(blocks) == 2 or any(b.aggregated for b in blocks)
    )
    return Block(
        granularity=base.granularity,
        times=base.times,
        values=values,
        rows=() if aggregated else base.rows,
        aggregated=aggregated,
    )


def _unary(name: str, block: Block) -> Block:
    if name in UNARY:
        with np.errstate(all="ignore"):
            return dataclasses.replace(block, values=UNARY[name](block.values))
    diff = np.diff(block.values, axis=1)
    if name == "rateofchangesec":
        diff = diff / (np.diff(block.times) / NS)
    return dataclasses.replace(block, times=block.times[1:], values=diff)


def _rolling(op: RollingOp, block: Block) -> Block:
    size = block.times.size
    if op.window > size:
        raise OperationError(
            f"operations: rolling window {op.window} is greater than the "
            f"series length {size}"
        )
    windows = np.lib.stride_tricks.sliding_window_view(
        block.values, op.window, axis=1
    )
    values = (
        np.vstack(
            [_reduce(row_windows.T, op.method) for row_windows in windows]
        )
        if windows.shape[0]
        else np.empty((0, size - op.window + 1))
    )
    rolled = dataclasses.replace(
        block, times=block.times[op.window - 1 :], values=values
    )
    return _rate(rolled, op.method)


def _resample(op: ResampleOp, block: Block) -> Block:
    keys = block.times - block.times % op.granularity
    buckets, inverse = np.unique(keys, return_inverse=True)
    values = np.full((block.values.shape[0], buckets.size), np.nan)
    for j in range(buckets.size):
        columns = block.values[:, inverse == j]
        values[:, j] = _reduce(columns.T, op.method)
    resampled = dataclasses.replace(
        block, granularity=op.granularity, times=buckets, values=values
    )
    return _rate(resampled, op.method)
