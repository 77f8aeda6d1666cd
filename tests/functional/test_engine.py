"""The engine end to end on the file driver: write, read back, restart."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from alarmer import runtime
from alarmer.metrics import policy as ap
from alarmer.metrics.series import drivers as storage
from alarmer.metrics.series import store as eng
from alarmer.metrics.series.drivers import file as file_driver
from tests.unit.test_aggregation import ALL_METHODS, Model, reference_series

NS = ap.NS


def make_policy(items, methods=ALL_METHODS, back_window=0):
    return ap.ArchivePolicy(
        "test",
        tuple(ap.PolicyItem(g * NS, p) for g, p in items),
        tuple(methods),
        back_window,
    )


@pytest.fixture
def base(tmp_path):
    return str(tmp_path / "series")


def open_engine(base, **kwargs) -> eng.SeriesStore:
    return eng.SeriesStore(file_driver.FileDriver(base), **kwargs)


def check_all(engine: eng.SeriesStore, metric_id: str, model: Model) -> None:
    for method in model.policy.aggregation_methods:
        got = engine.get_measures(metric_id, method)
        assert [s.granularity for s in got] == sorted(
            model.policy.granularities, reverse=True
        )
        for series in got:
            expected = reference_series(model, method, series.granularity)
            assert series.timestamps.tolist() == list(expected), method
            np.testing.assert_allclose(
                series.values,
                list(expected.values()),
                rtol=1e-9,
                atol=1e-9,
                err_msg=f"{method} {series.granularity}",
            )


def test_full_cycle_every_method_and_restart(base):
    policy = make_policy([(60, 30), (600, None), (3600, 4)], back_window=1)
    metric = eng.MetricRef("metric-1", policy)
    model = Model(policy)
    engine = open_engine(base, compact_deltas=7, hot_buckets=3)
    rng = np.random.default_rng(11)
    t = 1_700_000_000
    refused = 0
    for step in range(120):
        if step % 10 == 9:
            # a late batch: some inside the back window, some refused
            ts = [t - 9000, t - 3000, t - 30, t - 7]
        elif step % 4 == 0:
            ts = sorted(t + rng.integers(1, 200, 5))
        else:
            ts = [t + int(rng.integers(1, 90))]
        values = rng.normal(10, 3, len(ts)).tolist()
        ts_ns = [x * NS for x in ts]
        before = model.refused
        model.write(ts_ns, values)
        result = engine.add_measures(metric, np.array(ts_ns), np.array(values))
        assert result.refused == model.refused - before
        refused += result.refused
        assert result.oldest_accepted == model.cut()
        t = max(t, *ts)
    assert refused > 0
    check_all(engine, "metric-1", model)
    stats = engine.statistics()
    assert stats["measures_refused_late"] == refused
    assert stats["measures_stored"] >= len(model.points)
    engine.close()
    # a new engine on the same directory reads the same thing
    again = open_engine(base)
    check_all(again, "metric-1", model)
    again.close()


def test_reads_of_unknown_metric_and_errors(base):
    engine = open_engine(base)
    assert engine.get_measures("nothing", "mean") == []
    (empty,) = engine.get_measures("nothing", "mean", 60 * NS)
    assert empty.granularity == 60 * NS and empty.timestamps.size == 0
    assert engine.last_buckets("nothing", "max", 60 * NS, 3).values.size == 0
    with pytest.raises(eng.UnknownMethod):
        engine.get_measures("nothing", "avg")
    policy = make_policy([(60, None)], methods=("mean",))
    engine.add_measures(
        eng.MetricRef("m", policy), np.array([0]), np.array([1.0])
    )
    with pytest.raises(eng.AggregationNotStored, match="'max'"):
        engine.get_measures("m", "max")
    with pytest.raises(eng.GranularityNotStored, match="'300'"):
        engine.get_measures("m", "mean", 300 * NS)
    with pytest.raises(eng.GranularityNotStored):
        engine.last_buckets("m", "mean", 300 * NS, 1)
    with pytest.raises(storage.InvalidMetricId):
        engine.get_measures("../x", "mean")


def test_start_stop_and_last_buckets(base):
    engine = open_engine(base)
    policy = make_policy([(60, None)], methods=("mean", "std"))
    engine.add_measures(
        eng.MetricRef("m", policy),
        np.arange(0, 600, 30) * NS,
        np.arange(20, dtype=float),
    )
    (series,) = engine.get_measures("m", "mean", 60 * NS, 125 * NS, 300 * NS)
    assert series.timestamps.tolist() == [120 * NS, 180 * NS, 240 * NS]
    assert series.values.tolist() == [4.5, 6.5, 8.5]
    last = engine.last_buckets("m", "mean", 60 * NS, 2)
    assert last.timestamps.tolist() == [480 * NS, 540 * NS]
    # the partial current bucket is visible and updated
    engine.add_measures(
        eng.MetricRef("m", policy), np.array([600 * NS]), np.array([7.0])
    )
    last = engine.last_buckets("m", "std", 60 * NS, 2)
    assert last.timestamps.tolist() == [480 * NS, 540 * NS]
    engine.add_measures(
        eng.MetricRef("m", policy), np.array([601 * NS]), np.array([9.0])
    )
    last = engine.last_buckets("m", "std", 60 * NS, 1)
    assert last.timestamps.tolist() == [600 * NS]
    assert last.values.tolist() == [pytest.approx(np.std([7.0, 9.0], ddof=1))]


def test_torn_tail_is_ignored_then_cut(base):
    engine = open_engine(base)
    policy = make_policy([(60, None)], methods=("count", "sum"))
    metric = eng.MetricRef("m", policy)
    for i in range(5):
        engine.add_measures(metric, np.array([i * NS]), np.array([1.0]))
    path = engine.driver.path("m")
    size = os.path.getsize(path)
    with open(path, "ab") as fh:
        fh.write(b"\x20\x00\x00\x00garbage")  # an unfinished frame
    fresh = open_engine(base)
    assert fresh.get_measures("m", "count")[0].values.tolist() == [5.0]
    fresh.add_measures(metric, np.array([9 * NS]), np.array([1.0]))
    assert os.path.getsize(path) > size
    third = open_engine(base)
    assert third.get_measures("m", "sum")[0].values.tolist() == [6.0]


def test_file_tail_reads_after_a_known_version(base):
    """read(since): small and large appended tails, torn frames, reuse."""
    driver = file_driver.FileDriver(base)
    v1 = driver.append("t", None, b"one")
    big = os.urandom(200 * 1024)  # more than one tail read
    v2 = driver.append("t", v1, big)
    v3 = driver.append("t", v2, b"three")
    assert driver.read("t", v1).records == [big, b"three"]
    assert driver.read("t", v2).records == [b"three"]
    assert driver.read_many([("t", v2)])[0].version == v3
    same = driver.read("t", v3)
    assert same.records == [] and same.version == v3 and not same.reset
    with open(driver.path("t"), "ab") as fh:
        fh.write(b"\x20\x00\x00\x00torn")  # an unfinished frame
    torn = driver.read("t", v2)
    assert torn.records == [b"three"] and torn.version == v3
    assert driver.read("t", v3).records == []
    # Replaced by a new log (new generation): read from the start.
    v4 = driver.rewrite("t", v3, b"fresh")
    assert v4 is not None
    again = driver.read("t", v3)
    assert again.reset and again.records == [b"fresh"]
    driver.delete("t")
    gone = driver.read("t", v4)
    assert gone.reset and gone.records == [] and gone.version is None
    driver.close()


def test_log_is_compacted(base):
    engine = open_engine(base, compact_deltas=3)
    policy = make_policy([(60, None)], methods=("count",))
    metric = eng.MetricRef("m", policy)
    for i in range(20):
        engine.add_measures(metric, np.array([i * NS]), np.array([1.0]))
    records = engine.driver.read("m").records
    assert records[0][:1] == b"S" and len(records) <= 4
    assert open_engine(base).get_measures("m", "count")[0].values.tolist() == [
        20.0
    ]


def test_policy_change_applies_to_later_writes(base):
    engine = open_engine(base)
    first = make_policy([(60, None)], methods=("mean",))
    engine.add_measures(
        eng.MetricRef("m", first),
        np.arange(0, 600, 60) * NS,
        np.arange(10, dtype=float),
    )
    second = make_policy([(60, 3)], methods=("mean", "max"))
    engine.add_measures(
        eng.MetricRef("m", second), np.array([600 * NS]), np.array([10.0])
    )
    (mean,) = engine.get_measures("m", "mean")
    assert mean.timestamps.tolist() == [480 * NS, 540 * NS, 600 * NS]
    (mx,) = open_engine(base).get_measures("m", "max")
    assert mx.values.tolist()[-1] == 10.0


def test_delete_metric(base):
    engine = open_engine(base)
    policy = make_policy([(60, None)], methods=("count",))
    engine.add_measures(
        eng.MetricRef("m", policy), np.array([0]), np.array([1.0])
    )
    engine.delete_metric("m")
    assert engine.get_measures("m", "count") == []
    assert open_engine(base).get_measures("m", "count") == []
    engine.add_measures(
        eng.MetricRef("m", policy), np.array([0]), np.array([2.0])
    )
    assert engine.get_measures("m", "count")[0].values.tolist() == [1.0]


def test_cache_is_bounded(base):
    engine = open_engine(base, cache_bytes=64 * 1024)
    policy = make_policy([(1, None)], methods=("mean",))
    for i in range(40):
        engine.add_measures(
            eng.MetricRef(f"m{i}", policy),
            np.arange(500) * NS,
            np.ones(500),
        )
    stats = engine.statistics()
    assert stats["cached_bytes"] <= 64 * 1024
    assert stats["cached_metrics"] < 40
    # evicted metrics are read back from storage
    assert engine.get_measures("m0", "mean")[0].values.size == 500


def test_threads_writing_one_metric(base):
    engine = open_engine(base, compact_deltas=5)
    policy = make_policy(
        [(60, None)], methods=("count", "sum"), back_window=99
    )
    metric = eng.MetricRef("m", policy)

    def work(k):
        for i in range(k, 400, 4):
            engine.add_measures(metric, np.array([i * NS]), np.array([1.0]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    (count,) = engine.get_measures("m", "count")
    assert count.values.sum() == 400


def test_batch_results_in_order(base):
    engine = open_engine(base)
    policy = make_policy([(60, None)], methods=("count",))
    results = engine.add_measures_batch(
        [
            (eng.MetricRef("a", policy), np.array([0, 1]) * NS, np.ones(2)),
            (eng.MetricRef("b", policy), np.array([5]) * NS, np.ones(1)),
        ]
    )
    assert [r.stored for r in results] == [2, 1]
    assert engine.get_measures("b", "count")[0].values.tolist() == [1.0]


def test_make_store_from_configuration(make_conf, tmp_path):
    conf = make_conf()
    engine = eng.make_store(conf)
    assert isinstance(engine.driver, file_driver.FileDriver)
    assert engine.driver.basepath == str(tmp_path / "data" / "series")
    engine.close()
    conf = make_conf(storage={"file_basepath": str(tmp_path / "elsewhere")})
    engine = eng.make_store(conf)
    assert engine.driver.basepath == str(tmp_path / "elsewhere")
    engine.close()
    with pytest.raises(storage.SeriesStorageError, match="nope"):
        eng.make_store(make_conf(storage={"driver": "nope"}))


def test_make_store_redis(make_conf, redis_url):
    from alarmer.metrics.series.drivers import redis as redis_driver

    engine = eng.make_store(
        make_conf(
            storage={
                "driver": "redis",
                "redis_url": redis_url,
                "redis_key_prefix": "alarmer-test-conf:",
            }
        )
    )
    assert isinstance(engine.driver, redis_driver.RedisDriver)
    policy = make_policy([(60, None)], methods=("count",))
    engine.add_measures(eng.MetricRef("m", policy), np.array([0]), np.ones(1))
    assert engine.get_measures("m", "count")[0].values.tolist() == [1.0]
    engine.delete_metric("m")
    engine.driver.client.delete("alarmer-test-conf:series-gen:{m}")
    engine.close()


def test_runtime_builds_the_engine(make_conf):
    built = runtime.build(make_conf())
    try:
        assert isinstance(built.series, eng.SeriesStore)
    finally:
        built.close()


def test_fsync_driver_round_trip(base):
    engine = eng.SeriesStore(
        file_driver.FileDriver(base, fsync=True), compact_deltas=2
    )
    policy = make_policy([(60, None)], methods=("sum",))
    metric = eng.MetricRef("m", policy)
    for i in range(5):
        engine.add_measures(metric, np.array([i * NS]), np.array([2.0]))
    assert open_engine(base).get_measures("m", "sum")[0].values.tolist() == [
        10.0
    ]


class _AlwaysStale(file_driver.FileDriver):
    """A driver on which another writer always got there first."""

    def append(self, metric_id, expected, record):
        if expected is not None:
            return None
        return super().append(metric_id, expected, record)

    def rewrite(self, metric_id, expected, record):
        return None


def test_endless_contention_raises_write_conflict(base):
    engine = eng.SeriesStore(_AlwaysStale(base))
    policy = make_policy([(60, None)], methods=("count",))
    metric = eng.MetricRef("m", policy)
    engine.add_measures(metric, np.array([0]), np.array([1.0]))
    with pytest.raises(eng.WriteConflict, match="not written"):
        engine.add_measures(metric, np.array([NS]), np.array([1.0]))
    assert engine.statistics()["write_conflicts"] >= eng.MAX_WRITE_ATTEMPTS
    assert open_engine(base).get_measures("m", "count")[0].values.tolist() == [
        1.0
    ]


def test_batched_reads_while_threads_write(base):
    """last_buckets_many never sees a half-applied write of this engine."""
    engine = open_engine(base, compact_deltas=8)
    policy = make_policy([(60, None)], methods=("count", "sum", "mean"))
    ids = [f"tw-{i}" for i in range(30)]
    refs = [eng.MetricRef(m, policy) for m in ids]
    for ref in refs:
        engine.add_measures(ref, np.array([0]), np.array([1.0]))
    rounds = 60
    errors: list[str] = []

    def write() -> None:
        for i in range(1, rounds):
            for ref in refs[::2]:
                engine.add_measures(ref, np.array([i * NS]), np.array([1.0]))
            engine.add_measures_batch(
                [
                    (ref, np.array([i * NS]), np.array([1.0]))
                    for ref in refs[1::2]
                ]
            )

    def read() -> None:
        seen = np.zeros(len(ids))
        while writer.is_alive():
            for method in ("count", "sum", "mean"):
                times, grid = engine.last_buckets_many(ids, method, 60 * NS, 1)
                if times.tolist() != [0]:
                    errors.append(f"times {times.tolist()}")
                col = grid[:, 0]
                if method == "mean" and not (col == 1.0).all():
                    errors.append(f"mean {col.tolist()}")
                if method != "mean":
                    if (col < seen).any() and method == "count":
                        errors.append("count went back")
                    if method == "count":
                        seen = col
        times, grid = engine.last_buckets_many(ids, "sum", 60 * NS, 1)
        if grid[:, 0].tolist() != [float(rounds)] * len(ids):
            errors.append(f"final {grid[:, 0].tolist()}")

    writer = threading.Thread(target=write)
    reader = threading.Thread(target=read)
    writer.start()
    reader.start()
    writer.join()
    reader.join()
    assert errors == []
    fresh = open_engine(base)
    for metric_id in ids:
        assert fresh.last_buckets(
            metric_id, "count", 60 * NS, 1
        ).values.tolist() == [float(rounds)]


@pytest.mark.parametrize("batched", [False, True])
def test_in_order_writes_are_exact_before_and_after_aggregation(base, batched):
    # In-order writes to a cached metric are appended before being
    # aggregated; every read -- this engine's, a second engine's on the
    # same files, a read that lands between writes, a late point that
    # follows them, the compaction -- sees every point exactly.
    policy = make_policy([(60, 40), (600, None)], back_window=1)
    refs = [eng.MetricRef(f"m{i}", policy) for i in range(3)]
    models = {ref.id: Model(policy) for ref in refs}
    writer = open_engine(base, compact_deltas=9)
    other = open_engine(base)
    rng = np.random.default_rng(5)
    t = 1_700_000_000
    for step in range(60):
        if step % 13 == 12:
            ts = [t - 700, t - 30, t - 1]  # late: refused or merged
        else:
            ts = sorted({t + int(x) for x in rng.integers(1, 40, 4)})
        values = rng.normal(5, 2, len(ts)).tolist()
        ts_ns = np.array(ts, dtype=np.int64) * NS
        items = [(ref, ts_ns, np.array(values)) for ref in refs]
        for model in models.values():
            before = model.refused
            model.write(ts_ns.tolist(), values)
        if batched:
            results = writer.add_measures_batch(items)
        else:
            results = [writer.add_measures(*item) for item in items]
        for result in results:
            assert result.stored + result.refused == len(ts)
            assert result.refused == model.refused - before
            assert result.oldest_accepted == model.cut()
        t = max(t, *ts)
        if step % 7 == 3:
            check_all(writer, "m1", models["m1"])
        if step % 11 == 5:
            check_all(other, "m2", models["m2"])
    for ref in refs:
        check_all(writer, ref.id, models[ref.id])
        check_all(other, ref.id, models[ref.id])
    writer.close()
    other.close()
    check_reopened(base, models)


def check_reopened(base, models) -> None:
    """Every metric of *models* read by a new engine equals its model."""
    again = open_engine(base)
    for metric_id, model in models.items():
        check_all(again, metric_id, model)
    again.close()


def test_batch_items_each_in_their_own_order(base):
    # One batch mixes, metric by metric, strictly increasing points,
    # unordered ones, duplicates, single points, late points and empty
    # writes: each metric ends exactly as its own model, with the
    # results a write of that metric alone gives.
    policy = make_policy([(60, 40), (600, None)], back_window=1)
    refs = [eng.MetricRef(f"o{i}", policy) for i in range(8)]
    models = {ref.id: Model(policy) for ref in refs}
    writer = open_engine(base, compact_deltas=5)
    alone = open_engine(base + "-alone", compact_deltas=5)
    rng = np.random.default_rng(11)
    newest = dict.fromkeys(models, 1_700_000_000)
    for _step in range(40):
        items = []
        expected = []
        for ref in refs:
            t = newest[ref.id]
            kind = int(rng.integers(0, 6))
            if kind == 0:  # strictly increasing, newer than all
                ts = sorted({t + int(x) for x in rng.integers(1, 90, 5)})
            elif kind == 1:  # unordered
                ts = [t + int(x) for x in rng.integers(1, 90, 5)]
            elif kind == 2:  # a duplicate
                ts = [t + 5, t + 5, t + 7]
            elif kind == 3:  # one point
                ts = [t + int(rng.integers(1, 90))]
            elif kind == 4:  # late and recent, increasing
                ts = [t - 1300, t - 20, t + 3]
            else:  # nothing
                ts = []
            values = rng.normal(5, 2, len(ts)).tolist()
            model = models[ref.id]
            before = model.refused
            model.write([x * NS for x in ts], values)
            expected.append((model.refused - before, model.cut()))
            items.append(
                (
                    ref,
                    np.array(ts, dtype=np.int64) * NS,
                    np.array(values, dtype=np.float64),
                )
            )
            newest[ref.id] = max([t, *ts])
        results = writer.add_measures_batch(items)
        assert results == [alone.add_measures(*item) for item in items]
        for (_ref, ts_ns, _v), result, (refused, cut) in zip(
            items, results, expected, strict=True
        ):
            assert result.refused == refused
            if ts_ns.size:
                assert result.oldest_accepted == cut
    for ref in refs:
        check_all(writer, ref.id, models[ref.id])
    writer.close()
    alone.close()
    check_reopened(base, models)
