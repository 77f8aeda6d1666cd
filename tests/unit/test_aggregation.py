"""The aggregation core against an independent computation.

The reference below works from the raw points with plain Python and the
``statistics`` module, bucket by bucket, and models the back window and
the retention from their definitions; the engine's columns, incremental
updates and partial recomputations must agree with it.
"""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarmer.metrics import policy as ap
from alarmer.metrics.series import aggregation as agg

NS = ap.NS
ALL_METHODS = (
    "mean",
    "sum",
    "count",
    "min",
    "max",
    "first",
    "last",
    "std",
    "median",
    "5pct",
    "95pct",
    "rate:mean",
    "rate:sum",
    "rate:count",
    "rate:min",
    "rate:max",
    "rate:first",
    "rate:last",
    "rate:std",
    "rate:median",
    "rate:90pct",
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _reduce(method: str, values: list[float]) -> float | None:
    if not values:
        return None
    if method == "mean":
        return statistics.fmean(values)
    if method == "sum":
        return math.fsum(values)
    if method == "count":
        return float(len(values))
    if method == "min":
        return min(values)
    if method == "max":
        return max(values)
    if method == "first":
        return values[0]
    if method == "last":
        return values[-1]
    if method == "std":
        return statistics.stdev(values) if len(values) > 1 else None
    if method == "median":
        return statistics.median(values)
    pct = ap.percentile_of(method)
    assert pct is not None, method
    return _percentile(values, pct)


def _bucketed(
    samples: list[tuple[int, float]], base: str, granularity: int
) -> dict[int, float]:
    buckets: dict[int, list[float]] = {}
    for ts, value in samples:
        buckets.setdefault(ts - ts % granularity, []).append(value)
    result = {}
    for start, values in buckets.items():
        value = _reduce(base, values)
        if value is not None:
            result[start] = value
    return result


class Model:
    """The rules of a write, from their text (Gnocchi's batch rules).

    A batch keeps the smallest value of a duplicated timestamp, refuses
    points older than the first block timestamp (``back_window`` blocks
    of the coarsest granularity, one more with a ``rate:`` method), and
    replaces stored points.  Buckets are recomputed from the batch's
    oldest point (the oldest point kept, when that one is refused) with
    the raw points from the first block timestamp on; a ``rate:``
    bucket recomputed first counts the difference into its first point
    only when the point before is within one granularity; a rate method
    left without a value in a recomputed bucket keeps its value.
    """

    def __init__(self, policy: ap.ArchivePolicy) -> None:
        self.policy = policy
        self.points: dict[int, float] = {}
        self.last: int | None = None
        self.refused = 0
        self.has_rate = any(
            m.startswith("rate:") for m in policy.aggregation_methods
        )
        #: (rate method, granularity) -> {bucket start: value}
        self.rates: dict[tuple[str, int], dict[int, float]] = {}

    def cut(self) -> int | None:
        if self.last is None:
            return None
        block = self.policy.max_granularity
        blocks = self.policy.back_window + int(self.has_rate)
        return self.last - self.last % block - blocks * block

    def write(self, ts: list[int], values: list[float]) -> None:
        batch: dict[int, float] = {}
        for t, v in sorted(zip(ts, values, strict=True)):
            batch.setdefault(t, v)
        if not batch:
            return
        cut = self.cut()
        floor = -1 if cut is None else cut
        accepted = {t: v for t, v in batch.items() if t >= floor}
        self.refused += len(batch) - len(accepted)
        kept = {t: v for t, v in self.points.items() if t >= floor}
        kept.update(accepted)
        self.points.update(accepted)
        if accepted:
            newest = max(accepted)
            self.last = newest if self.last is None else max(self.last, newest)
        if self.has_rate:
            first = min(batch) if min(batch) in accepted else min(kept)
            self._rates(first, sorted(kept.items()))

    def _rates(self, first: int, ordered: list[tuple[int, float]]) -> None:
        for granularity in self.policy.granularities:
            start = first - first % granularity
            samples = [
                (t, v - vb)
                for (before, vb), (t, v) in itertools.pairwise(ordered)
                if t >= start and before >= start - granularity
            ]
            for method in self.policy.aggregation_methods:
                if method.startswith("rate:"):
                    self.rates.setdefault((method, granularity), {}).update(
                        _bucketed(samples, method[len("rate:") :], granularity)
                    )


def reference_series(
    model: Model, method: str, granularity: int
) -> dict[int, float]:
    """{bucket start: value} that *model* gives for one series."""
    if method.startswith("rate:"):
        result = dict(model.rates.get((method, granularity), {}))
    else:
        result = _bucketed(sorted(model.points.items()), method, granularity)
    item = model.policy.item(granularity)
    keep = item.points if item is not None else None
    if keep is not None and result:
        # each series from its own newest value; the engine holds
        # RETENTION_SLACK buckets beyond the newest bucket's timespan
        newest = max(ts - ts % granularity for ts in model.points)
        own = max(result)
        if own <= newest - (keep + agg.RETENTION_SLACK) * granularity:
            return {}
        result = {
            k: v for k, v in result.items() if k > own - keep * granularity
        }
    return dict(sorted(result.items()))


def assert_matches(state: agg.MetricState, model: Model) -> None:
    for item in model.policy.definition:
        for method in model.policy.aggregation_methods:
            ts, vals = state.read(method, item.granularity)
            expected = reference_series(model, method, item.granularity)
            got = dict(zip(ts.tolist(), vals.tolist(), strict=True))
            assert list(got) == list(expected), (method, item.granularity)
            for key, value in expected.items():
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), (
                    method,
                    item.granularity,
                    key,
                )


