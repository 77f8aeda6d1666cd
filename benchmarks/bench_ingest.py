"""End-to-end HTTP ingest: alarmer's API beside Gnocchi 4.7.1's, same run.

Starts ``alarmer serve`` (embedded defaults in a temporary data
directory: SQLite index, file series storage) as a separate process, and
Gnocchi 4.7.1 (its API under gunicorn with one worker per core, and
``gnocchi-metricd``; PostgreSQL index on 127.0.0.1, file storage, basic
auth), then drives each with client processes over loopback HTTP:

* ``batch``: ``POST /v1/batch/metrics/measures``, 1,000 metrics x 5
  points per request (each client has its own 1,000 metrics);
* ``single``: ``POST /v1/metric/<id>/measures``, 5,000 points per
  request (each client has its own metric).

Every request carries new points (one per second, ISO 8601 UTC strings,
moving forward); one untimed request per client first creates the
metrics' logs.  alarmer's 202 comes once the points are aggregated and
stored, and only the measures it reports stored are counted.  Gnocchi's
202 queues them for metricd: its run ends when metricd's backlog is
empty (``/v1/status``), and that is the time its rate is counted over.

Printed for each: measures/s (wall clock), the server's CPU-seconds per
1,000 measures (every process of the server, from ``/proc``), the load
average at the start and the end, the core count; the targets are beside
them.  Gnocchi's virtual environment is built on first use, outside the
repository (``~/.cache/alarmer-bench/gnocchi-4.7.1``, ``pip install
"gnocchi[postgresql,file]==4.7.1" gunicorn psycopg2-binary``)::

    .venv/bin/python benchmarks/bench_ingest.py [--seconds 20]
        [--clients 4] [--no-gnocchi] [--workload batch --workload single]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import requests

LOG = logging.getLogger("bench_ingest")

GNOCCHI_VENV = Path.home() / ".cache" / "alarmer-bench" / "gnocchi-4.7.1"
GNOCCHI_PACKAGES = [
    "gnocchi[postgresql,file]==4.7.1",
    "gunicorn",
    "psycopg2-binary",
]
PG_URL = "postgresql://postgres@127.0.0.1:5432"

#: (metrics per request, points per metric, target measures/s).
WORKLOADS = {
    "batch": (1000, 5, 300_000),
    "single": (1, 5000, 500_000),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, headers: dict[str, str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url, headers=headers, timeout=5).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {seconds} s")
        time.sleep(0.3)


def tree_cpu(pids: list[int]) -> float:
    """CPU-seconds (user + system) of *pids* and all their descendants,
    those already reaped included."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    total += t.user + t.system
                    total += t.children_user + t.children_system
    return total


class Target:
    """A server under test."""

    name = ""
    headers: dict[str, str] = {}
    base = ""
    procs: list[subprocess.Popen[bytes]]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def create_metrics(self, n: int) -> list[str]:
        http = requests.Session()
        http.headers.update(self.headers)
        ids = []
        for _ in range(n):
            r = http.post(
                f"{self.base}/v1/metric",
                json={"archive_policy_name": "medium"},
                timeout=30,
            )
            r.raise_for_status()
            ids.append(r.json()["id"])
        return ids

    def backlog(self) -> int:
        """Measures received but not yet aggregated."""
        return 0

    def stop(self) -> None:
        """Stop every process of the server (each its own group)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # Workers left behind by their parent.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


class Alarmer(Target):
    """``alarmer serve`` on a temporary data directory."""

    name = "alarmer"

    def __init__(self, tmp: Path, command: str) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {
            "X-User-Id": "bench",
            "X-Project-Id": "bench",
            "X-Roles": "admin",
            "Content-Type": "application/json",
        }
        log = (tmp / "alarmer.log").open("wb")
        code = "import sys; from alarmer.cli import main; sys.exit(main())"
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    code,
                    command,
                    "--data-dir",
                    str(tmp / "alarmer"),
                    "--port",
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ]
        wait_http(f"{self.base}/v1/archive_policy", self.headers, 60)


class Gnocchi(Target):
    """Gnocchi 4.7.1: API under gunicorn, metricd, PostgreSQL, files."""

    name = "gnocchi 4.7.1"

    def __init__(self, tmp: Path, venv: Path, workers: int) -> None:
        ensure_gnocchi(venv)
        self.db = f"gnocchi_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import psycopg2, sys; c = psycopg2.connect(sys.argv[1]); "
                "c.autocommit = True; c.cursor().execute("
                "'CREATE DATABASE ' + sys.argv[2])",
                f"{PG_URL}/postgres",
                self.db,
            ],
            check=True,
        )
        root = tmp / "gnocchi"
        root.mkdir()
        conf = root / "gnocchi.conf"
        conf.write_text(
            "[DEFAULT]\ndebug = false\n"
            "[api]\nauth_mode = basic\n"
            f"[indexer]\nurl = {PG_URL}/{self.db}\n"
            f"[storage]\ndriver = file\nfile_basepath = {root / 'storage'}\n"
            f"[metricd]\nworkers = {workers}\n"
            "metric_processing_delay = 1\n"
        )
        (root / "wsgi_app.py").write_text(
            "import sys\n"
            f"sys.argv = ['gnocchi-api', '--config-file', '{conf}']\n"
            "from gnocchi.rest.wsgi import application  # noqa\n"
        )
        bin_ = venv / "bin"
        log = (root / "gnocchi.log").open("wb")
        subprocess.run(
            [str(bin_ / "gnocchi-upgrade"), "--config-file", str(conf)],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        token = base64.b64encode(b"admin:").decode()
        self.headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
        }
        self.procs = [
            subprocess.Popen(
                [
                    str(bin_ / "gunicorn"),
                    "--chdir",
                    str(root),
                    "--workers",
                    str(workers),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--timeout",
                    "120",
                    "wsgi_app:application",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
            subprocess.Popen(
                [str(bin_ / "gnocchi-metricd"), "--config-file", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
        ]
        wait_http(f"{self.base}/v1/archive_policy", self.headers, 90)
        self.venv = venv

    def backlog(self) -> int:
        r = requests.get(
            f"{self.base}/v1/status", headers=self.headers, timeout=30
        )
        r.raise_for_status()
        return int(r.json()["storage"]["summary"]["measures"])

    def stop(self) -> None:
        super().stop()
        subprocess.run(
            [
                str(self.venv / "bin" / "python"),
                "-c",
                "import psycopg2, sys; c = psycopg2.connect(sys.argv[1]); "
                "c.autocommit = True; c.cursor().execute("
                "'DROP DATABASE IF EXISTS ' + sys.argv[2])",
                f"{PG_URL}/postgres",
                self.db,
            ],
            check=False,
        )


def ensure_gnocchi(venv: Path) -> None:
    """Build Gnocchi's virtual environment once (kept out of the repo)."""
    if (venv / "bin" / "gnocchi-metricd").exists() and (
        venv / "bin" / "gunicorn"
    ).exists():
        return
    LOG.info("building %s", venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", *GNOCCHI_PACKAGES],
        check=True,
    )


