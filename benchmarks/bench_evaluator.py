"""Evaluator benchmarks: ticks, mass transition, fast path, schedule.

Everything runs in a temporary directory with the embedded defaults
(SQLite, ``file`` series driver) unless told otherwise::

    python benchmarks/bench_evaluator.py ticks [--transitioning 0 10 100]
    python benchmarks/bench_evaluator.py wave [--alarms 5000] [--db pg]
    python benchmarks/bench_evaluator.py commit [--alarms 5000] [--db pg]
    python benchmarks/bench_evaluator.py throughput [--alarms 20000]
    python benchmarks/bench_evaluator.py schedule [--alarms 100000]
    python benchmarks/bench_evaluator.py detection [--samples 300]

Headline rows (what the evaluator costs for real):

* ``ticks``: by-metrics rules over 10 metrics (``evaluation_periods``
  1); before each pass a measure is written to every metric (not
  timed) that brings the mean of its newest bucket to 95, then 5, then
  95...: the ``--transitioning`` percent of the alarms (threshold 50)
  change state at every pass, the others (threshold 1000) read the
  same changed data and stay ``ok``.  The pass evaluates every alarm
  in ticks of the worker's size
  (:meth:`~alarmer.evaluator.service.EvaluatorService.evaluate_many`:
  one batched engine read, decisions, one group commit of the
  transitions), on a fresh service (cold caches, memo invalidated by
  the writes), on SQLite and on PostgreSQL (a database created for the
  run, dropped after).  Evaluations/s, evaluations per CPU-second of
  this process (the database server's CPU not counted), transitions
  committed, load average; with ``--phases``, the CPU per evaluation
  of the read, the decisions and the commit.
* ``wave``: the running service (threads, in-process channel) owning
  *alarms* ``gnocchi_resources_threshold`` alarms in
  ``insufficient data``, each with an ``ok`` action; one announcement of
  new measures for all their metrics moves them all to ``ok``:
  transitions/s committed (state, history and outbox rows), and the
  detection latency of a crossing injected on another metric just
  after the wave started.  On SQLite and on PostgreSQL (a database
  created for the run, dropped after).

Fast-path rows (labelled as such: no state change, one alarm per call;
or the commit alone):

* ``commit``: the group commit alone
  (:func:`~alarmer.alarms.transitions.record_batch`) of ticks of 256
  transitions, each with its history and outbox row, every alarm
  moving at every pass: transitions/s, CPU microseconds per transition
  (this process; the database server's own CPU is not counted) and the
  calls to the driver per tick (an ``executemany`` is one call, however
  many statements the driver then sends).

* ``throughput``: evaluations per second of one worker thread calling the
  evaluation of every owned alarm in a loop (decision, engine read, no
  state change), for ``gnocchi_resources_threshold`` (evaluation_periods
  3, granularity 60) and for by-metrics rules over 10 metrics, with the
  time to load (resolve) the definitions and to resolve them all again
  as after a change of the index; reading
  the engine with the data unchanged, through the bucket cache, and
  reading the engine after a new measure was written to every metric
  before each pass (the writes are not timed).
* ``schedule``: the real service (threads, spread schedule) with many
  alarms at a 60 s interval; schedule lag percentiles and memory per
  alarm (RSS growth after loading the definitions, and after one
  interval, engine cache included).
* ``detection``: the one-command start (API server + evaluator on one
  runtime, in-process channel); time from the POST of a measure that
  crosses the threshold to the committed transition, in process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
import requests
import sqlalchemy as sa

from alarmer import conf as aconf
from alarmer import runtime
from alarmer.alarms.tables import Alarm
from alarmer.evaluator.service import EvaluatorService
from alarmer.metrics import policy as ap
from alarmer.metrics.index import Caller
from alarmer.metrics.series import store as series_mod

NS = 1_000_000_000
#: The project of every alarm, resource and metric.
OWNER = {"user_id": "u1", "project_id": "p1"}


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build(tmp: str, **sections: dict[str, object]) -> runtime.Runtime:
    overrides: dict[str, dict[str, object]] = {
        "DEFAULT": {"data_dir": tmp, "log_level": "WARNING"},
        "coordination": {"backend_url": "none"},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    conf = aconf.make_conf(overrides=overrides)
    return runtime.build(conf, migrate=True)


def make_metrics(
    rt: runtime.Runtime, count: int, *, policy: str = "medium", points=12
) -> list[tuple[str, str]]:
    """Create *count* metrics on UUID resources, with *points* values."""
    index = rt.index
    made: list[tuple[str, str]] = []
    now_ns = time.time_ns() // (60 * NS) * (60 * NS)
    stamps = np.array(
        [now_ns - (points - 1 - i) * 60 * NS for i in range(points)],
        dtype=np.int64,
    )
    # The resources and metrics of the alarms' project (an alarm reads
    # only what its project may see).
    resource_ids = [str(uuid.uuid4()) for _ in range(count)]
    with rt.db.session() as session, session.begin():
        index.import_resources(
            session,
            index.get_type(session, "generic"),
            [{"id": rid} for rid in resource_ids],
            Caller(OWNER["user_id"], OWNER["project_id"]),
        )
    for i, resource_id in enumerate(resource_ids):
        info = index.create_metric(
            archive_policy_name=policy,
            name="cpu",
            resource_id=resource_id,
            **OWNER,
        )
        values = np.full(points, 50.0 + (i % 7), dtype=np.float64)
        rt.series.add_measures(
            series_mod.MetricRef(info.id, info.archive_policy), stamps, values
        )
        made.append((resource_id, info.id))
    return made


def insert_alarms(
    rt: runtime.Runtime, rules: list[tuple[str, dict]], **fields
) -> list[str]:
    ids: list[str] = []
    rows = []
    for alarm_type, rule, *state in rules:
        alarm_id = str(uuid.uuid4())
        ids.append(alarm_id)
        rows.append(
            {
                "alarm_id": alarm_id,
                "version": 1,
                "seq": 0,
                "name": "bench",
                "description": "",
                "type": alarm_type,
                "rule": rule,
                "enabled": True,
                "state": state[0] if state else "insufficient data",
                "state_reason": "Not evaluated yet",
                "severity": "low",
                "ok_actions": [],
                "alarm_actions": [],
                "insufficient_data_actions": [],
                "repeat_actions": False,
                "time_constraints": [],
                **OWNER,
                **fields,
            }
        )
    with rt.db.session() as session:
        for start in range(0, len(rows), 5000):
            session.execute(sa.insert(Alarm), rows[start : start + 5000])
        session.commit()
    return ids


def resources_rule(resource_id: str, threshold: float) -> dict:
    return {
        "metric": "cpu",
        "resource_id": resource_id,
        "resource_type": "generic",
        "aggregation_method": "mean",
        "threshold": threshold,
        "comparison_operator": "gt",
        "granularity": 60,
        "evaluation_periods": 3,
    }


def by_metrics_rule(metric_ids: list[str], threshold: float) -> dict:
    return {
        "metrics": metric_ids,
        "aggregation_method": "mean",
        "threshold": threshold,
        "comparison_operator": "gt",
        "granularity": 60,
        "evaluation_periods": 3,
    }


def timed_passes(
    service: EvaluatorService,
    seconds: float,
    before_pass: Callable[[], object] | None = None,
) -> float:
    """Evaluations per second over passes of every alarm.

    *before_pass* (not timed) runs before each pass, e.g. to write a new
    measure to every metric.
    """
    alarms = list(service.registry.alarms.values())
    for alarm in alarms:  # warm-up: first transitions, caches
        service.evaluate(alarm)
    done = 0
    transitions = service.stats.transitions
    spent = 0.0
    while spent < seconds:
        if before_pass is not None:
            before_pass()
        start = time.perf_counter()
        for alarm in alarms:
            service.evaluate(alarm)
        spent += time.perf_counter() - start
        done += len(alarms)
    rate = done / spent
    if service.stats.transitions != transitions:
        # A bucket boundary passed during the run: not the fast path.
        print(
            f"note: {service.stats.transitions - transitions} transitions "
            "during a fast-path run",
            file=sys.stderr,
        )
    assert service.stats.errors == 0
    return rate


def cmd_throughput(args: argparse.Namespace) -> None:
    rows = []
    for kind in ("gnocchi_resources_threshold", "by-metrics (10 metrics)"):
        with tempfile.TemporaryDirectory() as tmp:
            rt = build(tmp)
            metrics = make_metrics(rt, args.metrics)
            rules = []
            for i in range(args.alarms):
                if kind.startswith("gnocchi"):
                    resource_id, _ = metrics[i % len(metrics)]
                    rules.append(
                        (
                            "gnocchi_resources_threshold",
                            resources_rule(resource_id, 10.0 * (i % 10)),
                        )
                    )
                else:
                    ids = [
                        metrics[(i + k) % len(metrics)][1] for k in range(10)
                    ]
                    rules.append(
                        (
                            "gnocchi_aggregation_by_metrics_threshold",
                            by_metrics_rule(ids, 10.0 * (i % 10)),
                        )
                    )
            insert_alarms(rt, rules)
            policy = rt.index.get_archive_policy("medium")
            refs = [
                (series_mod.MetricRef(mid, policy), 50.0 + (i % 7))
                for i, (_, mid) in enumerate(metrics)
            ]

            def write_all(rt=rt, refs=refs) -> None:
                # The value every bucket already has: no transition.
                stamp = np.array([time.time_ns()], dtype=np.int64)
                rt.series.add_measures_batch(
                    [(ref, stamp, np.array([v])) for ref, v in refs]
                )

            for cached, writes in (
                (False, False),
                (True, False),
                (False, True),
            ):
                service = EvaluatorService(rt, api_in_process=cached)
                service.membership.start()
                started = time.perf_counter()
                service._control_step(force=True)
                load_s = time.perf_counter() - started
                assert len(service.registry) == args.alarms
                assert all(
                    isinstance(target, list)
                    for alarm in service.registry.alarms.values()
                    for target in alarm.targets
                ), "unresolved alarms"
                rate = timed_passes(
                    service, args.seconds, write_all if writes else None
                )
                rows.append(
                    (
                        kind,
                        ("bucket cache" if cached else "engine")
                        + (", all written" if writes else ""),
                        args.alarms,
                        args.metrics,
                        rate,
                        load_s,
                        reresolve_seconds(service),
                    )
                )
            rt.close()
    print(f"fast path (no state change, one alarm per call); {machine()}")
    print(
        f"{'rule':<30} {'reads from':<26} {'alarms':>8} {'metrics':>8} "
        f"{'evals/s':>10} {'load s':>7} {'re-resolve s':>12}"
    )
    for kind, mode, alarms, metrics, rate, load_s, again in rows:
        print(
            f"{kind:<30} {mode:<26} {alarms:>8} {metrics:>8} {rate:>10.0f} "
            f"{load_s:>7.2f} {again:>12.2f}"
        )


def machine() -> str:
    """Cores and load average, for every table."""
    with open("/proc/loadavg") as handle:
        load = " ".join(handle.read().split()[:3])
    return f"cores {os.cpu_count()}, load average {load}"


def _crossing_values(
    rt: runtime.Runtime, metric_ids: list[str], stamp: int, target: float
) -> np.ndarray:
    """Per metric, the value that brings the mean of *stamp*'s 60 s bucket
    to exactly *target* (the sum and count of the bucket are read first).
    """
    gran = 60 * NS
    bucket = stamp // gran * gran

    def current(method: str) -> np.ndarray:
        times, grid = rt.series.last_buckets_many(
            metric_ids, method, gran, 1, stop=stamp + 1
        )
        out = np.zeros(len(metric_ids))
        hit = np.flatnonzero(times == bucket)
        if hit.size:
            out = np.nan_to_num(grid[:, hit[0]])
        return out

    total, count = current("sum"), current("count")
    return target * (count + 1) - total


def _clock_phases(service: EvaluatorService) -> dict[str, float]:
    """Thread CPU seconds of a tick's phases, summed (for ``ticks``).

    Wraps, on this *service* only, the batched engine read (with the
    registration of what each rule reads), the decisions and the group
    commit; the rest of the tick (time constraints, silences, counters)
    is what the pass cost beyond them.
    """
    from alarmer.evaluator import service as service_mod

    spent = {"read": 0.0, "decide": 0.0, "commit": 0.0}

    def clocked(name: str, call: Callable[..., object]) -> Callable:
        def run(*args: object, **kwargs: object) -> object:
            c0 = time.thread_time()
            try:
                return call(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - c0

        return run

    service._decisions = clocked("decide", service._decisions)  # type: ignore[method-assign]
    service._commit_many = clocked("commit", service._commit_many)  # type: ignore[method-assign]
    batch_class = service_mod.data.BatchRead

    class ClockedRead(batch_class):  # type: ignore[misc,valid-type]
        def run(self) -> None:
            clocked("read", super().run)()

        def want(self, *args: object, **kwargs: object) -> None:
            clocked("read", super().want)(*args, **kwargs)

    service_mod.data.BatchRead = ClockedRead  # type: ignore[misc]
    service._bench_restore = lambda: setattr(  # type: ignore[attr-defined]
        service_mod.data, "BatchRead", batch_class
    )
    return spent


def _ticks(
    args: argparse.Namespace, url: str | None, moving: int
) -> tuple[int, int, float, float, int, str, str, dict[str, float]]:
    """One ``ticks`` run; *moving*: percent of alarms that transition."""
    from alarmer.evaluator.service import _CHUNK, Job

    with tempfile.TemporaryDirectory() as tmp:
        sections: dict[str, dict[str, object]] = {}
        if url is not None:
            sections["database"] = {"connection": url}
        rt = build(tmp, **sections)
        metrics = make_metrics(rt, args.metrics)
        ids = [mid for _, mid in metrics]
        # Rule i reads 10 metrics; the mean of their newest bucket goes
        # to 95, then 5, then 95...: a rule with threshold 50 changes
        # state at every pass, one with threshold 1000 never does.
        rules = [
            (
                "gnocchi_aggregation_by_metrics_threshold",
                {
                    **by_metrics_rule(
                        [ids[(i + k) % len(ids)] for k in range(10)],
                        50.0 if i % 100 < moving else 1000.0,
                    ),
                    "evaluation_periods": 1,
                },
                "ok",
            )
            for i in range(args.alarms)
        ]
        insert_alarms(
            rt, rules, ok_actions=["log://"], alarm_actions=["log://"]
        )
        policy = rt.index.get_archive_policy("medium")
        refs = [series_mod.MetricRef(mid, policy) for mid in ids]
        service = EvaluatorService(rt)
        service.membership.start()
        service._control_step(force=True)
        alarms = list(service.registry.alarms.values())
        assert len(alarms) == args.alarms
        wall = cpu = 0.0
        passes = done = 0
        before = service.stats.transitions
        phases = _clock_phases(service) if args.phases else {}
        load_start = machine()
        while wall < args.seconds or passes < 2:
            target = 95.0 if passes % 2 == 0 else 5.0
            now = time.time_ns()
            values = _crossing_values(rt, ids, now, target)
            stamp = np.array([now], dtype=np.int64)
            rt.series.add_measures_batch(
                [(ref, stamp, values[i : i + 1]) for i, ref in enumerate(refs)]
            )
            t0, c0 = time.perf_counter(), time.process_time()
            for start in range(0, len(alarms), _CHUNK):
                service.evaluate_many(
                    [Job(a, True) for a in alarms[start : start + _CHUNK]]
                )
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
            passes += 1
            done += len(alarms)
        committed = service.stats.transitions - before
        errors = service.stats.errors
        if phases:
            service._bench_restore()  # type: ignore[attr-defined]
        service.membership.stop()
        rt.close()
    assert errors == 0, errors
    return passes, done, wall, cpu, committed, load_start, machine(), phases


def cmd_ticks(args: argparse.Namespace) -> None:
    rows = []
    for db in args.db:
        for moving in args.transitioning:
            url, drop = (None, None) if db == "sqlite" else _pg_database()
            try:
                rows.append((db, moving, *_ticks(args, url, moving)))
            finally:
                if drop is not None:
                    drop()
    print(
        "by-metrics over 10 metrics, data changed before every pass (not "
        "timed), commits included, fresh service; CPU of this process "
        "(the database server's not counted)"
    )
    print(
        f"{'database':<10} {'moving %':>8} {'passes':>6} {'evals/s':>8} "
        f"{'evals/CPU-s':>11} {'transitions':>11} {'load at start':>16} "
        f"{'load at end':>16}"
    )
    for db, moving, passes, done, wall, cpu, committed, l0, l1, _ in rows:
        print(
            f"{db:<10} {moving:>8} {passes:>6} {done / wall:>8.0f} "
            f"{done / cpu:>11.0f} {committed:>11} "
            f"{l0.split('average ')[1]:>16} {l1.split('average ')[1]:>16}"
        )
    print(f"cores {os.cpu_count()}; target 25000 evaluations/s")
    if not args.phases:
        return
    print("CPU microseconds per evaluation, by phase (thread CPU time)")
    print(
        f"{'database':<10} {'moving %':>8} {'read':>7} {'decide':>7} "
        f"{'commit':>7} {'rest':>7} {'total':>7}"
    )
    for db, moving, _, done, _, cpu, _, _, _, phases in rows:
        parts = [phases[k] for k in ("read", "decide", "commit")]
        us = [1e6 * x / done for x in (*parts, cpu - sum(parts), cpu)]
        print(f"{db:<10} {moving:>8} " + " ".join(f"{x:>7.1f}" for x in us))


def _pg_database() -> tuple[str, Callable[[], None]]:
    """A PostgreSQL database for one run, and how to drop it."""
    base = os.environ.get(
        "ALARMER_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432"
    )
    name = f"bench_eval_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(
                sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            )
        admin.dispose()

    return f"{base}/{name}", drop


def cmd_wave(args: argparse.Namespace) -> None:
    rows = []
    for db in args.db:
        url, drop = (None, None) if db == "sqlite" else _pg_database()
        try:
            rows.append((db, *_wave(args, url)))
        finally:
            if drop is not None:
                drop()
    print(
        f"mass transition: {args.alarms} alarms insufficient data -> ok in "
        f"one announcement; {machine()}"
    )
    print(
        f"{'database':<10} {'transitions':>11} {'wave s':>7} {'trans/s':>8} "
        f"{'CPU s':>6} {'probe ms':>9} {'target/s':>9}"
    )
    for db, count, seconds, cpu, probe in rows:
        target = "5000" if db == "sqlite" else "10000"
        print(
            f"{db:<10} {count:>11} {seconds:>7.2f} {count / seconds:>8.0f} "
            f"{cpu:>6.2f} {probe * 1000:>9.1f} {target:>9}"
        )


def _wave(
    args: argparse.Namespace, url: str | None
) -> tuple[int, float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        sections: dict[str, dict[str, object]] = {
            "evaluator": {"evaluation_interval": 3600}
        }
        if url is not None:
            sections["database"] = {"connection": url}
        rt = build(tmp, **sections)
        metrics = make_metrics(rt, args.alarms + 1)
        probe_rid, probe_mid = metrics[-1]
        rules = [
            ("gnocchi_resources_threshold", resources_rule(rid, 1000.0))
            for rid, _ in metrics[:-1]
        ]
        ids = insert_alarms(rt, rules, ok_actions=["log://"])
        (probe_id,) = insert_alarms(
            rt,
            [
                (
                    "gnocchi_resources_threshold",
                    {
                        **resources_rule(probe_rid, 80.0),
                        "evaluation_periods": 1,
                    },
                )
            ],
            alarm_actions=["log://"],
            state="ok",
        )
        assert len(ids) == args.alarms
        policy = rt.index.get_archive_policy("medium")
        service = EvaluatorService(rt)
        service.start()
        try:
            probe = service.registry.get(probe_id)
            assert probe is not None
            # The 3 buckets the rules read, however long the set-up took
            # (the set-up's points may have left the window by now).
            now_ns = time.time_ns()
            stamp = np.array(
                [now_ns - 120 * NS, now_ns - 60 * NS, now_ns], dtype=np.int64
            )
            rt.series.add_measures_batch(
                [
                    (
                        series_mod.MetricRef(mid, policy),
                        stamp,
                        np.full(3, 50.0),
                    )
                    for _, mid in metrics[:-1]
                ]
            )
            # Alarms whose periodic slot fell during the set-up may have
            # moved already: the wave is what remains.
            with service._cv:
                wave = sum(
                    1
                    for alarm_id in ids
                    if service.registry.get(alarm_id).state
                    == "insufficient data"
                )
            before = service.stats.transitions
            c0 = time.process_time()
            t0 = time.perf_counter()
            rt.channel.publish([mid for _, mid in metrics[:-1]])
            # A crossing on another metric just after the wave started.
            time.sleep(0.02)
            rt.series.add_measures(
                series_mod.MetricRef(probe_mid, policy),
                np.array([time.time_ns()], dtype=np.int64),
                np.array([1e6]),
            )
            p0 = time.perf_counter()
            rt.channel.publish([probe_mid])
            probe_s = float("nan")
            deadline = t0 + 120
            report = t0 + 10
            while time.perf_counter() < deadline:
                if time.perf_counter() > report:
                    report += 10
                    print(
                        f"... {service.stats.transitions - before} "
                        f"transitions, backlog {service.stats.backlog}, "
                        f"errors {service.stats.errors}",
                        file=sys.stderr,
                    )
                if probe_s != probe_s and probe.state == "alarm":
                    probe_s = time.perf_counter() - p0
                if service.stats.transitions - before >= wave + 1:
                    break
                time.sleep(0.001)
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - c0
            count = service.stats.transitions - before - 1
        finally:
            service.stop()
        with rt.db.read_session() as session:
            states = session.execute(
                sa.select(Alarm.state, sa.func.count()).group_by(Alarm.state)
            ).all()
        rt.close()
    assert dict(states).get("ok") == args.alarms, states
    return count, seconds, cpu, probe_s


def cmd_commit(args: argparse.Namespace) -> None:
    from alarmer.alarms import transitions

    rows = []
    for db in args.db:
        url, drop = (None, None) if db == "sqlite" else _pg_database()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                sections: dict[str, dict[str, object]] = {}
                if url is not None:
                    sections["database"] = {"connection": url}
                rt = build(tmp, **sections)
                insert_alarms(
                    rt,
                    [("gnocchi_aggregation_by_metrics_threshold", {}, "ok")]
                    * args.alarms,
                    ok_actions=["log://"],
                    alarm_actions=["log://"],
                )
                with rt.db.read_session() as session:
                    snaps = [
                        transitions.AlarmSnapshot.from_row(row)
                        for row in session.execute(
                            sa.select(*transitions._SNAPSHOT_COLUMNS)
                        )
                    ]
                calls = [0]

                def count(*_args, calls=calls) -> None:
                    calls[0] += 1

                sa.event.listen(rt.db.engine, "before_cursor_execute", count)
                wall = cpu = 0.0
                ticks = 0
                for p in range(args.passes):
                    state = "alarm" if p % 2 == 0 else "ok"
                    now = dt.datetime.now(dt.UTC)
                    changes = [
                        transitions.Change(
                            snapshot=snap,
                            state=state,
                            reason=f"Transition to {state} due to 3 samples "
                            "outside threshold, most recent: 95.0",
                            reason_data={
                                "type": "threshold",
                                "disposition": "outside",
                                "count": 3,
                                "most_recent": 95.0,
                            },
                            now=now,
                        )
                        for snap in snaps
                    ]
                    t0, c0 = time.perf_counter(), time.process_time()
                    for start in range(0, len(changes), 256):
                        done = transitions.record_batch(
                            rt.db.session, changes[start : start + 256]
                        )
                        assert all(done), done
                        ticks += 1
                    wall += time.perf_counter() - t0
                    cpu += time.process_time() - c0
                    snaps = [change.after() for change in changes]
                rt.close()
        finally:
            if drop is not None:
                drop()
        n = args.alarms * args.passes
        rows.append((db, n, n / wall, cpu / n * 1e6, calls[0] / ticks))
    print(
        "group commit alone (fast path: no evaluation), ticks of 256 "
        f"transitions with history and outbox rows; {machine()}"
    )
    print(
        f"{'database':<10} {'transitions':>11} {'trans/s':>8} "
        f"{'CPU us each':>11} {'driver calls/tick':>17}"
    )
    for db, n, rate, us, per_tick in rows:
        print(f"{db:<10} {n:>11} {rate:>8.0f} {us:>11.1f} {per_tick:>17.1f}")


def reresolve_seconds(service: EvaluatorService) -> float:
    """Time of one pass re-resolving every owned alarm's metrics.

    What the control thread does when the index change counter moved
    (NaN with an evaluator that has no such pass).
    """
    revalidate = getattr(service, "_revalidate", None)
    if revalidate is None:
        return float("nan")
    with service.rt.db.read_session() as session:
        current = service.rt.index.generation(session)
    service._index_generation = current - 1
    service._revalidate_after = 0.0
    started = time.perf_counter()
    revalidate(current)
    return time.perf_counter() - started


def cmd_schedule(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rt = build(
            tmp,
            evaluator={
                "evaluation_interval": args.interval,
                "event_driven": False,
            },
        )
        metrics = make_metrics(rt, args.metrics)
        # Thresholds far from the data and states that match them: the
        # steady state (evaluations that change nothing).
        rules = [
            (
                "gnocchi_resources_threshold",
                resources_rule(
                    metrics[i % len(metrics)][0], 0.0 if i % 2 else 100.0
                ),
                "alarm" if i % 2 else "ok",
            )
            for i in range(args.alarms)
        ]
        insert_alarms(rt, rules)
        base = rss_mb()
        service = EvaluatorService(rt)
        t0 = time.perf_counter()
        service.start()
        load_s = time.perf_counter() - t0
        loaded = rss_mb()
        time.sleep(args.duration)
        after = rss_mb()
        stats = service.stats
        lag = stats.lag_percentiles()
        transitions = stats.transitions
        service.stop()
        rt.close()
    n = args.alarms
    assert transitions == 0, transitions
    print(
        f"{'alarms':>8} {'interval s':>10} {'run s':>6} {'evals':>8} "
        f"{'skipped':>8} {'lag p50 ms':>10} {'lag p99 ms':>10} "
        f"{'lag max ms':>10}"
    )
    print(
        f"{n:>8} {args.interval:>10} {args.duration:>6} "
        f"{stats.evaluations:>8} {stats.skipped_slots:>8} "
        f"{lag['p50'] * 1000:>10.1f} {lag['p99'] * 1000:>10.1f} "
        f"{lag['max'] * 1000:>10.1f}"
    )
    print()
    print(
        f"{'load s':>7} {'RSS base MiB':>12} {'+defs MiB':>10} "
        f"{'B/alarm defs':>12} {'+1 interval MiB':>15} {'B/alarm all':>12}"
    )
    print(
        f"{load_s:>7.1f} {base:>12.0f} {loaded - base:>10.0f} "
        f"{(loaded - base) * 2**20 / n:>12.0f} {after - base:>15.0f} "
        f"{(after - base) * 2**20 / n:>12.0f}"
    )


def cmd_detection(args: argparse.Namespace) -> None:
    from api.server import ApiServer

    admin = {"X-User-Id": "a", "X-Project-Id": "p1", "X-Roles": "admin"}
    with tempfile.TemporaryDirectory() as tmp:
        rt = build(
            tmp,
            api={"port": 0},
            evaluator={"evaluation_interval": 3600, "refresh_interval": 0.05},
        )
        policy = ap.ArchivePolicy(
            "bench-1s",
            (ap.PolicyItem(NS, 3600),),
            ("last", "mean"),
        )
        rt.index.create_archive_policy(policy)
        server = ApiServer(rt)
        server.start()
        service = EvaluatorService(rt)
        service.start()
        url = f"http://127.0.0.1:{server.port}"
        http = requests.Session()
        try:
            r = http.post(
                f"{url}/v1/resource/generic",
                json={
                    "id": "bench-vm",
                    "metrics": {"cpu": {"archive_policy_name": "bench-1s"}},
                },
                headers=admin,
            )
            assert r.status_code == 201, r.text
            metric_id = r.json()["metrics"]["cpu"]
            r = http.post(
                f"{url}/v2/alarms",
                headers=admin,
                json={
                    "name": "detect",
                    "type": "gnocchi_resources_threshold",
                    "alarm_actions": ["log://"],
                    "ok_actions": ["log://"],
                    "gnocchi_resources_threshold_rule": {
                        "metric": "cpu",
                        "resource_id": "bench-vm",
                        "resource_type": "generic",
                        "aggregation_method": "last",
                        "threshold": 50,
                        "comparison_operator": "gt",
                        "granularity": 1,
                        "evaluation_periods": 1,
                    },
                },
            )
            assert r.status_code == 201, r.text
            alarm_id = r.json()["alarm_id"]
            while alarm_id not in service.registry:
                time.sleep(0.01)
            samples = []
            for i in range(args.samples):
                value = 90.0 if i % 2 == 0 else 10.0
                before = service.stats.transitions
                t0 = time.perf_counter()
                r = http.post(
                    f"{url}/v1/metric/{metric_id}/measures",
                    json=[{"timestamp": time.time(), "value": value}],
                    headers=admin,
                )
                assert r.status_code == 202, r.text
                t_api = time.perf_counter() - t0
                while service.stats.transitions == before:
                    if time.perf_counter() - t0 > 5:
                        raise RuntimeError("no transition within 5 s")
                    time.sleep(0.0005)
                samples.append((time.perf_counter() - t0, t_api))
                time.sleep(args.pause)
        finally:
            service.stop()
            server.stop()
            rt.close()
    total = sorted(s[0] * 1000 for s in samples)
    api = sorted(s[1] * 1000 for s in samples)

    def pct(values, q):
        return values[min(len(values) - 1, int(len(values) * q))]

    print(
        f"{'samples':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'POST p50 ms':>11}"
    )
    print(
        f"{len(total):>8} {statistics.median(total):>8.1f} "
        f"{pct(total, 0.95):>8.1f} {pct(total, 0.99):>8.1f} "
        f"{total[-1]:>8.1f} {statistics.median(api):>11.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ticks")
    p.add_argument("--alarms", type=int, default=5000)
    p.add_argument("--metrics", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument(
        "--transitioning",
        type=int,
        nargs="+",
        default=[0, 50, 100],
        help="percent of the alarms changing state at every pass",
    )
    p.add_argument(
        "--phases",
        action="store_true",
        help="also time the read, decision and commit phases",
    )
    p.add_argument(
        "--db",
        nargs="+",
        default=["sqlite", "postgresql"],
        choices=["sqlite", "postgresql"],
    )
    p = sub.add_parser("wave")
    p.add_argument("--alarms", type=int, default=5000)
    p.add_argument(
        "--db",
        nargs="+",
        default=["sqlite", "postgresql"],
        choices=["sqlite", "postgresql"],
    )
    p = sub.add_parser("commit")
    p.add_argument("--alarms", type=int, default=5000)
    p.add_argument("--passes", type=int, default=4)
    p.add_argument(
        "--db",
        nargs="+",
        default=["sqlite", "postgresql"],
        choices=["sqlite", "postgresql"],
    )
    p = sub.add_parser("throughput")
    p.add_argument("--alarms", type=int, default=20000)
    p.add_argument("--metrics", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=5.0)
    p = sub.add_parser("schedule")
    p.add_argument("--alarms", type=int, default=100000)
    p.add_argument("--metrics", type=int, default=5000)
    p.add_argument("--interval", type=int, default=60)
    p.add_argument("--duration", type=float, default=75.0)
    p = sub.add_parser("detection")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--pause", type=float, default=0.02)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    {
        "ticks": cmd_ticks,
        "wave": cmd_wave,
        "commit": cmd_commit,
        "throughput": cmd_throughput,
        "schedule": cmd_schedule,
        "detection": cmd_detection,
    }[args.command](args)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
