"""Dashboard, ``/metrics`` and instrumentation benchmarks.

Everything runs in a temporary directory with the embedded defaults
(SQLite, ``file`` series driver).  The pages and ``/metrics`` are asked
over HTTP from the API's own server (waitress on a loopback port, no
browser), with the metrics in multi-process mode as ``alarmer serve``
runs them: the files of this process and of
:data:`OTHER_PROCESSES` more (API, evaluator and notifier processes
that recorded every route, alarm type and outcome)::

    python benchmarks/bench_dashboard.py pages [--alarms 100000] \
        [--database postgresql+psycopg://.../empty_db]
    python benchmarks/bench_dashboard.py overhead [--baseline DIR]
    python benchmarks/bench_dashboard.py render [--renders 200]

* ``pages``: the alarm list at *alarms* alarms (first page, a state
  filter, a name search, a page deep in the list, the change token),
  one alarm whose metric holds 7 days of 60 s buckets (detail page with
  the 7-day plot and 50 transitions), and the ``/metrics`` scrape (the
  database gauges counted over the same alarms).  Alarms are named
  ``web-<8 hex>-cpu``.  With ``--database`` (an empty PostgreSQL
  database: its tables are created), the name searches are measured
  again with and without the trigram index (``t0005``), alternating in
  the same run, with the CPU of the database's server processes.
  The scrape is also measured right after an alarm changed state
  (``[api] metrics_count_max_age`` is 0: every scrape has the database
  gauges read again, the worst case).
* ``render``: one render of the metric files
  (:class:`~alarmer.telemetry.FileExposition`) and of the whole
  exposition, in process.
* ``overhead``: CPU microseconds per item (this process, every thread,
  the telemetry's flushing included) of an evaluation (one evaluator
  tick per alarm, *alarms* ``gnocchi_resources_threshold`` alarms), of a
  delivery by the notifier's deliverer to ``log://`` (no network) and
  of one to a webhook (``http://`` to a receiver in another process),
  with the real :class:`~alarmer.telemetry.Telemetry` and without
  (one recording nothing; no telemetry for the deliverer), alternating
  round by round (ABBA), *seconds* of CPU per round; then the recording
  alone per item.  Each run is a fresh interpreter; with ``--baseline
  DIR`` (a checkout of another revision) runs of that tree alternate
  with runs of this one (``--repeat`` each)::

      python benchmarks/bench_dashboard.py overhead --baseline ../main \
          --alarms 2000 --rounds 6 --seconds 1 --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import requests
import sqlalchemy as sa
from oslo_config import cfg
from waitress.server import create_server

# ALARMER_BENCH_TREE: measure the code of another checkout (--baseline).
sys.path.insert(
    0,
    os.environ.get("ALARMER_BENCH_TREE")
    or os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_evaluator import (
    OWNER,
    build,
    insert_alarms,
    make_metrics,
    resources_rule,
)

from alarmer import telemetry
from alarmer.alarms import transitions
from alarmer.alarms.tables import Alarm
from alarmer.evaluator.service import EvaluatorService
from alarmer.metrics import policy as ap
from alarmer.metrics.series import store as series_mod
from api.app import create_app
from api.dashboard import views
from notifiers import deliver
from notifiers.base import Message
from notifiers.jobs import Job
from notifiers.retry import RetryPolicy

#: The checkout this script belongs to.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS = 1_000_000_000
H = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "member"}
STATES = ("ok", "alarm", "insufficient data")
SEVERITIES = ("low", "moderate", "critical")


#: Processes recording into the shared directory besides this one, as
#: ``alarmer serve`` on 2 cores runs them: a second API process, an
#: evaluator and a notifier.
OTHER_PROCESSES = ("api", "evaluator", "notifier")

#: A process of ``alarmer serve`` as /metrics sees it: every label set
#: its role can record, then alive until told to stop.
RECORDER = textwrap.dedent(
    """
    import sys
    from alarmer.telemetry import Telemetry
    from alarmer.alarms import model
    tel = Telemetry()
    assert tel.multiprocess
    role = sys.argv[1]
    if role == "api":
        for line in sys.stdin.read().splitlines():
            method, route = line.split(" ", 1)
            for status in (200, 400, 404):
                tel.request(method, route, status, 0.004)
        tel.ingested(100, 1)
    elif role == "evaluator":
        tel.owned_alarms.set(1000)
        tel.members.set(1)
        tel.cache_seen(10, 2, 10)
        for kind in model.ALARM_TYPES:
            for outcome in ("unchanged", "transition", "repeat", "skipped",
                            "error", "conflict"):
                for event in (True, False):
                    tel.evaluated(kind, outcome, event, 0.0002)
        for state in model.STATES:
            tel.transitioned(state)
        tel.schedule_lag.observe(0.1)
    else:
        for outcome in ("delivered", "retry", "dead"):
            for scheme in ("http", "https", "log"):
                tel.attempt(scheme, 0.01)
                tel.delivered(outcome)
    tel.flush()
    print("ready", flush=True)
    sys.stdin.close()
    sys.stdout.close()
    import os, time
    parent = os.getppid()
    while os.getppid() == parent:  # until the benchmark ends
        time.sleep(0.5)
    """
)


def recorders(app: Any) -> list[subprocess.Popen[str]]:
    """Start :data:`OTHER_PROCESSES` (the directory is exported)."""
    routes = sorted(
        f"{method} {rule.rule}"
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    )
    started = []
    for role in OTHER_PROCESSES:
        proc = subprocess.Popen(
            [sys.executable, "-c", RECORDER, role],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n".join(routes) if role == "api" else "")
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "ready"
        started.append(proc)
    return started


def cpu_seconds() -> float:
    """CPU seconds of this process and its ended children so far."""
    t = os.times()
    return t.user + t.system


def timed(call: Callable[[], Any], reps: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds of *reps* calls (after one warm-up)."""
    call()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def get(http: requests.Session, url: str) -> Callable[[], None]:
    def call() -> None:
        response = http.get(url, headers=H)
        assert response.status_code == 200, (url, response.status_code)

    return call


