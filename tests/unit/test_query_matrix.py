"""aggregate_matrix equals aggregate_across over the rows of the matrix."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from alarmer.metrics import query
from alarmer.metrics.series.store import Series, align_rows

G = 60 * 10**9


def random_series(rng: np.random.Generator, count: int) -> list[Series]:
    out = []
    for _ in range(count):
        minutes = np.flatnonzero(rng.random(12) < 0.7)
        out.append(
            Series(
                G,
                minutes.astype(np.int64) * G,
                np.round(rng.normal(50, 20, minutes.size), 3),
            )
        )
    return out


def outcome(fn):
    try:
        result = fn()
    except query.CrossAggregationError as exc:
        return type(exc).__name__
    return result.timestamps.tolist(), result.values.round(9).tolist()


@pytest.mark.parametrize("seed", range(12))
def test_matrix_equals_series(seed):
    rng = np.random.default_rng(seed)
    series = random_series(rng, int(rng.integers(1, 9)))
    times, grid = align_rows(
        [s.timestamps for s in series], [s.values for s in series]
    )
    methods = [*query.METHODS, "rate:mean", "rate:max", "rate:count"]
    bounds = [(None, None), (2 * G + 5, 9 * G), (0, None), (None, 7 * G)]
    fills = [None, 0, 2.5, "null", "dropna", "ffill", "full_bfill"]
    for method, (start, stop), fill, overlap in itertools.product(
        methods, bounds, fills, (0.0, 50.0, 100.0)
    ):
        kwargs = dict(
            start=start, stop=stop, needed_overlap=overlap, fill=fill
        )
        want = outcome(
            lambda: query.aggregate_across(series, method, **kwargs)  # noqa: B023
        )
        got = outcome(
            lambda: query.aggregate_matrix(G, times, grid, method, **kwargs)  # noqa: B023
        )
        assert got == want, (method, start, stop, fill, overlap)


def test_aodh_request_on_aligned_rows():
    ts = np.arange(3, dtype=np.int64) * G
    grid = np.array([[1.0, 2.0, 3.0], [3.0, np.nan, 5.0]])
    out = query.aggregate_matrix(
        G, ts, grid, "mean", start=0, stop=3 * G, needed_overlap=0
    )
    assert out.timestamps.tolist() == ts.tolist()
    assert out.values.tolist() == [2.0, 2.0, 4.0]
    rate = query.aggregate_matrix(
        G, ts, grid, "rate:max", start=0, stop=3 * G, needed_overlap=0
    )
    assert rate.timestamps.tolist() == [G, 2 * G]
    assert rate.values.tolist() == [-1.0, 3.0]


def test_matrix_errors():
    ts = np.arange(2, dtype=np.int64) * G
    with pytest.raises(query.UnknownCrossMethod):
        query.aggregate_matrix(G, ts, np.ones((1, 2)), "nope")
    with pytest.raises(query.InvalidFill):
        query.aggregate_matrix(G, ts, np.ones((1, 2)), "mean", fill="x")
    with pytest.raises(query.CrossAggregationError):
        query.aggregate_matrix(G, ts, np.ones((0, 2)), "mean")
    with pytest.raises(ValueError):
        query.aggregate_matrix(G, ts, np.ones((1, 3)), "mean")
