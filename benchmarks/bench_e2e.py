"""End-to-end benchmark: ``alarmer serve`` driven over HTTP under load.

One command starts the one-command service as a real subprocess
(``python -m alarmer.cli serve --config-file X``, whatever its process
model), a webhook receiver and the load generators on this machine, and
uses only the public HTTP APIs and the configuration file::

    python benchmarks/bench_e2e.py                  # 5,000 alarms, SQLite
    python benchmarks/bench_e2e.py --quick          # small smoke run
    python benchmarks/bench_e2e.py --database \\
        postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python benchmarks/bench_e2e.py --json -         # JSON on stdout

Phases:

1. *Setup*: an archive policy of 1 s granularity, then N metrics and N
   event-driven ``gnocchi_aggregation_by_metrics_threshold`` alarms (one
   metric each, ``max`` > 50 over one period) with webhook
   ``alarm_actions`` and ``ok_actions``, created concurrently over
   ``/v1`` and ``/v2``; plus one probe alarm, brought to ``ok`` first
   so that the evaluator is known to have loaded the definitions.
2. *Mass transition*: one ``POST /v1/batch/metrics/measures`` writes a
   low point to every metric: all N alarms move from ``insufficient
   data`` to ``ok`` in one wave.  As soon as that request returns, the
   probe alarm's metric receives a crossing point; its detection
   latency is the "crossing during the wave" row.  The committed
   transitions are counted from the alarms' history over HTTP (their
   timestamps are stamped by the evaluator in the transaction of each
   transition); the webhooks from the receiver.
3. *Detection, no background load*: crossings one at a time.
4. *Detection under load*: background ingest at the target rate from
   separate load processes (batch route, to the metrics of the alarms
   not used for crossings, values below the threshold, so that every
   write causes evaluations and, evaluated in time, no transition), and
   crossings with a few in flight, on alarms of their own.  A crossing
   is one point above the threshold POSTed to one alarm's metric; before
   its next crossing the alarm is brought out of ``alarm`` by a later
   point below it (an alarm that never leaves it, or whose requests
   fail, is retired and counted).  Measured: POST -> state visible
   (``GET /v2/alarms/<id>/state`` polled for that alarm) and POST ->
   webhook received; a crossing whose state is not visible within
   ``--miss-after`` seconds is missed.

The CPU time of the service is read from ``/proc``: user + system time
of the ``serve`` process and all its descendants, including the
descendants that exited (their parents' ``cutime``/``cstime``); memory
is the RSS and the PSS summed over the same process tree.  The load
generators' own CPU time is reported apart.  ``--serve-log PATH`` keeps
the service's log (its transitions explain misses).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

LOG = logging.getLogger("bench_e2e")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADERS = {
    "X-User-Id": "bench-user",
    "X-Project-Id": "bench-project",
    "X-Roles": "admin",
}
THRESHOLD = 50.0
HIGH = 99.0
LOW = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLEAR_ATTEMPTS = 3
WAVE_STALL = 15.0  # seconds without a new webhook that end the wave


# -- webhook receiver -------------------------------------------------------


class Receiver:
    """Threaded HTTP server recording when each alarm's webhooks arrive."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._events: dict[str, list[tuple[float, str]]] = {}
        self.count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                arrived = time.monotonic()
                try:
                    doc = json.loads(body)
                    receiver.record(
                        str(doc["alarm_id"]), str(doc["current"]), arrived
                    )
                except (ValueError, KeyError, TypeError):
                    LOG.warning("unreadable webhook body: %r", body[:200])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True
        )

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def record(self, alarm_id: str, state: str, arrived: float) -> None:
        """Note that a webhook for *alarm_id* in *state* arrived."""
        with self._cond:
            self._events.setdefault(alarm_id, []).append((arrived, state))
            self.count += 1
            self._cond.notify_all()

    def first(self, alarm_id: str, state: str, after: float) -> float | None:
        """Arrival time of the first *state* webhook after *after*."""
        with self._cond:
            for arrived, current in self._events.get(alarm_id, ()):
                if current == state and arrived >= after:
                    return arrived
        return None

    def wait(
        self, alarm_id: str, state: str, after: float, deadline: float
    ) -> float | None:
        """Wait until :meth:`first` finds a webhook or *deadline* passes."""
        with self._cond:
            while True:
                found = self.first(alarm_id, state, after)
                remaining = deadline - time.monotonic()
                if found is not None or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    def arrivals(self, state: str, after: float) -> dict[str, float]:
        """First arrival of a *state* webhook after *after*, per alarm."""
        out: dict[str, float] = {}
        with self._cond:
            for alarm_id, events in self._events.items():
                for arrived, current in events:
                    if current == state and arrived >= after:
                        out[alarm_id] = arrived
                        break
        return out