def week_alarm(rt: Any) -> str:
    """An alarm on a metric holding 7 days of 60 s buckets."""
    with rt.db.session() as session, session.begin():
        rt.index.create_archive_policy(
            ap.ArchivePolicy(
                name="week",
                definition=(ap.PolicyItem(granularity=60 * NS, points=10080),),
                aggregation_methods=("mean", "max"),
            ),
            session=session,
        )
    info = rt.index.create_metric(archive_policy_name="week", **OWNER)
    now = time.time_ns() // (60 * NS) * (60 * NS)
    stamps = np.array(
        [now - (10079 - i) * 60 * NS for i in range(10080)], dtype=np.int64
    )
    values = 50 + 40 * np.sin(np.arange(10080) / 300.0)
    rt.series.add_measures(
        series_mod.MetricRef(info.id, info.archive_policy), stamps, values
    )
    rule = {
        "metrics": [info.id],
        "aggregation_method": "mean",
        "threshold": 80.0,
        "comparison_operator": "gt",
        "granularity": 60,
        "evaluation_periods": 3,
    }
    (alarm_id,) = insert_alarms(
        rt, [("gnocchi_aggregation_by_metrics_threshold", rule)]
    )
    version = 1
    for i in range(50):
        with rt.db.session() as session:
            transitions.record_transition(
                session,
                alarm_id,
                version,
                "alarm" if i % 2 == 0 else "ok",
                "bench",
                {},
                now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3 * (50 - i)),
            )
            session.commit()
        version += 1
    return alarm_id


def server_cpu(rt: Any) -> float:
    """CPU seconds of the PostgreSQL processes serving this database."""
    with rt.db.engine.connect() as conn:
        pids = conn.scalars(
            sa.text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database()"
            )
        ).all()
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended, or on another host
        total += int(fields[11]) + int(fields[12])
    return total / tick


