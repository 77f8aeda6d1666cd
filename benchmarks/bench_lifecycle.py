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
import subprocess
import sys
import tempfile
import time
import uuid

import sqlalchemy as sa

from alarmer import timeutils
from alarmer.alarms.tables import Silence
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
        # One installation per set: the Aodh set must not see the
        # silence (the evaluator checks silences only when some exist).
        runtimes = []
        services = {}
        for label, with_options in (
            ("as Aodh", False),
            ("every option", True),
        ):
            rt = base.build(
                os.path.join(tmp, "options" if with_options else "aodh")
            )
            runtimes.append(rt)
            metrics = base.make_metrics(rt, args.metrics)
            fields = OPTIONS if with_options else {}
            base.insert_alarms(
                rt, _rules(metrics, args.alarms, with_options), **fields
            )
            if with_options:
                _one_silence(rt)
            service = EvaluatorService(rt)
            service.membership.start()
            service._control_step(force=True)
            assert len(service.registry) == args.alarms
            services[label] = service
        labels = list(services)
        walls: dict[str, list[float]] = {label: [] for label in labels}
        cpus: dict[str, list[float]] = {label: [] for label in labels}
        for round_ in range(args.rounds):
            # A B, then B A: a drift of the machine's load during a
            # round pair weighs on both sets alike.
            order = labels if round_ % 2 == 0 else labels[::-1]
            for label in order:
                wall, cpu = _passes(services[label], args.seconds)
                walls[label].append(wall)
                cpus[label].append(cpu)
        for rt in runtimes:
            rt.close()
    _throughput_table(args, walls, cpus)


def _one_silence(rt) -> None:
    """A silence in force that matches no alarm."""
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


def _throughput_table(
    args: argparse.Namespace,
    walls: dict[str, list[float]],
    cpus: dict[str, list[float]],
) -> None:
    print(
        f"{'alarms':<14} {'count':>7} {'evals/s (median)':>17} "
        f"{'CPU us/eval (median)':>21} {'min..max evals/s':>18}"
    )
    for label, values in walls.items():
        print(
            f"{label:<14} {args.alarms:>7} {statistics.median(values):>17.0f} "
            f"{statistics.median(cpus[label]):>21.1f} "
            f"{min(values):>8.0f}..{max(values):<8.0f}"
        )
    aodh, every = walls["as Aodh"], walls["every option"]
    ratio = statistics.median(every) / statistics.median(aodh)
    paired = statistics.median(e / a for a, e in zip(aodh, every, strict=True))
    cpu_ratio = statistics.median(cpus["as Aodh"]) / statistics.median(
        cpus["every option"]
    )
    print(f"every option / as Aodh, evals/s medians: {ratio:.1%}")
    print(f"every option / as Aodh, median of round pairs: {paired:.1%}")
    print(f"every option / as Aodh, by CPU per evaluation: {cpu_ratio:.1%}")


def _passes(service: EvaluatorService, seconds: float) -> tuple[float, float]:
    """Evaluations per second, and CPU microseconds per evaluation.

    Passes over every owned alarm for *seconds*.  Unlike
    ``bench_evaluator.timed_passes`` a transition is allowed (a long run
    sees windows slide past a minute boundary); the service counts them.
    The CPU time is this thread's (the evaluation, the engine and
    SQLite run in it).
    """
    alarms = list(service.registry.alarms.values())
    for alarm in alarms[:100]:  # warm-up
        service.evaluate(alarm)
    done, spent, cpu = 0, 0.0, 0.0
    while spent < seconds:
        started, cpu_started = time.perf_counter(), time.thread_time()
        for alarm in alarms:
            service.evaluate(alarm)
        spent += time.perf_counter() - started
        cpu += time.thread_time() - cpu_started
        done += len(alarms)
    assert service.stats.errors == 0
    return done / spent, cpu / done * 1e6


def cmd_retention(args: argparse.Namespace) -> None:
    server = os.environ.get(
        "ALARMER_BENCH_POSTGRESQL_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"alarmer_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(server).set(database=name).render_as_string(False)
    results: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rt = base.build(
                tmp,
                database={"connection": url},
                evaluator={
                    "evaluation_interval": args.interval,
                    "event_driven": False,
                },
            )
            metrics = base.make_metrics(rt, 200)
            # Thresholds far from the data, states that match them: the
            # steady state, every evaluation changes nothing.
            steady = [
                (
                    "gnocchi_resources_threshold",
                    base.resources_rule(
                        metrics[i % len(metrics)][0], 0.0 if i % 2 else 100.0
                    ),
                    "alarm" if i % 2 else "ok",
                )
                for i in range(args.alarms)
            ]
            base.insert_alarms(rt, steady)
            service = EvaluatorService(rt)
            service.start()
            deleter = _Deleter(url, tmp)
            try:
                time.sleep(args.interval)  # every alarm scheduled once
                results = _retention_rounds(args, rt, service, deleter)
            finally:
                deleter.close()
                service.stop()
                rt.close()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )
        admin.dispose()
    _retention_table(args, results)