def client(
    base: str,
    headers: dict[str, str],
    metric_ids: list[str],
    points: int,
    start_s: int,
    go_at: float,
    stop_at: float,
    out: Any,
) -> None:
    """Push new points until *stop_at*; put (acknowledged, sent, errors)."""
    http = requests.Session()
    http.headers.update(headers)
    values = np.round(np.random.default_rng().random(points) * 100, 3)
    values_list = values.tolist()
    single = len(metric_ids) == 1
    url = (
        f"{base}/v1/metric/{metric_ids[0]}/measures"
        if single
        else f"{base}/v1/batch/metrics/measures"
    )
    acked = sent = errors = 0
    second = start_s
    while time.time() < go_at:
        time.sleep(0.001)
    while time.time() < stop_at:
        stamps = np.datetime_as_string(
            np.datetime64(second, "s") + np.arange(points),
            unit="s",
        ).tolist()
        second += points
        measures = [
            {"timestamp": f"{t}Z", "value": v}
            for t, v in zip(stamps, values_list, strict=True)
        ]
        body = orjson.dumps(
            measures if single else dict.fromkeys(metric_ids, measures)
        )
        n = points * len(metric_ids)
        r = http.post(url, data=body, timeout=120)
        sent += n
        if r.status_code != 202:
            errors += 1
            continue
        if r.content:
            acked += int(r.json()["measures_stored"])
        else:
            acked += n
    out.put((acked, sent, errors))


def warm_up(
    target: Target,
    metrics: list[list[str]],
    points: int,
    first_s: int,
    drain_timeout: float,
) -> None:
    """One request per client's metrics (their logs created), not timed;
    returns once the server has aggregated it."""
    http = requests.Session()
    http.headers.update(target.headers)
    stamps = np.datetime_as_string(
        np.datetime64(first_s, "s") + np.arange(points), unit="s"
    ).tolist()
    measures = [{"timestamp": f"{t}Z", "value": 1.0} for t in stamps]
    for ids in metrics:
        if len(ids) == 1:
            url = f"{target.base}/v1/metric/{ids[0]}/measures"
            body = orjson.dumps(measures)
        else:
            url = f"{target.base}/v1/batch/metrics/measures"
            body = orjson.dumps(dict.fromkeys(ids, measures))
        http.post(url, data=body, timeout=300).raise_for_status()
    deadline = time.time() + drain_timeout
    while target.backlog() > 0 and time.time() < deadline:
        time.sleep(0.2)