def policy(
    *items: tuple[int, int | None],
    methods=ALL_METHODS,
    back_window: int = 0,
) -> ap.ArchivePolicy:
    return ap.ArchivePolicy(
        "test",
        tuple(ap.PolicyItem(g * NS, p) for g, p in items),
        tuple(methods),
        back_window,
    )


def write(state: agg.MetricState, model: Model, ts, values) -> agg.ApplyResult:
    ts_ns = [int(t * NS) for t in ts]
    model.write(ts_ns, list(values))
    return state.apply(np.array(ts_ns, dtype=np.int64), np.array(values))


def test_every_method_across_bucket_boundaries():
    pol = policy((60, None), (300, None), (3600, None))
    state, model = agg.MetricState(pol), Model(pol)
    rng = np.random.default_rng(7)
    ts = np.cumsum(rng.integers(1, 40, 500))
    values = rng.normal(50, 20, ts.size)
    result = write(state, model, ts, values)
    assert (result.stored, result.refused) == (500, 0)
    assert_matches(state, model)


def test_in_order_appends_one_point_at_a_time_equal_a_bulk_write():
    pol = policy((10, 50), (60, None), back_window=1)
    one, bulk, model = agg.MetricState(pol), agg.MetricState(pol), Model(pol)
    rng = np.random.default_rng(3)
    ts = np.cumsum(rng.integers(1, 9, 300))
    values = rng.random(ts.size) * 100
    for t, v in zip(ts, values, strict=True):
        write(one, model, [t], [v])
    bulk.apply((ts * NS).astype(np.int64), values)
    assert_matches(one, model)
    assert_matches(bulk, model)


def test_out_of_order_inside_back_window_recomputes_buckets():
    pol = policy((60, None), (3600, None), back_window=2)
    state, model = agg.MetricState(pol), Model(pol)
    write(state, model, [43200 + i * 30 for i in range(200)], range(200))
    # last point 13:39:30 -> first block timestamp 10:00 (two blocks
    # back, one more for rate:): 10:00:10 and 12:01:05 are accepted,
    # 09:59:59 is refused (and logged, for the replay to refuse it).
    result = write(state, model, [36010, 43265, 35999], [1e3, -5, 7])
    assert (result.stored, result.refused) == (2, 1)
    assert result.ts.tolist() == [35999 * NS, 36010 * NS, 43265 * NS]
    assert_matches(state, model)
    assert state.read("count", 3600 * NS)[0][0] == 36000 * NS


def test_points_older_than_back_window_are_refused_and_counted():
    pol = policy((60, None), (3600, None), back_window=0)
    state, model = agg.MetricState(pol), Model(pol)
    write(state, model, [39605], [1.0])  # 11:00:05
    # one block back for rate: -> 10:00 is the oldest accepted
    result = write(state, model, [35999, 36000, 39700], [2.0, 3.0, 4.0])
    assert (result.stored, result.refused) == (2, 1)
    assert model.refused == 1
    assert state.first_block_timestamp() == 36000 * NS
    assert_matches(state, model)


def test_duplicates_smallest_in_a_batch_newest_across_batches():
    pol = policy((60, None), methods=("mean", "count", "last"))
    state, model = agg.MetricState(pol), Model(pol)
    write(state, model, [0, 10, 10, 20], [1.0, 3.0, 2.0, 4.0])
    assert state.read("mean", 60 * NS)[1].tolist() == [
        pytest.approx((1 + 2 + 4) / 3)
    ]
    write(state, model, [10], [12.0])
    assert state.read("mean", 60 * NS)[1].tolist() == [
        pytest.approx((1 + 12 + 4) / 3)
    ]
    assert state.read("count", 60 * NS)[1].tolist() == [3.0]
    assert_matches(state, model)


def test_retention_keeps_the_newest_points_buckets():
    pol = policy((60, 5), (600, 2))
    state, model = agg.MetricState(pol), Model(pol)
    write(state, model, range(0, 3000, 20), range(150))
    assert state.read("count", 60 * NS)[0].tolist() == [
        t * NS for t in (2700, 2760, 2820, 2880, 2940)
    ]
    assert state.read("count", 600 * NS)[0].tolist() == [
        1800 * NS,
        2400 * NS,
    ]
    assert_matches(state, model)


def test_std_of_a_single_point_bucket_is_omitted():
    pol = policy((60, None), methods=("std", "mean"))
    state = agg.MetricState(pol)
    state.apply(np.array([0, 60, 70]) * NS, np.array([1.0, 2.0, 4.0]))
    ts, vals = state.read("std", 60 * NS)
    assert ts.tolist() == [60 * NS]
    assert vals.tolist() == [pytest.approx(statistics.stdev([2.0, 4.0]))]
    assert state.read("mean", 60 * NS)[0].tolist() == [0, 60 * NS]


