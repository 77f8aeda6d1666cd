"""Aggregation across series, against numpy over a hand-built grid."""

from __future__ import annotations

import numpy as np
import pytest

from alarmer.errors import AlarmerError
from alarmer.metrics import query
from alarmer.metrics.series.store import Series, align_rows

G = 60 * 10**9


def s(points: dict[int, float], granularity: int = G) -> Series:
    ts = np.array(sorted(points), dtype=np.int64) * granularity
    return Series(
        granularity, ts, np.array([points[k] for k in sorted(points)])
    )


A = s({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0})
B = s({1: 10.0, 2: 20.0, 3: 30.0, 4: 40.0})


@pytest.mark.parametrize(
    ("method", "reducer"),
    [
        ("mean", np.nanmean),
        ("median", np.nanmedian),
        ("std", np.nanstd),
        ("var", np.nanvar),
        ("min", np.nanmin),
        ("max", np.nanmax),
        ("sum", np.nansum),
        ("count", lambda g, axis: (~np.isnan(g)).sum(axis=axis)),
    ],
)
def test_methods_match_numpy_nan_reducers(method, reducer):
    rng = np.random.default_rng(0)
    series = []
    for i in range(6):
        keep = rng.random(20) > 0.3
        ts = np.flatnonzero(keep).astype(np.int64) * G
        series.append(Series(G, ts, rng.normal(0, 5, ts.size) + i))
    grid = np.full((6, 20), np.nan)
    for i, one in enumerate(series):
        grid[i, one.timestamps // G] = one.values
    present = ~np.isnan(grid).all(axis=0)
    got = query.aggregate_across(
        series, method, needed_overlap=0, start=0, stop=20 * G
    )
    assert got.timestamps.tolist() == (np.flatnonzero(present) * G).tolist()
    expected = reducer(grid[:, present], axis=0)
    np.testing.assert_allclose(got.values, expected, rtol=1e-12)
    rated = query.aggregate_across(
        series, "rate:" + method, needed_overlap=0, start=0, stop=20 * G
    )
    np.testing.assert_allclose(rated.values, np.diff(expected), rtol=1e-9)
    assert rated.timestamps.tolist() == got.timestamps[1:].tolist()


def test_full_overlap_required_by_default():
    with pytest.raises(query.NotEnoughOverlap, match="Less than 100"):
        query.aggregate_across([A, B], "mean", start=0)


def test_without_bounds_the_result_is_trimmed_to_the_overlap():
    got = query.aggregate_across([A, B], "mean")
    assert got.timestamps.tolist() == [G, 2 * G, 3 * G]
    assert got.values.tolist() == [6.0, 11.5, 17.0]


def test_no_overlap():
    c = s({10: 1.0})
    with pytest.raises(query.NotEnoughOverlap, match="No overlap"):
        query.aggregate_across([A, c], "mean")
    got = query.aggregate_across([A, c], "max", needed_overlap=0)
    assert got.values.tolist() == [1.0, 2.0, 3.0, 4.0, 1.0]


def test_needed_overlap_percentage():
    # overlap 3 of 5 timestamps = 60 %
    got = query.aggregate_across(
        [A, B], "sum", start=0, stop=5 * G, needed_overlap=60
    )
    assert got.values.tolist() == [1.0, 12.0, 23.0, 34.0, 40.0]
    with pytest.raises(query.NotEnoughOverlap, match=r"\(60.00%\)"):
        query.aggregate_across(
            [A, B], "sum", start=0, stop=5 * G, needed_overlap=61
        )


def test_fill_number_and_null_and_dropna():
    got = query.aggregate_across([A, B], "mean", fill=0)
    assert got.timestamps.tolist() == [0, G, 2 * G, 3 * G, 4 * G]
    assert got.values.tolist() == [0.5, 6.0, 11.5, 17.0, 20.0]
    got = query.aggregate_across([A, B], "mean", fill="null")
    assert got.values.tolist() == [1.0, 6.0, 11.5, 17.0, 40.0]
    got = query.aggregate_across([A, B], "mean", fill="dropna")
    assert got.values.tolist() == [1.0, 6.0, 11.5, 17.0, 40.0]


def test_fill_forward_and_backward():
    a = s({0: 1.0, 2: 3.0})
    b = s({1: 10.0, 3: 30.0})
    assert query.aggregate_across(
        [a, b], "sum", fill="ffill"
    ).values.tolist() == [
        1.0,
        11.0,
        13.0,
        33.0,
    ]
    assert query.aggregate_across(
        [a, b], "sum", fill="bfill"
    ).values.tolist() == [
        11.0,
        13.0,
        33.0,
        30.0,
    ]
    assert query.aggregate_across(
        [a, b], "sum", fill="full_ffill"
    ).values.tolist() == [11.0, 11.0, 13.0, 33.0]
    assert query.aggregate_across(
        [a, b], "sum", fill="full_bfill"
    ).values.tolist() == [11.0, 13.0, 33.0, 33.0]


def test_start_rounded_down_stop_exclusive():
    got = query.aggregate_across(
        [A, B], "max", start=G + 5, stop=3 * G, needed_overlap=0
    )
    assert got.timestamps.tolist() == [G, 2 * G]


def test_granularity_mismatch():
    with pytest.raises(query.GranularityMismatch, match="granularity"):
        query.aggregate_across([A, s({0: 1.0}, 300 * 10**9)], "mean")


@pytest.mark.parametrize("fill", ["zero", float("nan"), True])
def test_bad_fill(fill):
    with pytest.raises(query.InvalidFill, match="fill"):
        query.aggregate_across([A], "mean", fill=fill)


@pytest.mark.parametrize("method", ["first", "95pct", "rate:last", ""])
def test_unknown_method(method):
    with pytest.raises(query.UnknownCrossMethod, match="Unknown"):
        query.aggregate_across([A], method)


def test_errors_are_value_errors():
    assert issubclass(query.NotEnoughOverlap, ValueError)
    with pytest.raises(query.CrossAggregationError):
        query.aggregate_across([], "mean")


def test_empty_series_with_zero_overlap_needed():
    empty = Series(G, np.empty(0, dtype=np.int64), np.empty(0))
    got = query.aggregate_across([empty, empty], "mean", needed_overlap=0)
    assert got.timestamps.size == 0 and got.granularity == G


def test_thousand_series():
    rng = np.random.default_rng(1)
    ts = np.arange(10, dtype=np.int64) * G
    values = rng.random((1000, 10))
    series = [Series(G, ts, row) for row in values]
    got = query.aggregate_across(series, "mean")
    np.testing.assert_allclose(got.values, values.mean(axis=0), rtol=1e-12)


# -- the evaluator's split request: reduce once, window as time passes --

T0 = 1_800_000_000 // 60 * 60 * 1_000_000_000


def pair(offsets, values):
    ts = np.array([T0 + o * G for o in offsets], dtype=np.int64)
    return ts, np.array(values, dtype=np.float64)


CASES = [
    # same timestamps everywhere
    [pair([0, 1, 2, 3], [1, 2, 3, 4]), pair([0, 1, 2, 3], [5, 6, 7, 8])],
    # ragged: gaps and different ranges
    [pair([0, 1, 3], [1, 2, 4]), pair([1, 2, 3, 4], [6, 7, 8, 9])],
    # NaN inside, one empty series
    [
        pair([0, 1, 2], [1, np.nan, 3]),
        pair([], []),
        pair([0, 2], [5, 7]),
    ],
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "method", ["mean", "max", "min", "sum", "count", "std", "rate:mean"]
)
@pytest.mark.parametrize(("start", "stop"), [(1, 4), (0, 5), (2, 3), (1, 9)])
def test_reduce_then_window_equals_aggregate_across(case, method, start, stop):
    begin, end = T0 + start * G + 7, T0 + stop * G
    series = [Series(G, ts, v) for ts, v in case]
    times, reduced = query.reduce_across(series, method.removeprefix("rate:"))
    got = query.window_across(times, reduced, method, G, start=begin, stop=end)
    want = query.aggregate_across(
        series,
        method,
        start=begin,
        stop=end,
        needed_overlap=0.0,
    )
    np.testing.assert_array_equal(got[0], want.timestamps)
    np.testing.assert_allclose(got[1], want.values, equal_nan=True)
    grid_times, grid = align_rows([ts for ts, _ in case], [v for _, v in case])
    on_grid = query.window_across(
        *query.reduce_grid(grid_times, grid, method.removeprefix("rate:")),
        method,
        G,
        start=begin,
        stop=end,
    )
    np.testing.assert_array_equal(on_grid[0], want.timestamps)
    np.testing.assert_allclose(on_grid[1], want.values, equal_nan=True)


def test_one_wording_of_the_overlap_rules():
    """The grid of the aggregates language and aggregate_across agree."""
    with pytest.raises(query.NotEnoughOverlap) as across:
        query.aggregate_across(
            [A, B], "sum", start=0, stop=5 * G, needed_overlap=61
        )
    with pytest.raises(query.NotEnoughOverlap) as aligned:
        query.align([A, B], needed_overlap=61, start=0, stop=5 * G)
    assert (
        str(across.value)
        == str(aligned.value)
        == (
            "Less than 61.000000% of datapoints overlap in this timespan "
            "(60.00%)"
        )
    )
    empty = Series(G, np.empty(0, dtype=np.int64), np.empty(0))
    for fn in (
        lambda: query.aggregate_across([empty, empty], "mean"),
        lambda: query.align([empty, empty]),
    ):
        with pytest.raises(query.NotEnoughOverlap, match=r"^No overlap$"):
            fn()
    times, grid = query.align([empty, empty], needed_overlap=0)
    assert times.size == 0 and grid.shape == (2, 0)


def test_errors_derive_from_the_query_error():
    assert issubclass(query.CrossAggregationError, query.QueryError)
    assert issubclass(query.OperationError, query.QueryError)
    assert issubclass(query.QueryError, AlarmerError)
    assert issubclass(query.QueryError, ValueError)
