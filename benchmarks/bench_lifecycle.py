"""Lifecycle benchmarks: the cost of the options, the speed of retention.

::

    python benchmarks/bench_lifecycle.py throughput [--alarms 5000]
    python benchmarks/bench_lifecycle.py retention [--rows 200000]

* ``throughput``: evaluations per second of one worker calling the
  evaluation of every owned alarm in a loop (as ``bench_evaluator.py
  throughput``, engine reads, no state change), for alarms defined as
  Aodh defines them and for the same alarms with every lifecycle option
  on (repeat interval, missing data, pending, keep firing, M of N,
  recovery threshold, own evaluation interval) and one silence in force
  (matching none of them, so every evaluation checks it).  The two sets
  are measured alternately (``--rounds``, 3), in the same process.
* ``retention``: history rows removed per second by a retention pass on
  PostgreSQL (``ALARMER_BENCH_POSTGRESQL_URL``, default the local
  server; a database of its own is created and dropped), for several
  batch sizes, with the evaluations of 1000 alarms timed meanwhile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

import sqlalchemy as sa

from alarmer import timeutils
from alarmer.alarms.tables import AlarmHistory, Silence
from alarmer.evaluator.service import EvaluatorService
from notifiers import retention

sys.path.insert(0, os.path.dirname(__file__))
import bench_evaluator as base

OPTIONS = {
    "repeat_interval": 300,
    "missing_data": "keep_last",
    "keep_firing_for": 3600,
    "pending_for": 3600,
    "evaluation_interval": 60,
}
RULE_OPTIONS = {"datapoints_to_alarm": 2, "recovery_threshold": 0.0}


def _rules(metrics, count: int, with_options: bool):
    rules = []
    for i in range(count):
        resource_id, _ = metrics[i % len(metrics)]
        rule = base.resources_rule(resource_id, 10.0 * (i % 10))
        if with_options:
            rule = {**rule, **RULE_OPTIONS}
        rules.append(("gnocchi_resources_threshold", rule))
    return rules


def cmd_throughput(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rt = base.build(tmp)
        metrics = base.make_metrics(rt, args.metrics)
        services = {}
        for label, with_options in (
            ("as Aodh", False),
            ("every option", True),
        ):
            fields = OPTIONS if with_options else {}
            ids = base.insert_alarms(
                rt, _rules(metrics, args.alarms, with_options), **fields
            )
            service = EvaluatorService(rt)
            service.membership.start()
            service._control_step(force=True)
            keep = set(ids)
            for alarm_id in list(service.registry.alarms):
                if alarm_id not in keep:
                    service.registry.drop(alarm_id)
            services[label] = service
        with rt.db.session() as session, session.begin():
            now = timeutils.utcnow()
            session.add(
                Silence(
                    silence_id=str(uuid.uuid4()),
                    project_id=None,
                    comment="benchmark",
                    matchers=[{"field": "name", "op": "=", "value": "none"}],
                    starts_at=now,
                    ends_at=now + dt.timedelta(days=1),
                    recurrence=None,
                    created_at=now,
                    updated_at=now,
                )
            )
        rates: dict[str, list[float]] = {label: [] for label in services}
        for _round in range(args.rounds):
            for label, service in services.items():
                rates[label].append(_passes(service, args.seconds))
        rt.close()
    print(
        f"{'alarms':<14} {'count':>7} {'evals/s (median)':>17} "
        f"{'every round':>24}"
    )
    for label, values in rates.items():
        print(
            f"{label:<14} {args.alarms:>7} {statistics.median(values):>17.0f} "
            f"{' '.join(f'{v:.0f}' for v in values):>24}"
        )
    ratio = statistics.median(rates["every option"]) / statistics.median(
        rates["as Aodh"]
    )
    print(f"every option / as Aodh: {ratio:.1%}")


def _passes(service: EvaluatorService, seconds: float) -> float:
    """Evaluations per second over passes of every owned alarm.

    Unlike ``bench_evaluator.timed_passes`` a transition is allowed (a
    long run sees windows slide past a minute boundary); the service
    counts them.
    """
    alarms = list(service.registry.alarms.values())
    for alarm in alarms:  # warm-up
        service.evaluate(alarm)
    done, spent = 0, 0.0
    while spent < seconds:
        started = time.perf_counter()
        for alarm in alarms:
            service.evaluate(alarm)
        spent += time.perf_counter() - started
        done += len(alarms)
    assert service.stats.errors == 0
    return done / spent


def _history_rows(count: int, when: dt.datetime):
    detail = json.dumps({"state": "ok", "transition_reason": "bench"})
    for i in range(count):
        yield {
            "event_id": str(uuid.uuid4()),
            "alarm_id": f"a{i % 1000}",
            "type": "state transition",
            "detail": detail,
            "user_id": None,
            "project_id": None,
            "on_behalf_of": "p1",
            "severity": "low",
            "timestamp": when,
        }


def cmd_retention(args: argparse.Namespace) -> None:
    server = os.environ.get(
        "ALARMER_BENCH_POSTGRESQL_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"alarmer_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(server).set(database=name)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rt = base.build(
                tmp,
                database={
                    "connection": url.render_as_string(hide_password=False)
                },
            )
            metrics = base.make_metrics(rt, 200)
            base.insert_alarms(rt, _rules(metrics, 1000, False))
            service = EvaluatorService(rt)
            service.membership.start()
            service._control_step(force=True)
            alarms = list(service.registry.alarms.values())
            for alarm in alarms:
                service.evaluate(alarm)
            old = timeutils.utcnow() - dt.timedelta(days=30)
            for batch in args.batches:
                with rt.db.session() as session:
                    rows = list(_history_rows(args.rows, old))
                    for start in range(0, len(rows), 10000):
                        session.execute(
                            sa.insert(AlarmHistory),
                            rows[start : start + 10000],
                        )
                    session.commit()
                with rt.db.session() as session:
                    session.execute(sa.text("ANALYZE alarm_history"))
                    session.commit()
                idle = _eval_latencies(service, alarms, 2.0)
                during: list[float] = []
                stop = threading.Event()
                worker = threading.Thread(
                    target=_collect,
                    args=(during, service, alarms, stop),
                )
                worker.start()
                started = time.perf_counter()
                removed = retention.expire_history(
                    rt.db, timeutils.utcnow() - dt.timedelta(days=1), batch
                )
                spent = time.perf_counter() - started
                stop.set()
                worker.join()
                assert removed == args.rows, removed
                results.append(
                    (
                        batch,
                        removed,
                        spent,
                        removed / spent,
                        _p99(idle),
                        _p99(during),
                    )
                )
            rt.close()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )
        admin.dispose()
    print(
        f"{'batch':>6} {'rows':>8} {'seconds':>8} {'rows/s':>9} "
        f"{'eval p99 ms idle':>17} {'eval p99 ms during':>19}"
    )
    for batch, removed, spent, rate, idle_p99, during_p99 in results:
        print(
            f"{batch:>6} {removed:>8} {spent:>8.2f} {rate:>9.0f} "
            f"{idle_p99:>17.2f} {during_p99:>19.2f}"
        )


def _collect(into, service, alarms, stop) -> None:
    into.extend(_eval_latencies(service, alarms, 600, stop))


def _eval_latencies(service, alarms, seconds, stop=None) -> list[float]:
    """Milliseconds per evaluation, evaluating in a loop."""
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and not (stop and stop.is_set()):
        for alarm in alarms[:100]:
            started = time.perf_counter()
            service.evaluate(alarm)
            out.append((time.perf_counter() - started) * 1000)
    return out


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--alarms", type=int, default=5000)
    p.add_argument("--metrics", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p = sub.add_parser("retention")
    p.add_argument("--rows", type=int, default=200000)
    p.add_argument(
        "--batches", type=int, nargs="+", default=[1000, 5000, 20000]
    )
    args = parser.parse_args(argv)
    {"throughput": cmd_throughput, "retention": cmd_retention}[args.command](
        args
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
