"""Same input, same output as Gnocchi's Carbonara.

Gnocchi 4.7.1 is in the ``test`` extra (and the ``bench`` extra); the
tests skip only where it is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from alarmer.metrics import policy as ap
from alarmer.metrics.series import aggregation as agg

carbonara = pytest.importorskip("gnocchi.carbonara")

NS = ap.NS
METHODS = (
    "mean",
    "sum",
    "count",
    "min",
    "max",
    "first",
    "last",
    "std",
    "median",
    "1pct",
    "95pct",
    "rate:mean",
    "rate:max",
    "rate:std",
    "rate:last",
    "rate:95pct",
)


def carbonara_series(ts_ns, values, granularity_s, method):
    series = carbonara.TimeSerie.from_data(
        ts_ns.astype("datetime64[ns]"), values
    )
    g = np.timedelta64(granularity_s, "s")
    grouped = series.group_serie(g, carbonara.round_timestamp(series.first, g))
    result = carbonara.AggregatedTimeSerie.from_grouped_serie(
        grouped, carbonara.Aggregation(method, g, None)
    )
    return result.timestamps.astype(np.int64), result.values


@pytest.mark.parametrize("seed", [1, 2])
def test_bulk_equals_carbonara(seed):
    rng = np.random.default_rng(seed)
    ts = (1_700_000_000 + np.cumsum(rng.integers(1, 50, 5000))) * NS
    values = rng.normal(100, 30, ts.size)
    grans = (60, 300, 3600)
    policy = ap.ArchivePolicy(
        "c", tuple(ap.PolicyItem(g * NS, None) for g in grans), METHODS
    )
    state = agg.MetricState(policy)
    state.apply(ts, values)
    for g in grans:
        for method in METHODS:
            exp_ts, exp_values = carbonara_series(ts, values, g, method)
            got_ts, got_values = state.read(method, g * NS)
            assert got_ts.tolist() == exp_ts.tolist(), (g, method)
            np.testing.assert_allclose(
                got_values, exp_values, rtol=1e-9, atol=1e-9, err_msg=method
            )


def test_one_point_at_a_time_equals_carbonara():
    rng = np.random.default_rng(3)
    ts = (1_700_000_000 + np.cumsum(rng.integers(1, 20, 600))) * NS
    values = rng.random(ts.size) * 10
    policy = ap.ArchivePolicy(
        "c",
        (ap.PolicyItem(60 * NS, None), ap.PolicyItem(600 * NS, None)),
        METHODS,
    )
    state = agg.MetricState(policy)
    for t, v in zip(ts, values, strict=True):
        state.apply(np.array([t]), np.array([v]))
    for g in (60, 600):
        for method in METHODS:
            exp_ts, exp_values = carbonara_series(ts, values, g, method)
            got_ts, got_values = state.read(method, g * NS)
            assert got_ts.tolist() == exp_ts.tolist(), (g, method)
            np.testing.assert_allclose(
                got_values, exp_values, rtol=1e-9, atol=1e-9, err_msg=method
            )
