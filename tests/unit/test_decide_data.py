"""The evaluator's reading path: cached and batched cross-metric reads."""

from __future__ import annotations

import numpy as np
import pytest

from alarmer.evaluator import reader as data
from alarmer.metrics.series.store import Series

G = 60 * 1_000_000_000
T0 = 1_800_000_000 // 60 * 60 * 1_000_000_000


def series(offsets, values):
    ts = np.array([T0 + o * G for o in offsets], dtype=np.int64)
    return ts, np.array(values, dtype=np.float64)


class CountingEngine:
    """A tiny in-memory engine that counts the reads it serves."""

    def __init__(self):
        self.data = {}
        self.reads = 0

    def last_buckets(self, metric_id, method, granularity, n, *, stop=None):
        self.reads += 1
        ts, values = self.data[metric_id]
        if stop is not None:
            keep = ts < stop
            ts, values = ts[keep], values[keep]
        return Series(granularity, ts[-n:], values[-n:])


def test_bucket_cache_invalidated_by_announcements():
    engine = CountingEngine()
    engine.data["m1"] = series([0, 1], [1, 2])
    cache = data.BucketCache(ttl=60)
    assert cache.get(engine, "m1", "mean", G, 5)[1].tolist() == [1, 2]
    assert cache.get(engine, "m1", "mean", G, 5)[1].tolist() == [1, 2]
    assert engine.reads == 1
    engine.data["m1"] = series([0, 1, 2], [1, 2, 3])
    cache.invalidate(["m1"])
    assert cache.get(engine, "m1", "mean", G, 5)[1].tolist() == [1, 2, 3]
    assert engine.reads == 2


def test_bucket_cache_ttl_bounds_staleness():
    engine = CountingEngine()
    engine.data["m1"] = series([0], [1])
    cache = data.BucketCache(ttl=0)
    cache.get(engine, "m1", "mean", G, 5)
    cache.get(engine, "m1", "mean", G, 5)
    assert engine.reads == 2


def test_cross_results_follow_metric_generations():
    engine = CountingEngine()
    engine.data["a"] = series([0, 1, 2], [10, 10, 10])
    engine.data["b"] = series([0, 1, 2], [20, 20, 20])
    cache = data.BucketCache(ttl=60)
    plan = data.Plan.of(
        data.BY_METRICS,
        {
            "aggregation_method": "mean",
            "granularity": 60,
            "evaluation_periods": 2,
            "threshold": 12,
            "comparison_operator": "gt",
        },
    )
    now = T0 + 3 * G
    first = data.read_outcome(engine, plan, ["a", "b"], now, cache=cache)
    again = data.read_outcome(engine, plan, ["a", "b"], now, cache=cache)
    assert first == again
    assert first.values == (15.0, 15.0)
    assert engine.reads == 2
    engine.data["b"] = series([0, 1, 2], [20, 20, 0])
    cache.invalidate(["b"])
    third = data.read_outcome(engine, plan, ["a", "b"], now, cache=cache)
    assert third.values == (15.0, 5.0)
    assert (third.state, third.trending) == (None, "ok")
    assert engine.reads == 3


def test_missing_granularity_is_aodh_insufficient_text():
    class NoGranularity:
        def last_buckets(self, *args, **kwargs):
            raise LookupError("Granularity '60' does not exist")

    plan = data.Plan.of(
        data.RESOURCES,
        {
            "metric": "cpu",
            "resource_id": "r1",
            "aggregation_method": "mean",
            "granularity": 60,
            "evaluation_periods": 2,
            "threshold": 1,
        },
    )
    got = data.read_outcome(NoGranularity(), plan, ["m"], T0)
    assert got.unknown_reason == (
        "aggregation mean does not exist for metric cpu of resource r1"
    )


class PerMetricOnly:
    """The engine seen through ``last_buckets`` only (no batched read)."""

    def __init__(self, engine):
        self.engine = engine

    def last_buckets(self, *args, **kwargs):
        return self.engine.last_buckets(*args, **kwargs)


@pytest.mark.parametrize("method", ["mean", "max", "rate:mean", "count"])
@pytest.mark.parametrize("cached", [False, True])
def test_batched_read_decides_like_per_metric_reads(tmp_path, method, cached):
    from alarmer.metrics import policy as ap
    from alarmer.metrics.series import store as eng
    from alarmer.metrics.series.drivers import file as file_driver

    engine = eng.SeriesStore(file_driver.FileDriver(str(tmp_path)))
    policy = ap.ArchivePolicy(
        "p", (ap.PolicyItem(G, 100),), ("mean", "max", "count"), 0
    )
    rng = np.random.default_rng(7)
    ids = [f"m{i}" for i in range(7)]
    for i, metric_id in enumerate(ids):
        keep = [k for k in range(8) if (k + i) % 4]  # gaps differ per metric
        ts = np.array([T0 + k * G + i for k in keep], dtype=np.int64)
        engine.add_measures(
            eng.MetricRef(metric_id, policy), ts, rng.normal(10, 5, ts.size)
        )
    plan = data.Plan.of(
        data.BY_RESOURCES,
        {
            "aggregation_method": method,
            "granularity": 60,
            "evaluation_periods": 3,
            "threshold": 10,
            "comparison_operator": "gt",
        },
    )
    now = T0 + 8 * G
    per_metric = data.read_outcome(PerMetricOnly(engine), plan, ids, now)
    batched = data.read_outcome(
        engine,
        plan,
        ids,
        now,
        cache=data.BucketCache(ttl=60) if cached else None,
    )
    assert batched == per_metric
    assert len(batched.values) == 3
    engine.close()