class _Deleter:
    """A process of its own running retention passes on request.

    As in ``alarmer serve``, where the notifier process runs them, the
    deletion does not share the evaluator's interpreter.  It reports
    the rows removed, its wall and CPU seconds, and the CPU seconds of
    its PostgreSQL backend (read in ``/proc``, the server is local).
    """

    def __init__(self, url: str, tmp: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_expire", url, tmp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "ready", line
        self.backend = int(line[1])

    def run(self, batch: int) -> dict[str, float]:
        """One pass with *batch* rows per transaction (blocks)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        backend = _cpu_of(self.backend)
        self.proc.stdin.write(f"{batch}\n")
        self.proc.stdin.flush()
        removed, wall, cpu = self.proc.stdout.readline().split()
        return {
            "removed": float(removed),
            "seconds": float(wall),
            "cpu": float(cpu),
            "backend_cpu": _cpu_of(self.backend) - backend,
        }

    def close(self) -> None:
        """End the process."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process *pid*."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _expire_child(url: str, tmp: str) -> None:
    """The loop of :class:`_Deleter`'s process."""
    rt = base.build(tmp, database={"connection": url})
    with rt.db.session() as session:
        backend = session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    print("ready", backend, flush=True)
    ages = retention.Ages(history=86400.0)
    for line in sys.stdin:
        started, cpu = time.perf_counter(), time.process_time()
        removed = retention.expire(rt.db, ages, batch_size=int(line))
        print(
            removed.history,
            time.perf_counter() - started,
            time.process_time() - cpu,
            flush=True,
        )
    rt.close()


def _seed_history(rt, rows: int) -> None:
    """*rows* history entries a month old, made by the server itself."""
    old = timeutils.utcnow() - dt.timedelta(days=30)
    with rt.db.session() as session:
        session.execute(
            sa.text(
                "INSERT INTO alarm_history (event_id, alarm_id, type, "
                "detail, on_behalf_of, severity, timestamp) "
                "SELECT gen_random_uuid()::text, 'a' || (g % 1000), "
                "'state transition', :detail, 'p1', 'low', "
                ":when - g * interval '1 millisecond' "
                "FROM generate_series(1, :rows) AS g"
            ),
            {
                "detail": json.dumps(
                    {"state": "ok", "transition_reason": "b"}
                ),
                "when": old.replace(tzinfo=None),
                "rows": rows,
            },
        )
        session.commit()
    with rt.db.session() as session:
        session.execute(sa.text("ANALYZE alarm_history"))
        session.commit()


def _retention_rounds(
    args: argparse.Namespace,
    rt,
    service: EvaluatorService,
    deleter: _Deleter,
) -> list[dict[str, float]]:
    """Per round: a window with a pass running, one without (same length).

    The two windows alternate in order from one round to the next; the
    schedule lags of each window are the service's own records.
    """
    out = []
    # The quiet window lasts as long as the last pass of the same batch
    # size (until the first one tells).
    windows = dict.fromkeys(args.batches, args.rows / 60000)
    for round_ in range(args.rounds):
        for batch in args.batches:
            _seed_history(rt, args.rows)
            time.sleep(1.0)
            result: dict[str, float] = {"batch": batch}
            order = ("pass", "quiet") if round_ % 2 == 0 else ("quiet", "pass")
            for what in order:
                load = os.getloadavg()[0]
                service.stats.lags.clear()
                evaluations = service.stats.evaluations
                cpu = time.process_time()
                if what == "pass":
                    result.update(deleter.run(batch))
                    windows[batch] = result["seconds"]
                else:
                    time.sleep(windows[batch])
                lags = sorted(service.stats.lags)
                result[f"{what}_p50"] = lags[len(lags) // 2] * 1000
                result[f"{what}_p99"] = _p99(lags) * 1000
                result[f"{what}_evals"] = (
                    service.stats.evaluations - evaluations
                )
                result[f"{what}_eval_cpu"] = time.process_time() - cpu
                result[f"{what}_load"] = load
            assert result["removed"] == args.rows, result
            out.append(result)
    return out


def _retention_table(
    args: argparse.Namespace, results: list[dict[str, float]]
) -> None:
    print(
        f"{args.alarms} alarms every {args.interval} s; "
        f"{args.rows} history rows per pass"
    )
    print(
        f"{'batch':>6} {'seconds':>8} {'rows/s':>9} {'CPU s':>6} "
        f"{'PG CPU s':>8} {'lag p50/p99 ms quiet':>21} "
        f"{'during pass':>14} {'evals q/p':>11} {'eval CPU s q/p':>15} "
        f"{'load':>5}"
    )
    for r in results:
        print(
            f"{r['batch']:>6.0f} {r['seconds']:>8.2f} "
            f"{r['removed'] / r['seconds']:>9.0f} {r['cpu']:>6.2f} "
            f"{r['backend_cpu']:>8.2f} "
            f"{r['quiet_p50']:>10.1f}/{r['quiet_p99']:<10.1f} "
            f"{r['pass_p50']:>6.1f}/{r['pass_p99']:<7.1f} "
            f"{r['quiet_evals']:>5.0f}/{r['pass_evals']:<5.0f} "
            f"{r['quiet_eval_cpu']:>7.2f}/{r['pass_eval_cpu']:<7.2f} "
            f"{r['pass_load']:>5.1f}"
        )
    for batch in args.batches:
        mine = [r for r in results if r["batch"] == batch]
        rate = statistics.median(r["removed"] / r["seconds"] for r in mine)
        quiet = statistics.median(r["quiet_p99"] for r in mine)
        during = statistics.median(r["pass_p99"] for r in mine)
        print(
            f"batch {batch}: median {rate:.0f} rows/s; schedule lag p99 "
            f"median {quiet:.1f} ms quiet, {during:.1f} ms during a pass"
        )


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
    p.add_argument("--batches", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--alarms", type=int, default=2000)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    {"throughput": cmd_throughput, "retention": cmd_retention}[args.command](
        args
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_expire"]:
        _expire_child(*sys.argv[2:4])
        sys.exit(0)
    sys.exit(main())