TRIGRAM_INDEX = "ix_alarm_name_trgm"


def trigram_rounds(
    rt: Any, base: str, http: requests.Session, searches: list[tuple]
) -> None:
    """Name searches with and without the trigram index, alternating."""
    with rt.db.engine.connect() as conn:
        created = conn.scalar(
            sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
            {"n": TRIGRAM_INDEX},
        )
    if created is None:
        print("no trigram index (pg_trgm missing): nothing to compare")
        return
    samples: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for _ in range(4):
        for variant in ("with index", "without"):
            with rt.db.engine.begin() as conn:
                conn.execute(sa.text(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}"))
                if variant == "with index":
                    conn.execute(sa.text(created))
                conn.execute(sa.text("ANALYZE alarm"))
            for label, url in searches:
                call = get(http, base + url)
                call()
                before = cpu_seconds() + server_cpu(rt)
                for _ in range(10):
                    start = time.perf_counter()
                    call()
                    samples.setdefault((label, variant), []).append(
                        (time.perf_counter() - start) * 1000
                    )
                spent = cpu_seconds() + server_cpu(rt) - before
                cpu.setdefault((label, variant), []).append(spent / 10 * 1000)
    print(
        f"| {'name search, PostgreSQL':<34} | {'index':<10} | p50 ms "
        "| CPU ms (app + PostgreSQL) |"
    )
    print(f"|{'-' * 36}|{'-' * 12}|--------|---------------------------|")
    for label, _ in searches:
        for variant in ("with index", "without"):
            p50 = statistics.median(samples[(label, variant)])
            per = statistics.median(cpu[(label, variant)])
            print(
                f"| {label:<34} | {variant:<10} | {p50:6.1f} | {per:25.1f} |"
            )
    print(f"load {os.getloadavg()}")


def after_change(
    scrape: Callable[[], None],
    rt: Any,
    alarm_id: str,
    collector: Any,
    reps: int,
) -> tuple[float, float, float]:
    """p50 and p99 ms of a scrape right after a transition of
    *alarm_id*, and CPU ms per scrape.

    Before each scrape the alarm changes state (not timed).  The CPU
    time runs from the scrape's start until the reading of the database
    gauges that it started in the background, if any, has ended: the
    count an alarm change costs is in it wherever it runs.
    """
    version = 1
    samples: list[float] = []
    cpu = 0.0
    for i in range(reps + 1):
        with rt.db.session() as session:
            assert transitions.record_transition(
                session,
                alarm_id,
                version,
                STATES[(i + 1) % 3],
                "bench",
                {},
                now=dt.datetime.now(dt.UTC),
                notify=False,
            )
            session.commit()
        version += 1
        before = cpu_seconds()
        start = time.perf_counter()
        scrape()
        took = (time.perf_counter() - start) * 1000
        # The reading starts once the answer is sent: wait for it to
        # start, then to end.
        deadline = time.perf_counter() + 5
        while getattr(collector, "_due", False):
            assert time.perf_counter() < deadline
            time.sleep(0.0005)
        worker = getattr(collector, "_worker", None)
        if worker is not None:
            worker.join()
        if i:  # the first is a warm-up
            samples.append(took)
            cpu += cpu_seconds() - before
    samples.sort()
    return (
        statistics.median(samples),
        samples[int(len(samples) * 0.99) - 1],
        cpu / reps * 1000,
    )


def render(renders: int) -> None:
    """CPU and wall time of one render of the metric files, and of the
    whole exposition (the database gauges' collector included), in
    process: no HTTP."""
    with tempfile.TemporaryDirectory() as tmp:
        shared = os.path.join(tmp, "prometheus")
        os.mkdir(shared)
        os.environ[telemetry.MULTIPROC_ENV] = shared
        rt = build(tmp)
        app = create_app(rt)
        others = recorders(app)
        client = app.test_client()
        # The API process's own series, as after serving each route.
        client.get("/metrics", buffered=True)
        files = telemetry.FileExposition(shared)
        lines = rt.telemetry.render().count(b"\n")
        print(
            f"{len(os.listdir(shared))} metric files, {lines} lines; "
            f"load {os.getloadavg()}"
        )
        print(f"| {'render (in process)':<24} | wall ms | CPU ms |")
        print(f"|{'-' * 26}|---------|--------|")
        for label, call in (
            ("metric files", files.render),
            ("whole exposition", rt.telemetry.render),
        ):
            call()
            before = cpu_seconds()
            start = time.perf_counter()
            for _ in range(renders):
                call()
            wall = (time.perf_counter() - start) / renders * 1000
            cpu = (cpu_seconds() - before) / renders * 1000
            print(f"| {label:<24} | {wall:7.2f} | {cpu:6.2f} |")
        for proc in others:
            proc.kill()
            proc.wait()
        rt.close()
        del os.environ[telemetry.MULTIPROC_ENV]


def pages(alarms: int, database: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shared = os.path.join(tmp, "prometheus")
        os.mkdir(shared)
        os.environ[telemetry.MULTIPROC_ENV] = shared
        sections: dict[str, dict[str, object]] = {
            "api": {"port": 0, "host": "127.0.0.1"}
        }
        if database:
            sections["database"] = {"connection": database}
        rt = build(tmp, **sections)
        assert rt.telemetry.multiprocess
        # The worst case: every scrape has the gauges read again (the
        # option is missing from the code before it).
        with contextlib.suppress(cfg.NoSuchOptError):
            rt.conf.set_override("metrics_count_max_age", 0, group="api")
        made = make_metrics(rt, 1)
        rules = [
            (
                "gnocchi_resources_threshold",
                resources_rule(made[0][0], 50.0),
                STATES[i % 3],
            )
            for i in range(alarms)
        ]
        start = time.perf_counter()
        ids = insert_alarms(rt, rules)
        with rt.db.session() as session:
            session.execute(
                sa.update(Alarm).values(
                    name=sa.literal("web-")
                    + sa.func.substr(Alarm.alarm_id, 1, 8)
                    + "-cpu"
                )
            )
            session.commit()
        loaded = time.perf_counter() - start
        one = f"web-{ids[len(ids) // 3][:8]}"
        detail = week_alarm(rt)
        app = create_app(rt)
        server = create_server(app, host="127.0.0.1", port=0, threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        base = f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]
        others = recorders(app)
        http = requests.Session()
        deep = sorted(ids)[len(ids) // 2]
        rows = [
            ("list, first page", "/dashboard/"),
            ("list, state=alarm", "/dashboard/?state=alarm"),
            ("list, name search", "/dashboard/?q=nomatch"),
            ("list, name search, one match", f"/dashboard/?q={one}"),
            (
                "list, name search + state",
                "/dashboard/?q=nomatch&state=alarm",
            ),
            ("list, page in the middle", f"/dashboard/?marker={deep}"),
            ("change token (polled)", "/dashboard/token"),
            (
                "alarm, 7 d plot (10080 buckets)",
                f"/dashboard/alarms/{detail}?range=7d",
            ),
            ("alarm, 1 d plot", f"/dashboard/alarms/{detail}?range=1d"),
            ("/metrics scrape", "/metrics"),
        ]
        print(
            f"{alarms} alarms inserted in {loaded:.1f} s; "
            f"load {os.getloadavg()}; "
            f"{len(os.listdir(shared))} metric files "
            f"({1 + len(OTHER_PROCESSES)} processes)"
        )
        collector = rt.telemetry._extra["database"]

        def uncached(
            url: str, forget: Callable[[], None]
        ) -> Callable[[], None]:
            call = get(http, base + url)

            def run() -> None:
                forget()
                call()

            return run

        table = [(label, get(http, base + url)) for label, url in rows] + [
            (
                "list, counts not cached",
                uncached(
                    "/dashboard/",
                    lambda: app.extensions.pop(views.COUNTS_CACHE, None),
                ),
            ),
        ]
        print(f"| {'request (over HTTP)':<36} | p50 ms | p99 ms | CPU ms |")
        print(f"|{'-' * 38}|--------|--------|--------|")
        for label, call in table:
            before = cpu_seconds()
            p50, p99 = timed(call, 30)
            cpu = (cpu_seconds() - before) / 31 * 1000
            print(f"| {label:<36} | {p50:6.1f} | {p99:6.1f} | {cpu:6.1f} |")
        p50, p99, cpu = after_change(
            get(http, base + "/metrics"), rt, ids[0], collector, 30
        )
        label = "/metrics right after an alarm change"
        print(f"| {label:<36} | {p50:6.1f} | {p99:6.1f} | {cpu:6.1f} |")
        print(f"load {os.getloadavg()}")
        if rt.db.dialect == "postgresql":
            trigram_rounds(
                rt,
                base,
                http,
                [(label, url) for label, url in rows if "?q=" in url],
            )
        for proc in others:
            proc.kill()
            proc.wait()
        server.close()
        rt.close()
        del os.environ[telemetry.MULTIPROC_ENV]


#: The recording methods of :class:`~alarmer.telemetry.Telemetry` the
#: evaluator and the notifier call (those a tree has).
RECORDING = (
    "evaluated",
    "evaluated_many",
    "transitioned",
    "delivered",
    "attempt",
    "delivery",
)


def _nothing(*args: Any, **kw: Any) -> None:
    pass


class _NoLag:
    def observe(self, *args: Any) -> None:
        pass


def silent() -> telemetry.Telemetry:
    """The same objects, recording nothing (the baseline)."""
    tel = telemetry.Telemetry()
    for name in RECORDING:
        if hasattr(tel, name):
            setattr(tel, name, _nothing)
    tel.schedule_lag = _NoLag()  # type: ignore[assignment]
    return tel


def cpu_per_item(
    batch: Callable[[], int], seconds: float, after: Callable[[], Any]
) -> float:
    """CPU microseconds per item of *batch* (which returns how many it
    did), called until *seconds* of CPU passed; *after* (the
    telemetry's flush) runs inside the measured time.  CPU time of this
    process, every thread (the flushing thread's too): what the
    machine's load changes least."""
    done = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        done += batch()
    after()
    return (time.process_time() - start) / done * 1e6


def _job(target: str) -> Job:
    return Job(
        id=str(uuid.uuid4()),
        token="t",
        target=target,
        stream="s",
        attempts=0,
        dead_after=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        message=Message(
            delivery_id="d",
            alarm_id=str(uuid.uuid4()),
            seq=1,
            alarm_name="bench",
            severity="low",
            previous="ok",
            current="alarm",
            reason="bench",
            reason_data={},
        ),
    )


def measure(alarms: int, rounds: int, seconds: float) -> dict[str, Any]:
    """The A/B rounds of this tree: CPU µs per item of each path, with
    the real telemetry and with one recording nothing, alternating."""
    from bench_notifier import _receiver, _start_receiver

    loads = [os.getloadavg()[0]]
    receiver, port = _start_receiver(_receiver)
    with tempfile.TemporaryDirectory() as tmp:
        rt = build(tmp, notifier={"allowed_networks": ["127.0.0.0/8"]})
        made = make_metrics(rt, alarms)
        insert_alarms(
            rt,
            [
                ("gnocchi_resources_threshold", resources_rule(r, 99.0))
                for r, _ in made
            ],
        )
        service = EvaluatorService(rt)
        service.start()
        service.stop()  # definitions loaded; evaluate() called directly
        real, quiet = rt.telemetry, silent()
        flush = getattr(real, "flush", _nothing)
        every = list(service.registry.alarms.values())
        for alarm in every:  # warm-up: first transitions, caches
            service.evaluate(alarm)

        def evaluations(tel: Any) -> Callable[[], int]:
            def batch() -> int:
                rt.telemetry = tel
                for alarm in every:
                    service.evaluate(alarm)
                return len(every)

            return batch

        policy = RetryPolicy.from_conf(rt.conf.notifier)
        stopping = threading.Event()
        workers = {
            "with": deliver.Deliverer(
                rt.conf, policy, stopping, telemetry=real
            ),
            "without": deliver.Deliverer(rt.conf, policy, stopping),
        }

        def deliveries(label: str, jobs: list[Job]) -> Callable[[], int]:
            worker = workers[label]

            def batch() -> int:
                for job in jobs:
                    outcome = worker.deliver(job)
                    assert outcome.status == "delivered", outcome
                return len(jobs)

            return batch

        log_jobs = [_job("log://bench") for _ in range(2000)]
        hook_jobs = [
            _job(f"http://127.0.0.1:{port}/hook/{i}") for i in range(100)
        ]
        paths: dict[str, dict[str, Callable[[], int]]] = {
            "evaluation": {
                "with": evaluations(real),
                "without": evaluations(quiet),
            },
            "log:// delivery": {
                label: deliveries(label, log_jobs) for label in workers
            },
            "webhook delivery": {
                label: deliveries(label, hook_jobs) for label in workers
            },
        }
        for batches in paths.values():  # warm-up: plugins, connections
            for batch in batches.values():
                batch()
        found: dict[str, dict[str, list[float]]] = {
            path: {"with": [], "without": []} for path in paths
        }
        for i in range(rounds):
            for path, batches in paths.items():
                # ABBA order: a drift of the machine's load cancels out.
                order = ["with", "without"]
                for label in order if i % 2 == 0 else order[::-1]:
                    after = flush if label == "with" else _nothing
                    found[path][label].append(
                        cpu_per_item(batches[label], seconds, after)
                    )
        for worker in workers.values():
            worker.close()
        rt.telemetry = real
        rt.close()
    receiver.kill()
    # The recording alone, per item, flush included (what the
    # evaluator's and the deliverer's calls cost in a process that does
    # nothing else).
    probe = telemetry.Telemetry()
    record = getattr(probe, "delivery", None)
    recorders: dict[tuple[str, str], Callable[[float], None]] = {}
    if hasattr(probe, "delivery_recorder"):  # the deliverer's way
        recorders[("delivered", "log")] = probe.delivery_recorder(
            "delivered", "log"
        )

    def one_evaluation() -> None:  # a tick of one alarm, as above
        probe.evaluated(
            "gnocchi_resources_threshold", "unchanged", False, 0.0001
        )

    def one_delivery() -> None:
        found = recorders.get(("delivered", "log"))
        if found is not None:
            found(0.00002)
        elif record is not None:
            record("delivered", "log", [0.00002])
        else:  # the two calls of an older Telemetry
            probe.attempt("log", 0.00002)
            probe.delivered("delivered")

    def per_item(call: Callable[[], None], n: int = 100_000) -> float:
        start = time.process_time()
        for _ in range(n):
            call()
        getattr(probe, "flush", _nothing)()
        return (time.process_time() - start) / n * 1e6

    recording = {
        "evaluation": statistics.median(
            per_item(one_evaluation) for _ in range(5)
        ),
        "delivery": statistics.median(
            per_item(one_delivery) for _ in range(5)
        ),
    }
    getattr(probe, "close", _nothing)()
    loads.append(os.getloadavg()[0])
    return {"rounds": found, "recording": recording, "loads": loads}


def _cost(without: float, with_: float) -> float:
    return (with_ - without) / without * 100


def report(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Print the table of the runs of each tree (rounds pooled)."""
    loads = [x for got in runs.values() for r in got for x in r["loads"]]
    print(
        f"load average {min(loads):.1f} to {max(loads):.1f} on "
        f"{os.cpu_count()} cores; CPU µs per item, median of rounds"
    )
    print(
        "| tree | path | rounds | without µs | with µs | A/B cost | "
        "per-round cost p25 .. p75 | recording alone µs (%) |"
    )
    print("|---|---|---:|---:|---:|---:|---|---|")
    for tree, got in runs.items():
        for path in got[0]["rounds"]:
            without = [x for r in got for x in r["rounds"][path]["without"]]
            with_ = [x for r in got for x in r["rounds"][path]["with"]]
            pairs = sorted(
                _cost(a, b) for a, b in zip(without, with_, strict=True)
            )
            base = statistics.median(without)
            quart = (
                statistics.quantiles(pairs, n=4)
                if len(pairs) > 1
                else (pairs * 3)
            )
            kind = "evaluation" if path == "evaluation" else "delivery"
            alone = statistics.median(r["recording"][kind] for r in got)
            print(
                f"| {tree} | {path} | {len(pairs)} | {base:,.1f} | "
                f"{statistics.median(with_):,.1f} | "
                f"{_cost(base, statistics.median(with_)):+.1f} % | "
                f"{quart[0]:+.1f} .. {quart[2]:+.1f} % | "
                f"{alone:.2f} ({alone / base * 100:.1f} %) |"
            )


def overhead(args: argparse.Namespace) -> None:
    if args.json:
        result = measure(args.alarms, args.rounds, args.seconds)
        print(json.dumps(result))
        return
    trees = [("this tree", ROOT)]
    if args.baseline:
        trees.insert(0, ("baseline", os.path.abspath(args.baseline)))
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    spent = {label: [0.0, 0.0] for label, _ in trees}
    for i in range(args.repeat):
        # Trees alternate too (ABBA), each run in a fresh interpreter.
        for label, tree in trees if i % 2 == 0 else trees[::-1]:
            wall, cpu = time.perf_counter(), os.times()
            done = subprocess.run(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "overhead",
                    "--json",
                    f"--alarms={args.alarms}",
                    f"--rounds={args.rounds}",
                    f"--seconds={args.seconds}",
                ],
                env={
                    **os.environ,
                    "ALARMER_BENCH_TREE": tree,
                    "PYTHONPATH": tree,
                },
                check=True,
                capture_output=True,
                text=True,
            )
            runs[label].append(json.loads(done.stdout.splitlines()[-1]))
            ended = os.times()
            spent[label][0] += time.perf_counter() - wall
            spent[label][1] += (
                ended.children_user
                + ended.children_system
                - cpu.children_user
                - cpu.children_system
            )
            print(f"{label}: run {i + 1} done", file=sys.stderr)
    for label, tree in trees:
        wall, cpu = spent[label]
        print(
            f"{label}: {tree}; {args.repeat} runs, {wall:.0f} s wall, "
            f"{cpu:.0f} s CPU (set-up included)"
        )
    report(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pages")
    p.add_argument("--alarms", type=int, default=100_000)
    p.add_argument(
        "--database",
        help="an empty database's URL (default: SQLite in a temporary "
        "directory)",
    )
    o = sub.add_parser("overhead")
    o.add_argument("--alarms", type=int, default=2000)
    o.add_argument("--rounds", type=int, default=8)
    o.add_argument(
        "--seconds", type=float, default=1.0, help="CPU seconds per round"
    )
    o.add_argument(
        "--baseline",
        help="a checkout of another revision, measured alternately",
    )
    o.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs of each tree (a fresh process each)",
    )
    o.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    r = sub.add_parser("render")
    r.add_argument("--renders", type=int, default=200)
    args = parser.parse_args()
    if args.what == "pages":
        pages(args.alarms, args.database)
    elif args.what == "render":
        render(args.renders)
    else:
        overhead(args)


if __name__ == "__main__":
    main()