# -- process tree accounting ------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """*root* and all its live descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of *root*'s tree, exited children too."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime, cutime, cstime (fields 14-17 of proc(5)).
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / CLK_TCK


def tree_memory_mib(root: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over *root*'s live process tree."""
    rss = pss = 0
    for pid in process_tree(root):
        path = f"/proc/{pid}/smaps_rollup"
        with contextlib.suppress(OSError), open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def cpu_model() -> str:
    """The processor's model name, as /proc/cpuinfo gives it."""
    with (
        contextlib.suppress(OSError),
        open("/proc/cpuinfo", encoding="utf-8") as handle,
    ):
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


# -- small helpers ----------------------------------------------------------


def sa_database_name(url: str) -> str | None:
    """The database name in a SQLAlchemy URL."""
    import sqlalchemy as sa

    return sa.make_url(url).database


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def iso(epoch: float) -> str:
    """ISO 8601 with offset for a POSIX time."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def epoch_of(text: str) -> float:
    """POSIX time of an ISO 8601 timestamp (naive read as UTC)."""
    stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# -- the service under test -------------------------------------------------


@contextlib.contextmanager
def own_database(url: str | None) -> Iterator[str | None]:
    """Create a database of its own on *url*'s server; drop it after."""
    if url is None:
        yield None
        return
    import sqlalchemy as sa

    server = sa.make_url(url)
    if server.drivername == "postgresql":
        server = server.set(drivername="postgresql+psycopg")
    if not server.drivername.startswith("postgresql"):
        raise SystemExit("--database: a postgresql:// URL is expected")
    name = f"alarmer_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        server.set(database=server.database or "postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def running_serve(
    workdir: str, database: str | None, keep_log: str | None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``alarmer serve`` in *workdir*; yields (base URL, process)."""
    port = free_port()
    lines = [
        "[DEFAULT]",
        f"data_dir = {os.path.join(workdir, 'data')}",
        "[api]",
        "host = 127.0.0.1",
        f"port = {port}",
        # One query reads the whole wave's history back.
        "max_limit = 1000000",
        "[notifier]",
        "allowed_networks = 127.0.0.0/8",
    ]
    if database:
        lines += ["[database]", f"connection = {database}"]
    config = os.path.join(workdir, "alarmer.conf")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, env.get("PYTHONPATH")) if p
    )
    log_path = os.path.join(workdir, "serve.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alarmer.cli",
                "serve",
                "--config-file",
                config,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    url = f"http://127.0.0.1:{port}"
    LOG.info("starting alarmer serve")
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/healthcheck", timeout=2).ok:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "alarmer serve did not start:\n" + _tail(log_path)
                )
            time.sleep(0.1)
        yield url, proc
    finally:
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
            LOG.info(
                "alarmer serve stopped in %.1f s", time.monotonic() - stopping
            )
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if keep_log:
            shutil.copyfile(log_path, keep_log)


def _tail(path: str, lines: int = 40) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])


class Client:
    """The public APIs, one keep-alive session per thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        """This thread's session."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(HEADERS)
            self._local.session = session
        return session

    def post(self, path: str, body: Any, expect: int) -> Any:
        """POST JSON; fail unless the status is *expect*."""
        r = self.session.post(f"{self.url}{path}", json=body, timeout=120)
        if r.status_code != expect:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def state(self, alarm_id: str) -> str:
        """The alarm's current state."""
        r = self.session.get(
            f"{self.url}/v2/alarms/{alarm_id}/state", timeout=30
        )
        r.raise_for_status()
        return str(r.json())

    def push(self, metric_id: str, value: float, when: float) -> None:
        """One measure to one metric."""
        self.post(
            f"/v1/metric/{metric_id}/measures",
            [{"timestamp": iso(when), "value": value}],
            202,
        )

    def wait_state(
        self, alarm_id: str, state: str, deadline: float, step: float
    ) -> float | None:
        """Poll until *state* is visible; monotonic time of that answer."""
        return self.wait_until(alarm_id, state.__eq__, deadline, step)

    def wait_until(
        self,
        alarm_id: str,
        accept: Callable[[str], bool],
        deadline: float,
        step: float,
    ) -> float | None:
        """Poll until the state is accepted; monotonic time of that answer."""
        while True:
            if accept(self.state(alarm_id)):
                return time.monotonic()
            if time.monotonic() >= deadline:
                return None
            time.sleep(step)


@dataclass
class Alarm:
    """One benchmark alarm and its metric."""

    alarm_id: str
    metric_id: str
    crossed_at: float | None = None  # POSIX time of its last crossing


def create_alarms(
    client: Client, count: int, policy: str, hook: str, threads: int
) -> list[Alarm]:
    """*count* metrics and their alarms, created concurrently."""

    def one(index: int) -> Alarm:
        metric = client.post(
            "/v1/metric", {"archive_policy_name": policy}, 201
        )
        alarm = client.post(
            "/v2/alarms",
            {
                "name": f"e2e-{index}",
                "type": "gnocchi_aggregation_by_metrics_threshold",
                "alarm_actions": [hook],
                "ok_actions": [hook],
                "gnocchi_aggregation_by_metrics_threshold_rule": {
                    "metrics": [metric["id"]],
                    "aggregation_method": "max",
                    "threshold": THRESHOLD,
                    "comparison_operator": "gt",
                    "granularity": 1,
                    "evaluation_periods": 1,
                },
            },
            201,
        )
        return Alarm(alarm["alarm_id"], metric["id"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


# -- background ingest ------------------------------------------------------


def _load_worker(
    url: str,
    metric_ids: list[str],
    rate: float,
    batch_metrics: int,
    batch_points: int,
    stop: Any,
    accepted: Any,
    failed: Any,
    cpu: Any,
) -> None:
    """One load process: paced batch writes to its own metrics."""
    session = requests.Session()
    session.headers.update(HEADERS)
    session.headers["Content-Type"] = "application/json"
    per_request = min(batch_metrics, len(metric_ids)) * batch_points
    interval = per_request / rate
    rng = random.Random(os.getpid())
    offset = 0
    due = time.monotonic()
    while not stop.is_set():
        chunk = [
            metric_ids[(offset + k) % len(metric_ids)]
            for k in range(min(batch_metrics, len(metric_ids)))
        ]
        offset += len(chunk)
        base = time.time()
        body = {
            mid: [
                {
                    "timestamp": base + k * 1e-4,
                    "value": rng.uniform(0, THRESHOLD / 5),
                }
                for k in range(batch_points)
            ]
            for mid in chunk
        }
        try:
            r = session.post(
                f"{url}/v1/batch/metrics/measures",
                data=json.dumps(body, separators=(",", ":")),
                timeout=60,
            )
            ok = r.status_code == 202
        except requests.RequestException:
            ok = False
        with (accepted if ok else failed).get_lock():
            (accepted if ok else failed).value += per_request
        due += interval
        delay = due - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            due = time.monotonic()  # behind: no catch-up burst
    with cpu.get_lock():
        cpu.value += time.process_time()


class Load:
    """Background ingest from separate processes."""

    def __init__(
        self,
        url: str,
        metric_ids: list[str],
        rate: float,
        processes: int,
        batch_metrics: int,
        batch_points: int,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.accepted = ctx.Value("q", 0)
        self.failed = ctx.Value("q", 0)
        self.cpu = ctx.Value("d", 0.0)
        processes = max(1, min(processes, len(metric_ids)))
        self.procs = [
            ctx.Process(
                target=_load_worker,
                args=(
                    url,
                    metric_ids[k::processes],
                    rate / processes,
                    batch_metrics,
                    batch_points,
                    self.stop_event,
                    self.accepted,
                    self.failed,
                    self.cpu,
                ),
                daemon=True,
            )
            for k in range(processes)
        ]

    def start(self) -> None:
        """Start the load processes."""
        for proc in self.procs:
            proc.start()

    def counts(self) -> tuple[int, int]:
        """(accepted, refused or failed) measures so far."""
        return int(self.accepted.value), int(self.failed.value)

    def stop(self) -> float:
        """Stop the load processes; their CPU seconds."""
        self.stop_event.set()
        for proc in self.procs:
            proc.join(timeout=120)
            if proc.is_alive():
                proc.kill()
        return float(self.cpu.value)


# -- detection --------------------------------------------------------------


@dataclass
class Detection:
    """Latencies of a series of crossings."""

    state_ms: list[float] = field(default_factory=list)
    webhook_ms: list[float] = field(default_factory=list)
    crossings: int = 0
    missed: int = 0
    webhooks_missed: int = 0
    clears_retried: int = 0
    retired: int = 0
    #: POST of the crossing point -> its 202 (the API's part).
    ack_ms: list[float] = field(default_factory=list)
    #: (alarm id, wall-clock time of the POST, seen) of every crossing,
    #: for :func:`commit_lags`.
    sent: list[tuple[str, float, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Stages:
    """Where the time of the crossings went, from the alarms' history.

    The evaluator stamps a transition in its own transaction, so the
    history's timestamp of the transition to ``alarm`` after a crossing
    is when it committed (the same machine's clock as the POST's).
    """

    #: POST -> transition committed, crossings seen in time.
    commit_ms: list[float] = field(default_factory=list)
    #: POST -> transition committed, crossings missed (seen too late).
    late_commit_ms: list[float] = field(default_factory=list)
    #: Missed crossings with no transition to ``alarm`` at all.
    never: int = 0


def commit_lags(client: Client, result: Detection) -> Stages:
    """Read each crossed alarm's history once; match the crossings."""
    stages = Stages()
    by_alarm: dict[str, list[tuple[float, bool]]] = {}
    for alarm_id, at, seen in result.sent:
        by_alarm.setdefault(alarm_id, []).append((at, seen))
    for alarm_id, crossings in by_alarm.items():
        r = client.session.get(
            f"{client.url}/v2/alarms/{alarm_id}/history", timeout=60
        )
        r.raise_for_status()
        stamps = sorted(
            dt.datetime.fromisoformat(h["timestamp"]).timestamp()
            for h in r.json()
            if h.get("type") == "state transition"
            and json.loads(h.get("detail") or "{}").get("state") == "alarm"
        )
        crossings.sort()
        for k, (at, seen) in enumerate(crossings):
            # The first transition to alarm after this POST and before
            # the next crossing's POST is this crossing's.
            until = crossings[k + 1][0] if k + 1 < len(crossings) else None
            mine = [
                t for t in stamps if t >= at and (until is None or t < until)
            ]
            if not mine:
                stages.never += 1 if not seen else 0
                continue
            lag = (mine[0] - at) * 1000
            (stages.commit_ms if seen else stages.late_commit_ms).append(lag)
    return stages


def clear(
    client: Client,
    alarm: Alarm,
    result: Detection,
    miss_after: float,
    poll: float,
) -> bool:
    """Bring *alarm* out of ``alarm``; ``False`` if it never left it.

    The clearing point must fall in a later 1 s bucket than the
    crossing; one evaluated too late to be in the window is sent again.
    ``ok`` and ``insufficient data`` both do: a crossing from either is a
    transition.
    """
    wait = math.floor(alarm.crossed_at or 0) + 1 - time.time()
    if wait > 0:
        time.sleep(wait)
    for _ in range(CLEAR_ATTEMPTS):
        client.push(alarm.metric_id, LOW, time.time())
        deadline = time.monotonic() + miss_after
        if client.wait_until(
            alarm.alarm_id, lambda state: state != "alarm", deadline, poll
        ):
            return True
        with result.lock:
            result.clears_retried += 1
    return False


def cross_once(
    client: Client,
    receiver: Receiver,
    alarm: Alarm,
    result: Detection,
    miss_after: float,
    poll: float,
) -> None:
    """Time one crossing of *alarm* (not in ``alarm`` state)."""
    sent = time.monotonic()
    alarm.crossed_at = time.time()
    client.push(alarm.metric_id, HIGH, alarm.crossed_at)
    acked = time.monotonic()
    deadline = sent + miss_after
    seen = client.wait_state(alarm.alarm_id, "alarm", deadline, poll)
    hooked = receiver.wait(alarm.alarm_id, "alarm", sent, deadline)
    with result.lock:
        result.crossings += 1
        result.ack_ms.append((acked - sent) * 1000)
        result.sent.append(
            (alarm.alarm_id, alarm.crossed_at, seen is not None)
        )
        if seen is None:
            result.missed += 1
        else:
            result.state_ms.append((seen - sent) * 1000)
        if hooked is None:
            result.webhooks_missed += 1
        else:
            result.webhook_ms.append((hooked - sent) * 1000)


def detect(
    client: Client,
    receiver: Receiver,
    alarms: list[Alarm],
    crossings: int,
    in_flight: int,
    miss_after: float,
    poll: float,
    limit: float,
) -> Detection:
    """*crossings* crossings spread over *alarms*, *in_flight* at once.

    No crossing starts after *limit* seconds; an alarm that cannot be
    cleared is retired (counted) and the others go on.
    """
    result = Detection()
    in_flight = max(1, min(in_flight, len(alarms)))
    counter = iter(range(crossings))
    counter_lock = threading.Lock()
    stop_at = time.monotonic() + limit

    def worker(mine: list[Alarm]) -> None:
        live = list(mine)
        turn = 0
        while live and time.monotonic() < stop_at:
            alarm = live[turn % len(live)]
            try:
                if alarm.crossed_at is not None and not clear(
                    client, alarm, result, miss_after, poll
                ):
                    raise RuntimeError("never cleared")
                with counter_lock:
                    if next(counter, None) is None:
                        return
                cross_once(client, receiver, alarm, result, miss_after, poll)
            except (RuntimeError, requests.RequestException) as exc:
                # Under overload a request may fail or time out: the
                # alarm's state is unknown, so it takes no more crossings.
                LOG.warning("alarm %s retired: %s", alarm.alarm_id, exc)
                live.remove(alarm)
                with result.lock:
                    result.retired += 1
                continue
            turn += 1

    threads = [
        threading.Thread(target=worker, args=(alarms[k::in_flight],))
        for k in range(in_flight)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


# -- the run ----------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table."""

    workload: str
    figure: str
    value: float | None
    unit: str
    target: str = "-"
    met: bool | None = None

    def shown(self) -> str:
        """The figure as printed."""
        if self.value is None or math.isnan(self.value):
            return "n/a"
        if self.unit in {"", "ms", "s", "MiB", "CPU-s", "cores"}:
            number = f"{self.value:,.1f}"
            if self.value == int(self.value) and self.unit == "":
                number = f"{int(self.value):,d}"
        else:
            number = f"{self.value:,.0f}"
        return f"{number} {self.unit}".strip()


def check(value: float | None, op: str, bound: float) -> bool:
    """Whether *value* meets ``op bound`` (None when not measured)."""
    if value is None or math.isnan(value):
        return False
    return value <= bound if op == "<=" else value >= bound


class Run:
    """One benchmark run against one started service."""

    def __init__(
        self,
        args: argparse.Namespace,
        url: str,
        proc: subprocess.Popen[bytes],
        receiver: Receiver,
    ) -> None:
        self.args = args
        self.url = url
        self.proc = proc
        self.receiver = receiver
        self.client = Client(url)
        self.hook = f"http://127.0.0.1:{receiver.port}/hook"
        self.rows: list[Row] = []
        self.info: dict[str, Any] = {}
        self._cpu_mark = tree_cpu_seconds(proc.pid)

    def add(
        self,
        workload: str,
        figure: str,
        value: float | None,
        unit: str,
        target: tuple[str, float] | None = None,
    ) -> None:
        """Add a row; with a target (``("<=", 20.0)``), judge it."""
        row = Row(workload, figure, value, unit)
        if target is not None:
            op, bound = target
            row.target = f"{op} {bound:,g} {unit}".strip()
            row.met = check(value, op, bound)
        self.rows.append(row)

    def cpu_since(self) -> float:
        """CPU seconds of the service since the previous call."""
        now = tree_cpu_seconds(self.proc.pid)
        spent, self._cpu_mark = now - self._cpu_mark, now
        return spent

    def setup(self) -> tuple[list[Alarm], Alarm]:
        """The policy, the alarms and the probe alarm, brought to ``ok``."""
        args, client = self.args, self.client
        policy = f"bench-1s-{uuid.uuid4().hex[:8]}"
        client.post(
            "/v1/archive_policy",
            {
                "name": policy,
                "back_window": 0,
                "definition": [{"granularity": "1s", "timespan": "1h"}],
                "aggregation_methods": ["max", "mean", "last"],
            },
            201,
        )
        LOG.info("creating %d metrics and alarms", args.alarms)
        started = time.monotonic()
        alarms = create_alarms(
            client, args.alarms, policy, self.hook, args.create_threads
        )
        took = time.monotonic() - started
        self.add(
            "setup", "alarms created (metric + alarm each)", len(alarms), ""
        )
        self.add(
            "setup", "creation rate, concurrent", len(alarms) / took, "/s"
        )
        self.add(
            "setup", "CPU of alarmer during setup", self.cpu_since(), "CPU-s"
        )
        (probe,) = create_alarms(client, 1, policy, self.hook, 1)
        # A point written before the evaluator loaded the alarm is not
        # evaluated at once: send fresh ones until the probe is ok.
        ready_by = time.monotonic() + 120
        while True:
            client.push(probe.metric_id, LOW, time.time())
            step_by = min(ready_by, time.monotonic() + 1)
            if client.wait_state(probe.alarm_id, "ok", step_by, 0.05):
                break
            if time.monotonic() >= ready_by:
                raise RuntimeError("the evaluator never evaluated the probe")
        # Time for other evaluator processes' refresh, if any.
        time.sleep(0.5 if args.quick else 2.0)
        return alarms, probe

    def mass_transition(self, alarms: list[Alarm], probe: Alarm) -> None:
        """Every alarm to ``ok`` in one write; a crossing during it."""
        args, client, receiver = self.args, self.client, self.receiver
        wave_mark = time.monotonic()
        wave_wall = time.time()
        body = {
            a.metric_id: [{"timestamp": iso(wave_wall), "value": LOW}]
            for a in alarms
        }
        LOG.info("mass transition of %d alarms", len(alarms))
        client.post("/v1/batch/metrics/measures", body, 202)
        post_s = time.monotonic() - wave_mark
        wave_ids = {a.alarm_id for a in alarms}
        self.info["wave_pending_at_injection"] = len(wave_ids) - len(
            receiver.arrivals("ok", wave_mark).keys() & wave_ids
        )
        injected = time.monotonic()
        client.push(probe.metric_id, HIGH, time.time())
        probe.crossed_at = time.time()
        probe_seen: list[float | None] = [None]

        def watch_probe() -> None:
            probe_seen[0] = Client(self.url).wait_state(
                probe.alarm_id,
                "alarm",
                injected + args.wave_timeout,
                args.poll_interval,
            )

        watcher = threading.Thread(target=watch_probe)
        watcher.start()
        self._wait_wave(wave_ids, wave_mark)
        watcher.join()
        wave_cpu = self.cpu_since()
        history = client.post(
            "/v2/query/alarms/history",
            {
                "filter": json.dumps(
                    {
                        "and": [
                            {"=": {"type": "state transition"}},
                            {">=": {"timestamp": iso(wave_wall - 1)}},
                        ]
                    }
                ),
                "limit": 10 * (len(alarms) + 10),
            },
            200,
        )
        stamps = [
            epoch_of(h["timestamp"])
            for h in history
            if h["alarm_id"] in wave_ids
            and json.loads(h["detail"]).get("state") == "ok"
        ]
        span = (max(stamps) - wave_wall) if stamps else math.nan
        hooks = receiver.arrivals("ok", wave_mark)
        everyone = (">=", float(len(alarms)))
        wl = f"mass transition ({len(alarms)} alarms -> ok)"
        self.add(wl, "batch POST of the wave", post_s, "s")
        self.add(
            wl, "transitions committed (history)", len(stamps), "", everyone
        )
        self.add(
            wl,
            "transitions/s committed (to the last commit)",
            len(stamps) / span if span > 0 else math.nan,
            "/s",
            (">=", 10_000.0 if args.database else 5_000.0),
        )
        self.add(
            wl,
            "committed within 10 s",
            sum(1 for s in stamps if s - wave_wall <= 10),
            "",
            everyone,
        )
        self.add(
            wl,
            "webhooks received within 10 s",
            sum(
                1
                for alarm_id, arrived in hooks.items()
                if alarm_id in wave_ids and arrived - wave_mark <= 10
            ),
            "",
            everyone,
        )
        self.add(
            wl,
            "crossing during the wave: POST -> state visible",
            (
                (probe_seen[0] - injected) * 1000
                if probe_seen[0] is not None
                else math.nan
            ),
            "ms",
            ("<=", 250.0),
        )
        self.add(wl, "CPU of alarmer during the wave", wave_cpu, "CPU-s")

    def _wait_wave(self, wave_ids: set[str], since: float) -> None:
        """Until every ``ok`` webhook came, or none for a while."""
        deadline = since + self.args.wave_timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            arrived = self.receiver.arrivals("ok", since).keys() & wave_ids
            if len(arrived) >= len(wave_ids):
                return
            if len(arrived) != last_count:
                last_count, last_change = len(arrived), time.monotonic()
            elif time.monotonic() - last_change > WAVE_STALL:
                LOG.info(
                    "wave: %d webhooks, no new one for %.0f s",
                    last_count,
                    WAVE_STALL,
                )
                return
            time.sleep(0.1)

    def detection(self, alarms: list[Alarm], probe: Alarm) -> None:
        """Crossings without load, then under background ingest."""
        args = self.args
        # The phases use different alarms (an alarm left in ``alarm`` by
        # one phase would have to be cleared first in the next).
        n_idle = max(1, min(len(alarms) // 4, 8))
        n_busy = max(1, min(len(alarms) // 4, args.in_flight * 8))
        idlers = alarms[:n_idle]
        detectors = alarms[n_idle : n_idle + n_busy]
        loaded = [a.metric_id for a in alarms[n_idle + n_busy :]]

        def crossings(
            subset: list[Alarm], count: int, at_once: int
        ) -> Detection:
            return detect(
                self.client,
                self.receiver,
                subset,
                count,
                at_once,
                args.miss_after,
                args.poll_interval,
                args.phase_limit,
            )

        if args.idle_crossings:
            LOG.info("%d crossings without load", args.idle_crossings)
            idle = crossings(idlers, args.idle_crossings, 1)
            _detection_rows(
                self.add,
                "detection, no background load",
                idle,
                None,
                commit_lags(self.client, idle),
            )

        wl = (
            f"detection, {len(alarms)} alarms, "
            f"{args.rate:,.0f} measures/s target ingest"
        )
        load = Load(
            self.url,
            loaded or [probe.metric_id],
            args.rate,
            args.load_processes,
            args.batch_metrics,
            args.batch_points,
        )
        LOG.info("background ingest at %s measures/s", args.rate)
        load.start()
        started = time.monotonic()
        while load.counts() == (0, 0) and time.monotonic() - started < 60:
            time.sleep(0.05)
        time.sleep(args.warmup)
        self.cpu_since()
        accepted0, failed0 = load.counts()
        mark = time.monotonic()
        busy = crossings(detectors, args.crossings, args.in_flight)
        elapsed = time.monotonic() - mark
        accepted1, failed1 = load.counts()
        load_cpu = self.cpu_since()
        rss, pss = tree_memory_mib(self.proc.pid)
        loader_cpu = load.stop()
        measures = accepted1 - accepted0
        _detection_rows(
            self.add, wl, busy, args.crossings, commit_lags(self.client, busy)
        )
        self.add(wl, "background ingest achieved", measures / elapsed, "/s")
        self.add(
            wl, "background measures refused or failed", failed1 - failed0, ""
        )
        self.add(wl, "alarmer CPU (all processes)", load_cpu, "CPU-s")
        self.add(wl, "alarmer cores busy", load_cpu / elapsed, "cores")
        self.add(
            wl,
            "alarmer CPU per 1,000 measures",
            load_cpu / (measures / 1000) if measures else math.nan,
            "CPU-s",
        )
        self.add(wl, "load generators' CPU (whole run)", loader_cpu, "CPU-s")
        wl = "memory of alarmer (all processes)"
        self.add(wl, "RSS, summed over the process tree", rss, "MiB")
        self.add(
            wl, "PSS, summed over the process tree", pss, "MiB", ("<=", 300)
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; the result document."""
    info: dict[str, Any] = {
        "command": " ".join(["benchmarks/bench_e2e.py", *sys.argv[1:]]),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "loadavg_start": os.getloadavg(),
        "backend": "postgresql" if args.database else "sqlite",
        "alarms": args.alarms,
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    receiver = Receiver()
    receiver.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-e2e-") as workdir,
            own_database(args.database) as database,
            running_serve(workdir, database, args.serve_log) as (url, proc),
        ):
            bench = Run(args, url, proc, receiver)
            if database:
                bench.info["database"] = sa_database_name(database)
            alarms, probe = bench.setup()
            bench.mass_transition(alarms, probe)
            bench.detection(alarms, probe)
            LOG.info("stopping alarmer serve")
    finally:
        receiver.stop()
    info.update(bench.info)
    info["loadavg_end"] = os.getloadavg()
    rows = bench.rows
    return {
        "info": info,
        "rows": [
            {
                "workload": r.workload,
                "figure": r.figure,
                "value": None
                if r.value is None or math.isnan(r.value)
                else r.value,
                "unit": r.unit,
                "target": r.target,
                "met": r.met,
            }
            for r in rows
        ],
        "_rows": rows,
    }


def _detection_rows(
    add: Callable[..., None],
    workload: str,
    result: Detection,
    required: int | None,
    stages: Stages | None = None,
) -> None:
    """The rows of one detection phase (targets when *required*)."""
    targets = required is not None
    if stages is not None:
        for name, values in (
            ("stage: POST -> 202", result.ack_ms),
            ("stage: POST -> transition committed", stages.commit_ms),
            (
                "stage: POST -> committed, of the missed crossings",
                stages.late_commit_ms,
            ),
        ):
            if not values:
                continue  # e.g. no crossing was missed
            for q in (50, 99):
                add(workload, f"{name} p{q}", percentile(values, q), "ms")
        add(
            workload,
            "stage: missed crossings never committed as alarm",
            stages.never,
            "",
        )
    for name, values in (
        ("POST -> state visible", result.state_ms),
        ("POST -> webhook received", result.webhook_ms),
    ):
        for q, bound in ((50, 20.0), (99, 100.0)):
            add(
                workload,
                f"{name} p{q}",
                percentile(values, q),
                "ms",
                ("<=", bound) if targets else None,
            )
        add(workload, f"{name} max", max(values, default=math.nan), "ms")
    add(
        workload,
        "crossings",
        result.crossings,
        "",
        (">=", float(required)) if required is not None else None,
    )
    add(
        workload,
        "missed crossings (no state change within the limit)",
        result.missed,
        "",
        ("<=", 0.0) if targets else None,
    )
    add(workload, "webhooks missing", result.webhooks_missed, "")
    add(
        workload,
        "clearing points sent again (not seen within the limit)",
        result.clears_retried,
        "",
    )
    add(
        workload,
        "alarms retired (never cleared, or a request failed)",
        result.retired,
        "",
    )


def render(document: dict[str, Any]) -> str:
    """The table: workload | figure | target | met?"""
    info = document["info"]
    rows: list[Row] = document["_rows"]
    out = [
        f"# {info['command']}",
        f"# backend {info['backend']}, {info['cores']} cores "
        f"({info['cpu']}), load average at start "
        + " ".join(f"{x:.2f}" for x in info["loadavg_start"])
        + ", at end "
        + " ".join(f"{x:.2f}" for x in info["loadavg_end"]),
        "",
        "| workload | figure | value | target | met? |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "**no**")
        out.append(
            f"| {row.workload} | {row.figure} | {row.shown()} "
            f"| {row.target} | {met} |"
        )
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--quick`` lowers the defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alarms", type=int, help="alarms (5000)")
    parser.add_argument(
        "--rate", type=float, help="background measures/s (20000)"
    )
    parser.add_argument(
        "--crossings", type=int, help="crossings under load (500)"
    )
    parser.add_argument(
        "--idle-crossings",
        type=int,
        help="crossings without background load first (100; 0: skip)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=4,
        help="crossings in flight at once under load (4)",
    )
    parser.add_argument(
        "--load-processes", type=int, default=2, help="load processes (2)"
    )
    parser.add_argument(
        "--batch-metrics",
        type=int,
        default=250,
        help="metrics per background batch request (250)",
    )
    parser.add_argument(
        "--batch-points",
        type=int,
        default=4,
        help="points per metric in a background request (4)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds of background load before crossings (3)",
    )
    parser.add_argument(
        "--miss-after",
        type=float,
        default=5.0,
        help="a crossing not visible after this many seconds is missed",
    )
    parser.add_argument(
        "--phase-limit",
        type=float,
        help="seconds after which a detection phase starts no crossing (600)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.002,
        help="seconds between two state reads of a crossed alarm",
    )
    parser.add_argument(
        "--wave-timeout",
        type=float,
        help="seconds to wait for the mass transition to finish (120)",
    )
    parser.add_argument(
        "--create-threads",
        type=int,
        default=8,
        help="concurrent clients creating the alarms (8)",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="PostgreSQL server (postgresql[+psycopg]://...): the "
        "benchmark creates its own database there and drops it after; "
        "default: SQLite in the temporary data directory",
    )
    parser.add_argument(
        "--serve-log",
        metavar="PATH",
        help="keep a copy of the service's log at PATH",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small smoke run (50 alarms, 2,000 measures/s, 20 crossings)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the result as JSON to PATH ('-' or no PATH: to "
        "standard output instead of the table)",
    )
    args = parser.parse_args(argv)
    quick = {
        "alarms": 50,
        "rate": 2000.0,
        "crossings": 20,
        "idle_crossings": 5,
        "warmup": 0.5,
        "wave_timeout": 20.0,
        "phase_limit": 60.0,
    }
    full = {
        "alarms": 5000,
        "rate": 20000.0,
        "crossings": 500,
        "idle_crossings": 100,
        "warmup": 3.0,
        "wave_timeout": 120.0,
        "phase_limit": 600.0,
    }
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.alarms < 2:
        parser.error("--alarms: at least 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table (or JSON)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    document = run(args)
    rows = document.pop("_rows")
    if args.json and args.json != "-":
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
    if args.json == "-":
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        document["_rows"] = rows
        sys.stdout.write(render(document) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