def test_rate_example_from_gnocchi():
    pol = policy((60, None), methods=("rate:last",))
    state = agg.MetricState(pol)
    base = 36000
    state.apply(
        np.array([base, base + 30, base + 60, base + 90]) * NS,
        np.array([1.0, 4.0, 9.0, 16.0]),
    )
    ts, vals = state.read("rate:last", 60 * NS)
    assert ts.tolist() == [base * NS, (base + 60) * NS]
    assert vals.tolist() == [3.0, 7.0]


def test_percentile_is_linear_like_numpy():
    pol = policy((60, None), methods=("95pct", "median", "50pct"))
    state = agg.MetricState(pol)
    state.apply(np.arange(10) * NS, np.arange(1.0, 11.0))
    assert state.read("95pct", 60 * NS)[1].tolist() == [pytest.approx(9.55)]
    assert state.read("median", 60 * NS)[1].tolist() == [5.5]
    values = np.random.default_rng(1).random(37)
    state = agg.MetricState(pol)
    state.apply(np.arange(37) * NS, values)
    assert state.read("95pct", 60 * NS)[1][0] == pytest.approx(
        np.percentile(values, 95), rel=1e-12
    )
    assert state.read("median", 60 * NS)[1][0] == np.median(values)


def test_read_window_start_rounded_down_stop_exclusive():
    pol = policy((60, None), methods=("mean",))
    state = agg.MetricState(pol)
    state.apply(np.arange(0, 600, 10) * NS, np.arange(60.0))
    ts, _ = state.read("mean", 60 * NS, start=130 * NS, stop=300 * NS)
    assert ts.tolist() == [120 * NS, 180 * NS, 240 * NS]
    ts, _ = state.read_last("mean", 60 * NS, 3)
    assert ts.tolist() == [420 * NS, 480 * NS, 540 * NS]


def test_uneven_granularities_keep_enough_raw_points():
    # 7 s does not divide 60 s: the bucket holding the first accepted
    # timestamp starts before it and must still be recomputed whole.
    pol = policy((7, None), (60, None), back_window=0)
    state, model = agg.MetricState(pol), Model(pol)
    write(state, model, range(0, 200, 3), range(67))
    write(state, model, [180, 181], [5.0, 6.0])
    assert_matches(state, model)


def test_unknown_method_rejected_by_policy_columns():
    with pytest.raises(agg.UnknownMethodError):
        agg.columns_for(["nope"])


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 4000),
                st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
            ),
            min_size=1,
            max_size=30,
        ),
        min_size=1,
        max_size=12,
    ),
    back_window=st.integers(0, 3),
)
def test_random_batches_match_the_model(batches, back_window):
    pol = policy((10, 40), (60, None), (300, 6), back_window=back_window)
    state, model = agg.MetricState(pol), Model(pol)
    refused = 0
    for batch in batches:
        ts = [t for t, _ in batch]
        values = [v for _, v in batch]
        result = write(state, model, ts, values)
        refused += result.refused
    assert refused == model.refused
    assert_matches(state, model)


@pytest.mark.parametrize(
    "methods",
    [
        ("mean", "min", "max", "sum", "std", "count"),
        ("first", "last", "count"),
        ("min",),
    ],
)
def test_small_in_order_batches_equal_one_point_at_a_time_bit_for_bit(
    methods,
):
    pol = policy((10, 20), (60, None), (3600, 5), methods=methods)
    grouped, single = agg.MetricState(pol), agg.MetricState(pol)
    rng = np.random.default_rng(14)
    t = 1_700_000_000
    for _ in range(400):
        n = int(rng.integers(1, agg.FAST_PATH_MAX + 1))
        ts = t + np.cumsum(rng.integers(1, 30, n))
        t = int(ts[-1])
        values = rng.normal(0, 1e3, n).round(int(rng.integers(0, 6)))
        ts_ns = (ts * NS).astype(np.int64)
        result = grouped.apply(ts_ns, values)
        assert (result.stored, result.refused) == (n, 0)
        single.apply(ts_ns[:1], values[:1])
        for tn, v in zip(ts_ns[1:].tolist(), values[1:].tolist(), strict=True):
            single._append_point(tn, v, None)
        single._truncate_raw()
    assert grouped.levels.keys() == single.levels.keys()
    for g, level in grouped.levels.items():
        other = single.levels[g]
        assert level._ts[level.lo : level.hi].tolist() == (
            other._ts[other.lo : other.hi].tolist()
        )
        for name, column in level._cols.items():
            mine = column[level.lo : level.hi]
            theirs = other._cols[name][other.lo : other.hi]
            assert np.array_equal(mine, theirs, equal_nan=True), (g, name)
    assert grouped.raw.ts.tolist() == single.raw.ts.tolist()
    assert grouped.raw.values.tolist() == single.raw.values.tolist()
