"""One conformance suite for every series storage driver.

Each test runs against the file driver and against the real Redis
server (unique key prefix per test, keys removed afterwards): the
driver's conditional log verbs, then the engine on top of it, across
restarts, ``kill -9`` of writers and concurrent writer processes.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from alarmer.metrics import policy as ap
from alarmer.metrics.series import drivers as storage
from alarmer.metrics.series import store as eng
from alarmer.metrics.series.drivers import file as file_driver
from alarmer.metrics.series.drivers import redis as redis_driver

NS = ap.NS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
POLICY = ap.ArchivePolicy(
    "conformance",
    (ap.PolicyItem(1 * NS, None), ap.PolicyItem(60 * NS, None)),
    ("count", "sum", "mean", "last", "max"),
    back_window=0,
)


@pytest.fixture(params=["file", "redis"])
def driver_spec(request, tmp_path):
    """(kind, location) of a fresh, empty storage."""
    if request.param == "file":
        yield ("file", str(tmp_path / "series"))
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"alarmer-test:{uuid.uuid4().hex}:"
    yield ("redis", json.dumps([url, prefix]))
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def open_driver(kind: str, location: str) -> storage.SeriesDriver:
    if kind == "file":
        return file_driver.FileDriver(location)
    url, prefix = json.loads(location)
    return redis_driver.RedisDriver(url, prefix=prefix)


@pytest.fixture
def driver(driver_spec):
    drv = open_driver(*driver_spec)
    yield drv
    drv.close()


# -- the driver's verbs -------------------------------------------------------


def test_absent_metric_reads_empty(driver):
    result = driver.read("m-absent")
    assert result.version is None and result.records == []


def test_append_and_read_back(driver):
    v1 = driver.append("m1", None, b"one")
    assert v1 is not None
    v2 = driver.append("m1", v1, b"two")
    assert v2 is not None and v2 != v1
    full = driver.read("m1")
    assert full.reset and full.records == [b"one", b"two"]
    assert full.version == v2
    tail = driver.read("m1", v1)
    assert not tail.reset and tail.records == [b"two"]
    same = driver.read("m1", v2)
    assert not same.reset and same.records == [] and same.version == v2


def test_read_many_equals_read(driver):
    v1 = driver.append("rm-a", None, b"one")
    v2 = driver.append("rm-a", v1, b"two")
    driver.append("rm-b", None, b"b1")
    driver.rewrite("rm-b", driver.read("rm-b").version, b"b2")
    items = [
        ("rm-a", None),
        ("rm-a", v1),
        ("rm-a", v2),
        ("rm-b", v1),  # another log's version: read from the start
        ("rm-absent", None),
        ("xy-absent-dir", v1),
    ]
    many = driver.read_many(items)
    assert many == [driver.read(m, since) for m, since in items]
    assert [r.records for r in many] == [
        [b"one", b"two"],
        [b"two"],
        [],
        [b"b2"],
        [],
        [],
    ]
    assert [r.reset for r in many] == [True, False, False, True, True, True]
    with pytest.raises(storage.InvalidMetricId):
        driver.read_many([("rm-a", None), ("../etc/passwd", None)])


def test_stale_append_is_refused(driver):
    v1 = driver.append("m1", None, b"one")
    assert driver.append("m1", v1, b"two") is not None
    assert driver.append("m1", v1, b"late") is None
    assert driver.append("m1", None, b"late") is None
    assert driver.read("m1").records == [b"one", b"two"]


def test_rewrite_replaces_the_log(driver):
    v1 = driver.append("m1", None, b"one")
    v2 = driver.append("m1", v1, b"two")
    assert driver.rewrite("m1", v1, b"stale") is None
    v3 = driver.rewrite("m1", v2, b"snapshot")
    assert v3 is not None
    assert driver.read("m1").records == [b"snapshot"]
    stale = driver.read("m1", v2)
    assert stale.reset and stale.records == [b"snapshot"]
    assert driver.append("m1", v2, b"x") is None
    assert driver.append("m1", v3, b"three") is not None
    assert driver.read("m1", v3).records == [b"three"]


def test_delete(driver):
    v1 = driver.append("m1", None, b"one")
    driver.append("m2", None, b"other")
    driver.delete("m1")
    driver.delete("m-never-existed")
    assert driver.read("m1").version is None
    assert driver.append("m1", v1, b"stale") is None
    assert driver.read("m2").records == [b"other"]


def test_binary_records_round_trip(driver):
    blob = bytes(range(256)) * 50
    driver.append("m1", None, blob)
    assert driver.read("m1").records == [blob]


def test_append_many_is_conditional_per_metric(driver):
    va = driver.append("ma", None, b"a1")
    vb = driver.append("mb", None, b"b1")
    driver.append("mb", vb, b"b2")  # makes vb stale
    results = driver.append_many(
        [("ma", va, b"a2"), ("mb", vb, b"lost"), ("mc", None, b"c1")]
    )
    assert results[0] is not None and results[1] is None
    assert results[2] is not None
    assert driver.read("ma").records == [b"a1", b"a2"]
    assert driver.read("mb").records == [b"b1", b"b2"]
    assert driver.read("mc").records == [b"c1"]


@pytest.mark.parametrize("many", [False, True], ids=["append", "append_many"])
def test_writer_follows_logs_replaced_by_another(driver_spec, many):
    """A writer that appended before (the file driver keeps the log
    open) writes into the current log after another writer compacted,
    deleted or re-created it, and never into a replaced one."""
    writer = open_driver(*driver_spec)
    other = open_driver(*driver_spec)
    reader = open_driver(*driver_spec)

    def append(expected, record):
        if many:
            return writer.append_many([("m-r", expected, record)])[0]
        return writer.append("m-r", expected, record)

    try:
        v1 = append(None, b"one")
        v2 = append(v1, b"two")
        v3 = other.rewrite("m-r", v2, b"snapshot")
        assert v3 is not None
        assert append(v2, b"into the old log") is None
        v4 = append(v3, b"three")
        assert v4 is not None
        assert reader.read("m-r").records == [b"snapshot", b"three"]
        v5 = other.append("m-r", v4, b"four")
        assert append(v4, b"stale") is None
        assert append(v5, b"five") is not None
        assert reader.read("m-r").records == [
            b"snapshot",
            b"three",
            b"four",
            b"five",
        ]
        other.delete("m-r")
        assert append(v5, b"after the delete") is None
        assert reader.read("m-r").version is None
        w1 = other.append("m-r", None, b"again")
        assert append(v5, b"stale generation") is None
        assert append(w1, b"new log") is not None
        assert reader.read("m-r").records == [b"again", b"new log"]
    finally:
        for drv in (writer, other, reader):
            drv.close()


def test_forked_writer_does_not_lock_through_its_parents_open_log(tmp_path):
    """A process forked from a writer that keeps a log open waits for
    the parent's lock on that log: it does not append through the open
    file it inherited (a flock belongs to the open file, not to the
    process)."""
    driver = file_driver.FileDriver(str(tmp_path / "series"))
    v1 = driver.append("m-fork", None, b"one")
    v2 = driver.append("m-fork", v1, b"two")  # the log is kept open
    handle = driver._take_handle("m-fork")
    assert handle is not None
    fcntl.flock(handle[0], fcntl.LOCK_EX)  # an append of the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: append, report, exit
        code = 1
        try:
            os.close(read_end)
            driver._give_handles([("m-fork", handle)])
            done = driver.append_many([("m-fork", v2, b"child")])[0]
            os.write(write_end, b"ok" if done is not None else b"no")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 1.0)
        assert not ready, "the child appended while the parent held the lock"
        fcntl.flock(handle[0], fcntl.LOCK_UN)
        ready, _, _ = select.select([read_end], [], [], 30)
        assert ready and os.read(read_end, 2) == b"ok"
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    driver._give_handles([("m-fork", handle)])
    assert driver.read("m-fork").records == [b"one", b"two", b"child"]
    driver.close()


def test_invalid_metric_id(driver):
    with pytest.raises(storage.InvalidMetricId):
        driver.read("../etc/passwd")


# -- the engine on the driver ----------------------------------------------


def make_engine(spec, **kwargs) -> eng.SeriesStore:
    return eng.SeriesStore(open_driver(*spec), **kwargs)


def test_engine_round_trip_and_restart(driver_spec):
    engine = make_engine(driver_spec, compact_deltas=5)
    metric = eng.MetricRef("metric-a", POLICY)
    ts = np.arange(0, 600) * NS
    values = np.arange(600, dtype=float)
    for lo in range(0, 600, 50):
        result = engine.add_measures(
            metric, ts[lo : lo + 50], values[lo : 50 + lo]
        )
        assert result.stored == 50
    (coarse, fine) = engine.get_measures("metric-a", "sum")
    assert coarse.granularity == 60 * NS and fine.granularity == NS
    assert coarse.timestamps.tolist() == [i * 60 * NS for i in range(10)]
    assert coarse.values.tolist() == [
        float(sum(range(i * 60, i * 60 + 60))) for i in range(10)
    ]
    engine.close()
    again = make_engine(driver_spec)
    last = again.last_buckets("metric-a", "mean", 60 * NS, 2)
    assert last.values.tolist() == [
        np.mean(np.arange(480, 540)),
        np.mean(np.arange(540, 600)),
    ]
    assert again.get_measures("metric-a", "count", NS)[0].values.sum() == 600
    again.delete_metric("metric-a")
    assert again.get_measures("metric-a", "count") == []
    again.close()


def test_engine_sees_other_writers(driver_spec):
    one = make_engine(driver_spec)
    two = make_engine(driver_spec)
    metric = eng.MetricRef("metric-b", POLICY)
    one.add_measures(metric, np.array([0]), np.array([1.0]))
    assert two.last_buckets("metric-b", "sum", 60 * NS, 1).values.tolist() == [
        1.0
    ]
    two.add_measures(metric, np.array([NS]), np.array([2.0]))
    one.add_measures(metric, np.array([2 * NS]), np.array([4.0]))
    for engine in (one, two):
        assert engine.last_buckets(
            "metric-b", "sum", 60 * NS, 1
        ).values.tolist() == [7.0]
    one.close()
    two.close()


def test_engine_batch_with_a_stale_cache(driver_spec):
    one = make_engine(driver_spec)
    two = make_engine(driver_spec)
    metrics = [eng.MetricRef(f"metric-{i}", POLICY) for i in range(5)]
    one.add_measures_batch(
        [(m, np.array([0]), np.array([1.0])) for m in metrics]
    )
    # both engines now cache the metrics; two writes behind one's back
    for m in metrics:
        two.get_measures(m.id, "sum")
    two.add_measures(metrics[2], np.array([NS]), np.array([10.0]))
    results = one.add_measures_batch(
        [(m, np.array([2 * NS]), np.array([100.0])) for m in metrics]
    )
    assert [r.stored for r in results] == [1] * 5
    for engine in (one, two):
        sums = [
            engine.last_buckets(m.id, "sum", 60 * NS, 1).values.tolist()
            for m in metrics
        ]
        assert sums == [[101.0], [101.0], [111.0], [101.0], [101.0]]
    assert one.statistics()["write_conflicts"] >= 1
    one.close()
    two.close()


# -- processes ------------------------------------------------------------


def _worker_main() -> None:
    """Subprocess: write one point per call, print each acknowledgement.

    With a width above 1, each call is one batch writing the point to
    the metrics ``<metric_id>-0`` to ``<metric_id>-<width - 1>``.
    """
    kind, location, metric_id, first, count, step, back, width = sys.argv[1:9]
    engine = eng.SeriesStore(open_driver(kind, location), compact_deltas=16)
    policy = dataclasses.replace(POLICY, back_window=int(back))
    if int(width) == 1:
        metrics = [eng.MetricRef(metric_id, policy)]
    else:
        metrics = [
            eng.MetricRef(f"{metric_id}-{k}", policy)
            for k in range(int(width))
        ]
    for i in range(int(first), int(first) + int(count) * int(step), int(step)):
        stamps, values = np.array([i * NS]), np.array([float(i)])
        if len(metrics) == 1:
            engine.add_measures(metrics[0], stamps, values)
        else:
            results = engine.add_measures_batch(
                [(m, stamps, values) for m in metrics]
            )
            assert [r.stored for r in results] == [1] * len(metrics)
        sys.stdout.write(f"{i}\n")
        sys.stdout.flush()
    engine.close()


def _spawn(
    spec, metric_id, first, count, step=1, back_window=0, width=1
) -> subprocess.Popen:
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1));"
        "from tests.functional.test_storage_conformance import _worker_main;"
        "_worker_main()"
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            ROOT,
            *spec,
            metric_id,
            str(first),
            str(count),
            str(step),
            str(back_window),
            str(width),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_kill_9_never_loses_an_acknowledged_write(driver_spec):
    rng = random.Random(42)
    acked: list[int] = []
    in_flight: set[int] = set()
    next_ts = 0
    for _round in range(6):
        proc = _spawn(driver_spec, "metric-crash", next_ts, 100000)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the writer is up and writing
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        out = first + out
        lines = [int(x) for x in out.split("\n") if x.strip()]
        assert lines, "the writer acknowledged nothing before the kill"
        acked.extend(lines)
        # The write in flight may or may not be stored; start after it.
        in_flight.add(lines[-1] + 1)
        next_ts = lines[-1] + 2
        engine = make_engine(driver_spec)
        stored = engine.get_measures("metric-crash", "count", NS)[0]
        stored_ts = set((stored.timestamps // NS).tolist())
        assert set(acked) <= stored_ts
        assert stored_ts - set(acked) <= in_flight
        assert (stored.values == 1.0).all()
        engine.close()


@pytest.mark.slow
def test_concurrent_writer_processes_lose_nothing(driver_spec):
    writers, each = 4, 150
    procs = [
        # a wide back window: the writers run at different speeds
        _spawn(driver_spec, "metric-shared", i, each, writers, 1000)
        for i in range(writers)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert len(out.split()) == each
    engine = make_engine(driver_spec)
    fine = engine.get_measures("metric-shared", "count", NS)[0]
    assert fine.values.sum() == writers * each
    assert (fine.timestamps // NS).tolist() == list(range(writers * each))
    total = engine.get_measures("metric-shared", "sum", 60 * NS)[0]
    assert total.values.sum() == sum(range(writers * each))
    engine.close()


@pytest.mark.slow
def test_kill_9_of_batch_writers_loses_nothing(driver_spec):
    """Writer processes write batches to the same metrics (each keeps
    the logs open, compacts them every 16 writes: the others' open logs
    are replaced under them); one is killed with SIGKILL at a random
    moment, another then writes on.  Every acknowledged batch is in
    every metric, and a point in no metric was never acknowledged."""
    width, each = 8, 400
    rng = random.Random(7)
    steady = _spawn(driver_spec, "batch", 0, each, 2, 100000, width)
    victim = _spawn(driver_spec, "batch", 1, 100000, 2, 100000, width)
    assert victim.stdout is not None
    first = victim.stdout.readline()
    time.sleep(rng.uniform(0.2, 0.8))
    os.kill(victim.pid, signal.SIGKILL)
    rest, _ = victim.communicate()
    killed = [int(x) for x in (first + rest).split()]
    assert killed, "the victim acknowledged nothing before the kill"
    after = _spawn(driver_spec, "batch", killed[-1] + 4, 50, 2, 100000, width)
    out_steady, _ = steady.communicate(timeout=300)
    out_after, _ = after.communicate(timeout=300)
    assert steady.returncode == 0 and after.returncode == 0
    acked = set(killed) | {int(x) for x in (out_steady + out_after).split()}
    in_flight = killed[-1] + 2
    engine = make_engine(driver_spec)
    for k in range(width):
        got = engine.get_measures(f"batch-{k}", "count", NS)[0]
        stored = set((got.timestamps // NS).tolist())
        assert acked <= stored, f"batch-{k} lost {sorted(acked - stored)[:5]}"
        assert stored - acked <= {in_flight}
        assert (got.values == 1.0).all()
    engine.close()


# -- batched reads ----------------------------------------------------------


def _expected_rows(engine, ids, method, gran, n):
    return [engine.last_buckets(m, method, gran, n) for m in ids]


def test_last_buckets_many_equals_last_buckets(driver_spec):
    writer = make_engine(driver_spec, compact_deltas=4)
    reader = make_engine(driver_spec)
    ids = [f"many-{i}" for i in range(6)]
    # Different bucket sets: gaps, a short series, one never written.
    for i, metric_id in enumerate(ids[:-1]):
        minutes = [m for m in range(10) if (m + i) % 3 or i == 0][: 10 - i]
        ts = np.array(minutes, dtype=np.int64) * 60 * NS + i * NS
        writer.add_measures(
            eng.MetricRef(metric_id, POLICY), ts, ts / NS + 0.5 * i
        )
    for method in ("mean", "max", "count"):
        for n in (1, 3, 20):
            times, grid = reader.last_buckets_many(ids, method, 60 * NS, n)
            rows = _expected_rows(writer, ids, method, 60 * NS, n)
            union = sorted({int(t) for r in rows for t in r.timestamps})
            assert times.dtype == np.int64 and times.tolist() == union
            assert grid.shape == (len(ids), len(union))
            for row, series in zip(grid, rows, strict=True):
                where = np.searchsorted(times, series.timestamps)
                assert row[where].tolist() == series.values.tolist()
                rest = np.delete(row, where)
                assert np.isnan(rest).all()
    assert np.isnan(grid[-1]).all()
    # A second call (served by the change stamps and the memo) agrees.
    again = reader.last_buckets_many(ids, "count", 60 * NS, 20)
    assert again[0].tolist() == times.tolist()
    np.testing.assert_array_equal(again[1], grid)
    writer.close()
    reader.close()


def test_last_buckets_many_aligned_series(driver_spec):
    engine = make_engine(driver_spec)
    ids = [f"aligned-{i}" for i in range(4)]
    ts = np.arange(5, dtype=np.int64) * 60 * NS
    for i, metric_id in enumerate(ids):
        engine.add_measures(
            eng.MetricRef(metric_id, POLICY), ts, np.arange(5) * 10.0 + i
        )
    times, grid = engine.last_buckets_many(ids, "sum", 60 * NS, 3)
    assert times.tolist() == ts[-3:].tolist()
    assert grid.tolist() == [[20.0 + i, 30.0 + i, 40.0 + i] for i in range(4)]
    # Its own writes, then another engine's, are seen by the next read.
    engine.add_measures(
        eng.MetricRef(ids[1], POLICY), np.array([5 * 60 * NS]), np.array([7.0])
    )
    times, grid = engine.last_buckets_many(ids, "sum", 60 * NS, 2)
    assert times.tolist() == [180 * NS, 240 * NS, 300 * NS]
    assert grid[0].tolist()[:2] == [30.0, 40.0] and np.isnan(grid[0, 2])
    assert np.isnan(grid[1, 0]) and grid[1, 1:].tolist() == [41.0, 7.0]
    other = make_engine(driver_spec)
    other.add_measures(
        eng.MetricRef(ids[1], POLICY), np.array([5 * 60 * NS + 1]), [1.0]
    )
    other.close()
    times, grid = engine.last_buckets_many(ids, "sum", 60 * NS, 2)
    assert grid[1, 2] == 8.0
    empty = engine.last_buckets_many([], "sum", 60 * NS, 3)
    assert empty[0].size == 0 and empty[1].shape == (0, 0)
    engine.close()


def test_last_buckets_many_errors(driver_spec):
    engine = make_engine(driver_spec)
    engine.add_measures(
        eng.MetricRef("err-a", POLICY), np.array([0]), np.array([1.0])
    )
    with pytest.raises(eng.UnknownMethod):
        engine.last_buckets_many(["err-a"], "nope", 60 * NS, 1)
    with pytest.raises(eng.AggregationNotStored):
        engine.last_buckets_many(["err-a"], "median", 60 * NS, 1)
    with pytest.raises(eng.GranularityNotStored):
        engine.last_buckets_many(["err-a"], "mean", 300 * NS, 1)
    engine.close()


def test_last_buckets_many_sees_other_processes(driver_spec):
    reader = make_engine(driver_spec)
    ids = ["fresh-a", "fresh-b"]
    metric = eng.MetricRef("fresh-b", POLICY)
    other = make_engine(driver_spec)
    other.add_measures(metric, np.array([0]), np.array([1.0]))
    times, grid = reader.last_buckets_many(ids, "sum", 60 * NS, 2)
    assert times.tolist() == [0] and grid.shape == (2, 1)
    assert np.isnan(grid[0, 0]) and grid[1, 0] == 1.0
    # Another process appends (and compacts, with compact_deltas=16,
    # after 16 writes): every acknowledged write is seen at once.
    for count in (1, 20):
        proc = _spawn(driver_spec, "fresh-a", 1000 + count * 100, count)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and len(out.split()) == count
        times, grid = reader.last_buckets_many(ids, "count", 60 * NS, 30)
        expected = _expected_rows(
            make_engine(driver_spec), ids, "count", 60 * NS, 30
        )
        assert grid[0][~np.isnan(grid[0])].tolist() == (
            expected[0].values.tolist()
        )
    assert np.nansum(grid[0]) == 21
    # Deleted by another engine: read as no data.
    other.delete_metric("fresh-a")
    times, grid = reader.last_buckets_many(ids, "count", 60 * NS, 30)
    assert times.tolist() == [0] and np.isnan(grid[0]).all()
    assert grid[1].tolist() == [1.0]
    reader.close()
    other.close()


def _check_group(spec, reader, ids, methods, n):
    """Rows of the batched read == last_buckets read by a new engine."""
    fresh = make_engine(spec)
    for method in methods:
        times, grid = reader.last_buckets_many(ids, method, 60 * NS, n)
        rows = _expected_rows(fresh, ids, method, 60 * NS, n)
        union = sorted({int(t) for r in rows for t in r.timestamps})
        assert times.tolist() == union
        for row, series in zip(grid, rows, strict=True):
            where = np.searchsorted(times, series.timestamps)
            assert row[where].tobytes() == series.values.tobytes()
            assert np.isnan(np.delete(row, where)).all()
    fresh.close()


def test_last_buckets_many_after_every_member_changed(driver_spec):
    """Every member gets a point between group reads, by any writer."""
    engine = make_engine(driver_spec)
    ids = [f"grp-{i}" for i in range(20)]
    refs = [eng.MetricRef(m, POLICY) for m in ids]
    base = np.arange(6, dtype=np.int64) * 60 * NS
    engine.add_measures_batch(
        [(ref, base + i * NS, base / NS + i) for i, ref in enumerate(refs)]
    )
    methods = POLICY.aggregation_methods
    _check_group(driver_spec, engine, ids, methods, 3)
    other = make_engine(driver_spec)
    for step in range(1, 4):
        # This engine, then another one (its own cache), then a process.
        writer = engine if step == 1 else other
        at = np.array([(5 + step) * 60 * NS + 7 * NS], dtype=np.int64)
        writer.add_measures_batch(
            [
                (ref, at, np.array([step * 10.0 + i]))
                for i, ref in enumerate(refs)
            ]
        )
        _check_group(driver_spec, engine, ids, methods, 3)
        times, grid = engine.last_buckets_many(ids, "max", 60 * NS, 1)
        assert times.tolist() == [int(at[0]) - 7 * NS]
        assert grid[:, 0].tolist() == [step * 10.0 + i for i in range(20)]
    proc = _spawn(driver_spec, ids[3], 20 * 60, 2, 60)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and len(out.split()) == 2
    times, grid = engine.last_buckets_many(ids, "sum", 60 * NS, 2)
    assert times[-1] == 21 * 60 * NS
    assert grid[3, -2:].tolist() == [1200.0, 1260.0]
    assert np.isnan(grid[4, -2:]).all()
    _check_group(driver_spec, engine, ids, methods, 2)
    other.close()
    engine.close()
