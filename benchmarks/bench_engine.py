"""Benchmark of the metrics engine, against Gnocchi's Carbonara.

Prints one table.  Scenarios:

- bulk: 1,000,000 points at 1 s spacing aggregated into 60 s x 14 d,
  1 h x 365 d, 1 d x 1825 d with two method sets; ours (aggregation
  only, then with the snapshot encoding) against Carbonara driven the way
  gnocchi-metricd drives it (BoundTimeSerie.set_values with a callback
  grouping once per granularity and computing every aggregation);
- steady state: N metrics (default 10,000) on the file driver, one new
  point per metric per round, storage included;
- reads: last 5 buckets of one series; mean across 1,000 series
  (ours and Gnocchi's /v1/aggregates processor on the same data);
- bytes per stored point and the process RSS with N metrics.

Usage::

    .venv/bin/python benchmarks/bench_engine.py [--metrics 10000]
        [--repeat 5] [--dir /dev/shm]

Needs the ``bench`` extra (gnocchi==4.7.1) for the Carbonara columns.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import shutil
import statistics
import tempfile
import time
import uuid

import numpy as np

from alarmer.metrics import policy as ap
from alarmer.metrics import query
from alarmer.metrics.series import aggregation as agg
from alarmer.metrics.series import codec
from alarmer.metrics.series import store as eng
from alarmer.metrics.series.drivers import file as file_driver

NS = ap.NS
DAY = 86400
SET_A = ("mean", "min", "max", "sum", "std", "count", "first", "last")
SET_B = ("mean", "min", "max", "sum", "std", "count", "median", "95pct")
P3 = ((60, 14 * DAY // 60), (3600, 365 * 24), (DAY, 1825))


def policy(methods, items=P3, back_window=0) -> ap.ArchivePolicy:
    return ap.ArchivePolicy(
        "bench",
        tuple(ap.PolicyItem(g * NS, p) for g, p in items),
        tuple(methods),
        back_window,
    )


def timed(fn, repeat: int) -> tuple[float, float, object]:
    times = []
    result = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), result


# -- Carbonara --------------------------------------------------


def carbonara_bulk(ts_ns: np.ndarray, values: np.ndarray, methods):
    from gnocchi import archive_policy as gap
    from gnocchi import carbonara

    gpolicy = gap.ArchivePolicy(
        "bench",
        0,
        [gap.ArchivePolicyItem(granularity=g, points=p) for g, p in P3],
        list(methods),
    )
    measures = carbonara.make_timeseries(
        ts_ns.astype("datetime64[ns]"), values
    )
    grans = sorted({a.granularity for a in gpolicy.aggregations})

    def run():
        bound = carbonara.BoundTimeSerie(
            block_size=gpolicy.max_block_size, back_window=0
        )

        def callback(series):
            grouped = {
                g: series.group_serie(
                    g, carbonara.round_timestamp(series.first, g)
                )
                for g in grans
            }
            return [
                carbonara.AggregatedTimeSerie.from_grouped_serie(
                    grouped[a.granularity], a
                )
                for a in gpolicy.aggregations
            ]

        return bound.set_values(measures, before_truncate_callback=callback)

    return run


def gnocchi_across(series: list[eng.Series]):
    from gnocchi import carbonara
    from gnocchi.rest.aggregates import processor

    class _Metric:
        def __init__(self) -> None:
            self.id = uuid.uuid4()

    refs = []
    for s in series:
        aggregation = carbonara.Aggregation(
            "mean", np.timedelta64(s.granularity, "ns"), None
        )
        ts = carbonara.AggregatedTimeSerie(
            aggregation,
            carbonara.make_timeseries(
                s.timestamps.astype("datetime64[ns]"), s.values
            ),
        )
        refs.append((processor.MetricReference(_Metric(), "mean"), ts))
    operations = ["aggregate", "mean", ["metric", ["x", "mean"]]]

    def run():
        return processor.aggregated(
            refs, operations, needed_percent_of_overlap=0
        )

    return run


# -- scenarios --------------------------------------------------


def bulk(rows, repeat: int, workdir: str, have_gnocchi: bool) -> None:
    n = 1_000_000
    start = 1704067200  # 2024-01-01T00:00Z
    ts = (start + np.arange(n, dtype=np.int64)) * NS
    values = np.random.default_rng(42).random(n) * 100
    for label, methods in (("first/last", SET_A), ("median/95pct", SET_B)):
        pol = policy(methods)

        def ours(pol=pol):
            state = agg.MetricState(pol)
            state.apply(ts, values)
            return state

        best, med, state = timed(ours, repeat)
        enc = timed(lambda state=state: codec.encode_snapshot(state), repeat)
        ratio = ""
        if have_gnocchi:
            g_best, g_med, _ = timed(
                carbonara_bulk(ts, values, methods), max(1, repeat // 2)
            )
            ratio = f"{g_best / best:.1f}x"
            rows.append(
                (
                    f"bulk 1M pts, {label}: Carbonara",
                    f"{g_best:.3f} s",
                    f"{g_med:.3f} s",
                    f"{n / g_best / 1e6:.2f} M pts/s",
                )
            )
        rows.append(
            (
                f"bulk 1M pts, {label}: alarmer aggregate",
                f"{best:.3f} s",
                f"{med:.3f} s",
                f"{n / best / 1e6:.2f} M pts/s; {ratio} faster",
            )
        )
        rows.append(
            (
                f"bulk 1M pts, {label}: + snapshot encode",
                f"{enc[0]:.3f} s",
                f"{enc[1]:.3f} s",
                "",
            )
        )
        # bytes per stored point, through the engine and the file driver
        base = tempfile.mkdtemp(dir=workdir)
        engine = eng.SeriesStore(file_driver.FileDriver(base))
        metric = eng.MetricRef("bulk-" + label.replace("/", "-"), pol)
        t0 = time.perf_counter()
        engine.add_measures(metric, ts, values)
        full = time.perf_counter() - t0
        path = engine.driver.path(metric.id)
        size = os.path.getsize(path)
        buckets = sum(lv.ts.size for lv in state.levels.values())
        stored = buckets * len(methods)
        raw = codec.encode_snapshot(_without_aggregates(state))
        agg_bytes = size - len(raw)
        rows.append(
            (
                f"bulk 1M pts, {label}: engine.add_measures (file)",
                f"{full:.3f} s",
                "",
                f"{agg_bytes / stored:.2f} B/stored pt ({stored} pts); raw "
                f"buffer {state.raw_ts.size} pts {len(raw)} B",
            )
        )
        engine.close()
        shutil.rmtree(base)


def _without_aggregates(state: agg.MetricState) -> agg.MetricState:
    copy = agg.MetricState(state.policy)
    copy.last_ts = state.last_ts
    copy.raw.set(state.raw_ts, state.raw_values)
    return copy


def steady(
    rows, metrics: int, rounds: int, workdir: str, redis_url: str | None
) -> None:
    base = tempfile.mkdtemp(dir=workdir)
    engine = eng.SeriesStore(file_driver.FileDriver(base))
    cases = [
        ("medium 6 methods", ap.default_policies()["medium"], engine),
        ("P3 8 methods", policy(SET_A), engine),
        (
            "medium + rate:mean",
            dataclasses.replace(
                ap.default_policies()["medium"],
                aggregation_methods=(
                    *ap.default_policies()["medium"].aggregation_methods,
                    "rate:mean",
                ),
            ),
            engine,
        ),
    ]
    if redis_url:
        from alarmer.metrics.series.drivers import redis as redis_driver

        prefix = f"alarmer-bench-{uuid.uuid4().hex}:"
        rengine = eng.SeriesStore(
            redis_driver.RedisDriver(redis_url, prefix=prefix)
        )
        cases.append(
            (
                "redis medium 6 methods",
                ap.default_policies()["medium"],
                rengine,
            )
        )
    rss: list[float] = []
    rss_before = _rss_mib()
    for label, pol, engine in cases:
        refs = [
            eng.MetricRef(f"{label[:2]}{i:06d}-{uuid.uuid4().hex}", pol)
            for i in range(metrics)
        ]
        start = 1704067200
        hist = (start + np.arange(60, dtype=np.int64) * 60) * NS
        rng = np.random.default_rng(1)
        t0 = time.perf_counter()
        engine.add_measures_batch([(m, hist, rng.random(60)) for m in refs])
        backfill = time.perf_counter() - t0
        rows.append(
            (
                f"steady {label}: backfill {metrics} x 60 pts",
                f"{backfill:.2f} s",
                "",
                f"{metrics * 60 / backfill:,.0f} measures/s",
            )
        )
        per_round = []
        cpu = []
        for r in range(rounds):
            when = np.array([(start + (60 + r) * 60) * NS])
            batch = [(m, when, rng.random(1)) for m in refs]
            c0 = time.process_time()
            t0 = time.perf_counter()
            engine.add_measures_batch(batch)
            per_round.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        _steady_row(
            rows,
            f"steady {label}: 1 pt x {metrics} metrics (batch)",
            metrics,
            per_round,
            cpu,
        )
        per_round = []
        cpu = []
        for r in range(rounds):
            when = np.array([(start + (60 + rounds + r) * 60) * NS])
            c0 = time.process_time()
            t0 = time.perf_counter()
            for m in refs:
                engine.add_measures(m, when, rng.random(1))
            per_round.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        _steady_row(
            rows,
            f"steady {label}: 1 pt x {metrics} metrics (one call each)",
            metrics,
            per_round,
            cpu,
        )
        # reads
        lat = []
        for m in refs[: min(metrics, 5000)]:
            t0 = time.perf_counter_ns()
            engine.last_buckets(m.id, "mean", 60 * NS, 5)
            lat.append(time.perf_counter_ns() - t0)
        rows.append(
            (
                f"read last 5 buckets ({label})",
                f"{min(lat) / 1e3:.1f} us",
                f"{statistics.median(lat) / 1e3:.1f} us",
                f"p95 {np.percentile(lat, 95) / 1e3:.1f} us",
            )
        )
        if engine is not cases[0][2]:
            _clean_redis(engine, prefix)
            engine.close()
        else:
            rss.append(_rss_mib())
    engine = cases[0][2]
    rows.append(
        (
            f"process RSS, {metrics} / {2 * metrics} file metrics cached",
            f"{rss[0]:.0f} MiB",
            f"{rss[1]:.0f} MiB",
            f"(before: {rss_before:.0f} MiB); engine cache "
            f"{engine.statistics()['cached_bytes'] / 2**20:.0f} MiB",
        )
    )
    du = sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(base)
        for f in files
    )
    rows.append(
        (
            f"file driver disk use, {2 * metrics} small metrics",
            f"{du / 2**20:.1f} MiB",
            "",
            "",
        )
    )
    engine.close()


def history(rows, metrics: int, rounds: int, workdir: str) -> None:
    """Metrics with 7 days of 60 s history (medium policy), file driver."""
    base = tempfile.mkdtemp(dir=workdir)
    engine = eng.SeriesStore(file_driver.FileDriver(base))
    pol = ap.default_policies()["medium"]
    refs = [
        eng.MetricRef(f"hi{i:06d}-{uuid.uuid4().hex}", pol)
        for i in range(metrics)
    ]
    start = 1704067200
    points = 7 * 1440
    hist = (start + np.arange(points, dtype=np.int64) * 60) * NS
    rng = np.random.default_rng(2)
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    for m in refs:
        engine.add_measures(m, hist, rng.random(points))
    backfill = time.perf_counter() - t0
    rows.append(
        (
            f"history: backfill {metrics} metrics x 7 d at 60 s",
            f"{backfill:.2f} s",
            "",
            f"{metrics * points / backfill:,.0f} measures/s",
        )
    )
    wall, cpu = [], []
    for r in range(rounds):
        when = np.array([(start + (points + r) * 60) * NS])
        c0 = time.process_time()
        t0 = time.perf_counter()
        for m in refs:
            engine.add_measures(m, when, rng.random(1))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    _steady_row(
        rows,
        f"history: 1 pt x {metrics} metrics (one call each)",
        metrics,
        wall,
        cpu,
    )
    lat = []
    for m in refs:
        t0 = time.perf_counter_ns()
        engine.last_buckets(m.id, "mean", 60 * NS, 5)
        lat.append(time.perf_counter_ns() - t0)
    rows.append(
        (
            "history: read last 5 buckets",
            f"{min(lat) / 1e3:.1f} us",
            f"{statistics.median(lat) / 1e3:.1f} us",
            f"p95 {np.percentile(lat, 95) / 1e3:.1f} us",
        )
    )
    lat = []
    for m in refs[:200]:
        t0 = time.perf_counter_ns()
        engine.get_measures(m.id, "mean", 60 * NS)
        lat.append(time.perf_counter_ns() - t0)
    rows.append(
        (
            "history: read the whole 60 s series (10,080 buckets)",
            f"{min(lat) / 1e6:.2f} ms",
            f"{statistics.median(lat) / 1e6:.2f} ms",
            "",
        )
    )
    du = sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(base)
        for f in files
    )
    rows.append(
        (
            f"history: RSS growth / disk, {metrics} metrics",
            f"{_rss_mib() - rss0:.0f} MiB",
            f"{du / 2**20:.0f} MiB",
            "engine cache "
            f"{engine.statistics()['cached_bytes'] / 2**20:.0f} MiB",
        )
    )
    engine.close()


def _steady_row(rows, name, metrics, wall, cpu) -> None:
    med = statistics.median(wall)
    cpu_med = statistics.median(cpu)
    rows.append(
        (
            name,
            f"{min(wall):.3f} s",
            f"{med:.3f} s",
            f"{metrics / med:,.0f} updates/s wall, "
            f"{metrics / cpu_med:,.0f} per CPU-second",
        )
    )


def _clean_redis(engine: eng.SeriesStore, prefix: str) -> None:
    client = engine.driver.client  # type: ignore[attr-defined]
    keys = list(client.scan_iter(match=prefix + "*", count=10000))
    for i in range(0, len(keys), 1000):
        client.delete(*keys[i : i + 1000])


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def across(rows, repeat: int, have_gnocchi: bool) -> None:
    rng = np.random.default_rng(5)
    g = 60 * NS
    base = 1704067200 * NS
    series = []
    for i in range(1000):
        ts = base + np.arange(10, dtype=np.int64) * g
        if i % 7 == 0:  # some series miss a point: the union path
            ts = np.delete(ts, i % 10)
        series.append(eng.Series(g, ts, rng.random(ts.size)))
    lat = []
    for _ in range(max(repeat * 4, 20)):
        t0 = time.perf_counter()
        query.aggregate_across(series, "mean", needed_overlap=0)
        lat.append(time.perf_counter() - t0)
    med = statistics.median(lat)
    extra = ""
    if have_gnocchi:
        _, g_med, _ = timed(gnocchi_across(series), repeat)
        extra = f"Gnocchi processor {g_med * 1e3:.1f} ms: {g_med / med:.0f}x"
    rows.append(
        (
            "mean across 1000 series x 10 buckets",
            f"{min(lat) * 1e3:.2f} ms",
            f"{med * 1e3:.2f} ms",
            extra,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the file driver writes (default: tmpfs /dev/shm)",
    )
    parser.add_argument(
        "--only",
        choices=["bulk", "steady", "across", "history"],
        default=None,
    )
    parser.add_argument(
        "--history-metrics",
        type=int,
        default=1000,
        help="metrics with 7 days of history in the 'history' scenario",
    )
    parser.add_argument(
        "--redis",
        default=None,
        help="also run the steady state on the redis driver at this URL",
    )
    args = parser.parse_args()
    try:
        import gnocchi.carbonara  # noqa: F401

        have_gnocchi = True
    except ImportError:
        have_gnocchi = False
    workdir = tempfile.mkdtemp(prefix="alarmer-bench-", dir=args.dir)
    rows: list[tuple[str, str, str, str]] = []
    try:
        if args.only in (None, "bulk"):
            bulk(rows, args.repeat, workdir, have_gnocchi)
        if args.only in (None, "across"):
            across(rows, args.repeat, have_gnocchi)
        if args.only in (None, "history"):
            history(rows, args.history_metrics, args.rounds, workdir)
        if args.only in (None, "steady"):
            steady(rows, args.metrics, args.rounds, workdir, args.redis)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'scenario':<{width}}  {'min':>10}  {'median':>10}  notes")
    for name, best, med, note in rows:
        print(f"{name:<{width}}  {best:>10}  {med:>10}  {note}")


if __name__ == "__main__":
    main()