def run_workload(
    target: Target,
    workload: str,
    clients: int,
    seconds: float,
    drain_timeout: float,
) -> dict[str, Any]:
    """Push for *seconds*; wait at most *drain_timeout* more for the
    server to aggregate the backlog (when it does not, the rate counts
    every measure sent: an upper bound)."""
    per_request, points, _ = WORKLOADS[workload]
    metrics = [target.create_metrics(per_request) for _ in range(clients)]
    start_s = int(time.time()) - 300 * 86400
    warm_up(target, metrics, points, start_s - points, drain_timeout)
    queue: multiprocessing.Queue[tuple[int, int, int]] = (
        multiprocessing.Queue()
    )
    load_before = os.getloadavg()
    cpu_before = tree_cpu(target.pids())
    go_at = time.time() + 1.0
    stop_at = go_at + seconds
    procs = [
        multiprocessing.Process(
            target=client,
            args=(
                target.base,
                target.headers,
                metrics[i],
                points,
                start_s,
                go_at,
                stop_at,
                queue,
            ),
        )
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    sent = sum(r[1] for r in results)
    # Gnocchi: done once metricd has aggregated everything received.
    drained = True
    while target.backlog() > 0:
        if time.time() > stop_at + drain_timeout:
            drained = False
            break
        time.sleep(0.2)
    end = time.time()
    cpu = tree_cpu(target.pids()) - cpu_before
    acked = sum(r[0] for r in results)
    if not drained:
        acked = sent
    return {
        "measures": acked,
        "sent": sent,
        "errors": sum(r[2] for r in results),
        "rate": acked / (end - go_at),
        "cpu_per_1000": cpu / acked * 1000 if acked else float("nan"),
        "load": (load_before[0], os.getloadavg()[0]),
        "wall": end - go_at,
        "drained": drained,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--workload", action="append", choices=sorted(WORKLOADS)
    )
    parser.add_argument("--no-gnocchi", action="store_true")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300,
        help="seconds to wait for Gnocchi's metricd after the pushes",
    )
    parser.add_argument(
        "--command",
        default="serve",
        choices=["serve", "api"],
        help="alarmer command to start (serve: the one-command start)",
    )
    parser.add_argument("--gnocchi-venv", type=Path, default=GNOCCHI_VENV)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workloads = args.workload or ["batch", "single"]
    cores = os.cpu_count() or 1
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp_name:
        tmp = Path(tmp_name)
        makers = [("alarmer", lambda: Alarmer(tmp, args.command))]
        if not args.no_gnocchi:
            makers.append(
                ("gnocchi", lambda: Gnocchi(tmp, args.gnocchi_venv, cores))
            )
        for name, make in makers:
            target = make()
            try:
                for workload in workloads:
                    LOG.info("%s: %s ...", name, workload)
                    row = run_workload(
                        target,
                        workload,
                        args.clients,
                        args.seconds,
                        args.drain_timeout,
                    )
                    rows[(name, workload)] = row
                    LOG.info(
                        "%s: %s: %.0f measures/s, %.4f CPU-s per 1,000, "
                        "load %.1f-%.1f, %d errors",
                        name,
                        workload,
                        row["rate"],
                        row["cpu_per_1000"],
                        *row["load"],
                        row["errors"],
                    )
            finally:
                target.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows, workloads, cores, args)


def print_table(
    rows: dict[tuple[str, str], dict[str, Any]],
    workloads: list[str],
    cores: int,
    args: argparse.Namespace,
) -> None:
    print(
        f"\n{cores} cores, {args.clients} client processes, "
        f"{args.seconds:g} s per workload, alarmer `{args.command}`\n"
    )
    print(
        "| workload | target | alarmer measures/s | alarmer CPU-s / 1,000 "
        "| Gnocchi 4.7.1 measures/s (aggregated) | Gnocchi CPU-s / 1,000 "
        "| alarmer / Gnocchi | load avg start-end | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for workload in workloads:
        per_request, points, target = WORKLOADS[workload]
        ours = rows[("alarmer", workload)]
        theirs = rows.get(("gnocchi", workload))
        label = f"{workload}: {per_request} metric(s) x {points} points"
        if theirs:
            gn = f"{theirs['rate']:,.0f}"
            if not theirs["drained"]:
                gn = f"< {gn} (backlog left after the drain timeout)"
            gn_cpu = f"{theirs['cpu_per_1000']:.4f}"
            ratio = f"{ours['rate'] / theirs['rate']:.2f}x (>= 2x)"
            if not theirs["drained"]:
                ratio = "> " + ratio
            load = (
                f"{ours['load'][0]:.1f}-{ours['load'][1]:.1f} / "
                f"{theirs['load'][0]:.1f}-{theirs['load'][1]:.1f}"
            )
            errors = f"{ours['errors']} / {theirs['errors']}"
        else:
            gn = gn_cpu = ratio = "-"
            load = f"{ours['load'][0]:.1f}-{ours['load'][1]:.1f}"
            errors = str(ours["errors"])
        print(
            f"| {label} | >= {target:,} | {ours['rate']:,.0f} "
            f"| {ours['cpu_per_1000']:.4f} | {gn} | {gn_cpu} | {ratio} "
            f"| {load} | {errors} |"
        )


if __name__ == "__main__":
    main()
