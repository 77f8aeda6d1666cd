"""Aggregation across series (pure numpy, no I/O).

The semantics of Gnocchi's ``/v1/aggregates`` operation
``(aggregate M (metric ...))``: the series are laid on the union of their
timestamps, gaps are NaN (or filled), and M reduces each timestamp
across series, ignoring NaN.  ``rate:M`` is the difference between
consecutive values of M (stamped at the later timestamp).  ``std`` and
``var`` are population statistics (``ddof=0``), as numpy's ``nanstd``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alarmer.errors import AlarmerError
from alarmer.metrics.series.aggregation import Series

#: Reducers across series (the names Gnocchi accepts).
METHODS = ("mean", "median", "std", "min", "max", "sum", "var", "count")
FILLS = ("null", "dropna", "ffill", "bfill", "full_ffill", "full_bfill")
_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_F = np.empty(0, dtype=np.float64)


class CrossAggregationError(AlarmerError, ValueError):
    """The series cannot be aggregated together."""


class UnknownCrossMethod(CrossAggregationError):
    """Not a method :func:`aggregate_across` knows."""


class InvalidFill(CrossAggregationError):
    """Not a valid ``fill``."""


class GranularityMismatch(CrossAggregationError):
    """The series do not all have the same granularity."""


class NotEnoughOverlap(CrossAggregationError):
    """Less of the timestamps than asked are present in every series."""


def is_valid_method(method: str) -> bool:
    """True for the methods :func:`aggregate_across` accepts."""
    return method.removeprefix("rate:") in METHODS


def _check_fill(fill: float | str | None) -> None:
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


def forward_fill(grid: np.ndarray) -> np.ndarray:
    """Fill NaN with the previous value of the same row."""
    mask = np.isnan(grid)
    idx = np.where(~mask, np.arange(grid.shape[1]), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    return grid[np.arange(grid.shape[0])[:, None], idx]


def backward_fill(grid: np.ndarray) -> np.ndarray:
    """Fill NaN with the next value of the same row."""
    return forward_fill(grid[:, ::-1])[:, ::-1]


def reduce_columns(grid: np.ndarray, method: str) -> np.ndarray:
    """Reduce each column of (series x time) *grid*, ignoring NaN.

    A column without any value gives NaN (0 for ``count`` and ``sum``).
    """
    present = ~np.isnan(grid)
    count: np.ndarray = present.sum(axis=0)
    out: np.ndarray
    if method == "count":
        out = count.astype(np.float64)
    elif method == "sum":
        out = np.nansum(grid, axis=0)
    elif method == "min":
        out = np.fmin.reduce(grid, axis=0)
    elif method == "max":
        out = np.fmax.reduce(grid, axis=0)
    elif method in ("mean", "std", "var"):
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(grid, axis=0) / count
            if method == "mean":
                out = mean
            else:
                dev = np.where(present, grid - mean, 0.0)
                var = (dev * dev).sum(axis=0) / count
                out = np.sqrt(var) if method == "std" else var
    elif method == "median":
        empty = count == 0
        if empty.any():
            grid = grid.copy()
            grid[:, empty] = 0.0
            out = np.nanmedian(grid, axis=0)
            out[empty] = np.nan
        else:
            out = np.nanmedian(grid, axis=0)
    else:
        raise UnknownCrossMethod(f"Unknown aggregation method {method!r}")
    return out


def _grid(
    series: Sequence[Series], filler: float
) -> tuple[np.ndarray, np.ndarray]:
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


def aggregate_across(
    series: Sequence[Series],
    method: str,
    *,
    start: int | None = None,
    stop: int | None = None,
    needed_overlap: float = 100.0,
    fill: float | str | None = None,
) -> Series:
    """Reduce several series of one granularity timestamp by timestamp.

    :param method: one of :data:`METHODS`, or ``rate:`` + one of them.
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
    if not is_valid_method(method):
        raise UnknownCrossMethod(f"Unknown aggregation method {method!r}")
    _check_fill(fill)
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
    if start is not None or stop is not None:
        lo_ts = None if start is None else start - start % granularity
        sliced = []
        for s in series:
            lo = 0 if lo_ts is None else np.searchsorted(s.timestamps, lo_ts)
            hi = (
                s.timestamps.size
                if stop is None
                else np.searchsorted(s.timestamps, stop)
            )
            sliced.append(
                Series(granularity, s.timestamps[lo:hi], s.values[lo:hi])
            )
        series = sliced
    numeric = fill is not None and not isinstance(fill, str)
    times, grid = _grid(series, float(fill) if numeric else np.nan)  # type: ignore[arg-type]
    return _aggregate_grid(
        granularity,
        times,
        grid,
        method,
        start=start,
        stop=stop,
        needed_overlap=needed_overlap,
        fill=fill,
    )


def aggregate_matrix(
    granularity: int,
    timestamps: np.ndarray,
    grid: np.ndarray,
    method: str,
    *,
    start: int | None = None,
    stop: int | None = None,
    needed_overlap: float = 100.0,
    fill: float | str | None = None,
) -> Series:
    """:func:`aggregate_across` of series already laid on one time axis.

    *grid* (series x time, NaN where a series has no bucket) over the
    sorted *timestamps*, as returned by
    :meth:`~alarmer.metrics.series.store.SeriesStore.last_buckets_many`;
    the result equals :func:`aggregate_across` of the series the rows
    hold, without building one :class:`Series` per row.
    """
    if not is_valid_method(method):
        raise UnknownCrossMethod(f"Unknown aggregation method {method!r}")
    _check_fill(fill)
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
    if fill is not None and not isinstance(fill, str):
        grid = np.where(np.isnan(grid), float(fill), grid)
    return _aggregate_grid(
        granularity,
        times,
        grid,
        method,
        start=start,
        stop=stop,
        needed_overlap=needed_overlap,
        fill=fill,
    )


def _aggregate_grid(
    granularity: int,
    times: np.ndarray,
    grid: np.ndarray,
    method: str,
    *,
    start: int | None,
    stop: int | None,
    needed_overlap: float,
    fill: float | str | None,
) -> Series:
    if fill == "ffill":
        grid = forward_fill(grid)
    elif fill == "bfill":
        grid = backward_fill(grid)
    elif fill == "full_ffill":
        grid = backward_fill(forward_fill(grid))
    elif fill == "full_bfill":
        grid = forward_fill(backward_fill(grid))
    if fill is None:
        overlap = np.flatnonzero(~np.isnan(grid).any(axis=0))
        if overlap.size == 0 and needed_overlap > 0:
            raise NotEnoughOverlap("No overlap")
        if times.size:
            if stop is None and overlap.size:
                times = times[: overlap[-1] + 1]
                grid = grid[:, : overlap[-1] + 1]
            if start is None and overlap.size:
                times = times[overlap[0] :]
                grid = grid[:, overlap[0] :]
            percent = overlap.size * 100.0 / times.size
            if percent < needed_overlap:
                raise NotEnoughOverlap(
                    f"Less than {needed_overlap:f}% of datapoints overlap "
                    f"in this timespan ({percent:.2f}%)"
                )
    if times.size == 0:
        return Series(granularity, _EMPTY_I, _EMPTY_F)
    values = reduce_columns(grid, method.removeprefix("rate:"))
    if method.startswith("rate:"):
        values = np.diff(values)
        times = times[1:]
    if fill is not None and (fill == "dropna" or fill in FILLS[2:]):
        keep = np.isfinite(values)
        times = times[keep]
        values = values[keep]
    return Series(granularity, np.array(times, dtype=np.int64), values)
