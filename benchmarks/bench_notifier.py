"""Notifier benchmark: throughput and commit-to-receipt latency.

Usage::

    .venv/bin/python benchmarks/bench_notifier.py [--db URL] [-n 5000]

* **throughput**: N outbox rows (one webhook each, spread over alarms of
  10 notifications) are committed first, then one notifier process
  (a :class:`NotifierService`, as ``alarmer-notifier`` runs it) delivers
  them to a local receiver running in another process; the figure is
  deliveries per second until the receiver has them all.
  The deliveries per CPU-second of the notifier process (all its threads)
  tell what one process does when it has a core to itself, which a
  shared machine rarely gives.
* **latency**: with the notifier running in the same process as the
  writer, outbox rows are committed one by one at a steady rate; the
  figure is the time from the end of the commit to the receipt of the
  webhook (same host, same clock).  Measured twice: the writer calls the
  notifier's wake-up after each commit (``handed``: what a writer given
  :attr:`NotifierService.wakeup` does), and it does not (``watched``: the
  notifier learns about the commit from its watcher, NOTIFY on
  PostgreSQL or the outbox probe on SQLite, as for the evaluator of
  ``alarmer serve``).
* **drain** (``--drain``): the mass transition.  N queued outbox rows
  (one http webhook each) are drained by a :class:`NotifierService` in
  a child process, to a threaded receiver (``http.server``, HTTP/1.1
  keep-alive) in another process; the child reports deliveries per
  second, its CPU-seconds per 1,000 deliveries and the load average.
  With ``--baseline DIR`` (a checkout of another revision) the same
  drain runs with that revision's code too, alternating with this one
  round after round, so that both see the same machine load.

The receiver is a minimal asyncio HTTP/1.1 server (keep-alive) so that
it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from argparse import SUPPRESS
from typing import Any

# ALARMER_BENCH_TREE: measure the code of another checkout (--baseline).
sys.path.insert(
    0,
    os.environ.get("ALARMER_BENCH_TREE")
    or os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
)

from alarmer import conf as aconf
from alarmer import runtime, timeutils
from alarmer.alarms.tables import Notification
from notifiers import tables as models
from notifiers.service import NotifierService


def _receiver(port_queue: multiprocessing.Queue) -> None:
    received: dict[str, float] = {}

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.time()
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                if method == "GET" and path == "/count":
                    body = str(len(received)).encode()
                elif method == "GET" and path == "/stats":
                    body = json.dumps(received).encode()
                else:
                    received.setdefault(headers.get("webhook-id", ""), now)
                    body = b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _count(port: int) -> int:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/count", timeout=30
    ) as response:
        return int(response.read())


def _stats(port: int) -> dict[str, float]:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/stats", timeout=30
    ) as response:
        return json.loads(response.read())


def _conf(db_url: str | None, data_dir: str, **notifier):
    overrides = {
        "DEFAULT": {"data_dir": data_dir},
        "notifier": {"allowed_networks": ["127.0.0.0/8"], **notifier},
    }
    if db_url:
        overrides["database"] = {"connection": db_url}
    return aconf.make_conf(overrides=overrides)


def _notification(alarm_id: str, seq: int, url: str) -> Notification:
    return Notification(
        alarm_id=alarm_id,
        seq=seq,
        alarm_name="bench",
        severity="low",
        previous="ok",
        current="alarm",
        reason="benchmark",
        reason_data={"type": "threshold"},
        actions=[url],
        project_id="bench",
        created_at=timeutils.utcnow(),
    )


def throughput(
    db_url, data_dir, port, count, workers, per_host
) -> dict[str, float]:
    rt = runtime.build(
        _conf(
            db_url,
            data_dir,
            workers=workers,
            max_inflight_per_host=per_host,
        ),
        migrate=True,
    )
    url = f"http://127.0.0.1:{port}/t"
    alarms = [str(uuid.uuid4()) for _ in range(max(1, count // 10))]
    with rt.db.session() as session:
        n = 0
        for seq in range(1, 11):
            for alarm_id in alarms:
                if n >= count:
                    break
                session.add(_notification(alarm_id, seq, url))
                n += 1
        session.commit()
    before = _count(port)
    service = NotifierService(rt)
    start = time.perf_counter()
    cpu = time.process_time()
    service.start()
    try:
        while _count(port) - before < count:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    finally:
        service.stop()
        rt.close()
    return {
        "deliveries": count,
        "seconds": elapsed,
        "per_s": count / elapsed,
        "per_cpu_s": count / cpu,
    }


def _start_receiver(target) -> tuple[multiprocessing.Process, int]:
    """Start the receiver *target* in a process; return it and its port."""
    port_queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(
        target=target, args=(port_queue,), daemon=True
    )
    proc.start()
    return proc, port_queue.get(timeout=30)


def _threaded_receiver(port_queue: multiprocessing.Queue) -> None:
    """A ``ThreadingHTTPServer`` counting the distinct webhook ids."""
    import http.server
    import threading

    received: set[str] = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with lock:
                count = len(received)
            self._answer(str(count).encode())

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            with lock:
                received.add(self.headers.get("webhook-id", ""))
            self._answer(b"")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def drain_child(db_url, count, workers, per_host) -> dict[str, float]:
    """Drain *count* queued webhooks; run in a process of its own."""
    proc, port = _start_receiver(_threaded_receiver)
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            figures = throughput(
                db_url, data_dir, port, count, workers, per_host
            )
    finally:
        proc.terminate()
    figures["cpu_s_per_1000"] = 1000.0 / figures["per_cpu_s"]
    figures["load1"] = os.getloadavg()[0]
    return figures


def _fresh_postgresql(url: str) -> tuple[str, Any]:
    import sqlalchemy as sa

    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"alarmer_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    fresh = sa.make_url(url).set(database=name)

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )
        admin.dispose()

    return fresh.render_as_string(hide_password=False), drop


def drain(args) -> None:
    """Alternate drains of this code and of ``--baseline``; print a table."""
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = [("after", here)]
    if args.baseline:
        trees.insert(0, ("before", os.path.abspath(args.baseline)))
    backends = [("sqlite", None)] + (
        [("postgresql", args.pg)] if args.pg else []
    )
    print(
        f"{'round':>5} {'backend':<10} {'code':<7} {'deliveries':>10} "
        f"{'seconds':>8} {'per s':>7} {'CPU-s/1000':>10} {'load1':>6}"
    )
    for round_no in range(args.rounds):
        for backend, url in backends:
            for label, tree in trees:
                drop = None
                if url:
                    url_used, drop = _fresh_postgresql(url)
                else:
                    url_used = ""
                try:
                    out = subprocess.run(
                        [
                            sys.executable,
                            os.path.abspath(__file__),
                            "--drain-child",
                            "--db",
                            url_used,
                            "-n",
                            str(args.n),
                            "--workers",
                            str(args.workers),
                            "--per-host",
                            str(args.per_host),
                        ],
                        env={**os.environ, "ALARMER_BENCH_TREE": tree},
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                finally:
                    if drop is not None:
                        drop()
                f = json.loads(out.strip().splitlines()[-1])
                print(
                    f"{round_no + 1:>5} {backend:<10} {label:<7} "
                    f"{f['deliveries']:>10d} {f['seconds']:>8.2f} "
                    f"{f['per_s']:>7.0f} {f['cpu_s_per_1000']:>10.3f} "
                    f"{f['load1']:>6.2f}",
                    flush=True,
                )


def latency(
    db_url, data_dir, port, count, rate, handed: bool
) -> dict[str, float]:
    rt = runtime.build(_conf(db_url, data_dir), migrate=True)
    url = f"http://127.0.0.1:{port}/l"
    service = NotifierService(rt)
    service.start()
    for watcher in service.watchers:
        watcher.ready.wait(10)
    committed: dict[str, float] = {}
    try:
        for _i in range(count):
            alarm_id = str(uuid.uuid4())
            with rt.db.session() as session:
                session.add(_notification(alarm_id, 1, url))
                session.commit()
            if handed:
                service.wakeup.outbox_changed()
            committed[models.delivery_id(alarm_id, 1, url)] = time.time()
            time.sleep(1.0 / rate)
        deadline = time.time() + 30
        while time.time() < deadline:
            got = _stats(port)
            if all(k in got for k in committed):
                break
            time.sleep(0.1)
    finally:
        service.stop()
        rt.close()
    delays = sorted(
        (got[k] - t) * 1000.0 for k, t in committed.items() if k in got
    )
    q = statistics.quantiles(delays, n=100, method="inclusive")
    return {
        "samples": len(delays),
        "p50_ms": statistics.median(delays),
        "p99_ms": q[98],
        "max_ms": delays[-1],
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_latency(port: int, alarms: int) -> dict[str, float]:
    """Transitions made by the evaluator of ``alarmer serve``.

    Each of *alarms* alarms (one metric each) goes to ``alarm`` then back
    to ``ok``; the latency of a webhook is its receipt time minus the
    ``created_at`` of its outbox row, which the evaluator stamps in the
    transaction of the transition, just before it commits.
    """
    import sqlite3
    import subprocess

    import requests

    headers = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "admin"}
    hook = f"http://127.0.0.1:{port}/serve"
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "alarmer.conf")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("[notifier]\nallowed_networks = 127.0.0.0/8\n")
        api_port = _free_port()
        api = f"http://127.0.0.1:{api_port}"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alarmer.cli",
                "serve",
                "--data-dir",
                tmp,
                "--port",
                str(api_port),
                "--config-file",
                config,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 60
            while True:
                try:
                    if requests.get(f"{api}/healthcheck", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("alarmer serve did not start")
                time.sleep(0.1)
            metrics = []
            for _ in range(alarms):
                r = requests.post(
                    f"{api}/v1/metric",
                    json={"archive_policy_name": "high"},
                    headers=headers,
                )
                r.raise_for_status()
                metric_id = r.json()["id"]
                metrics.append(metric_id)
                r = requests.post(
                    f"{api}/v2/alarms",
                    json={
                        "name": "bench",
                        "type": "gnocchi_aggregation_by_metrics_threshold",
                        "alarm_actions": [hook],
                        "ok_actions": [hook],
                        "gnocchi_aggregation_by_metrics_threshold_rule": {
                            "metrics": [metric_id],
                            "aggregation_method": "mean",
                            "threshold": 50,
                            "comparison_operator": "gt",
                            "granularity": 1,
                            "evaluation_periods": 3,
                        },
                    },
                    headers=headers,
                )
                r.raise_for_status()
            before = _count(port)
            for value in (90, 10):
                end = int(time.time()) + 1
                for metric_id in metrics:
                    body = [
                        {"timestamp": end - i, "value": value}
                        for i in range(4)
                    ]
                    requests.post(
                        f"{api}/v1/metric/{metric_id}/measures",
                        json=body,
                        headers=headers,
                    ).raise_for_status()
                    time.sleep(0.02)
                time.sleep(4.5)
            deadline = time.time() + 30
            while _count(port) - before < 2 * alarms:
                if time.time() > deadline:
                    break
                time.sleep(0.1)
            got = _stats(port)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        db = sqlite3.connect(os.path.join(tmp, "alarmer.sqlite"))
        rows = db.execute(
            "SELECT alarm_id, seq, created_at FROM notification"
        ).fetchall()
        db.close()
    delays = []
    for alarm_id, seq, created_at in rows:
        key = models.delivery_id(alarm_id, seq, hook)
        if key in got:
            created = timeutils.parse_datetime(created_at).timestamp()
            delays.append((got[key] - created) * 1000.0)
    delays.sort()
    q = statistics.quantiles(delays, n=100, method="inclusive")
    return {
        "transitions": len(rows),
        "samples": len(delays),
        "p50_ms": statistics.median(delays),
        "p99_ms": q[98],
        "max_ms": delays[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: SQLite file)")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument(
        "--serve-alarms",
        type=int,
        default=0,
        help="also measure transition -> webhook under `alarmer serve` "
        "with this many alarms (two transitions each)",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="measure the drain of -n queued webhooks only (see above)",
    )
    parser.add_argument(
        "--baseline",
        help="with --drain: a checkout of the code to compare with",
    )
    parser.add_argument(
        "--pg", help="with --drain: also on this PostgreSQL server URL"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--drain-child", action="store_true", help=SUPPRESS)
    args = parser.parse_args()
    if args.drain_child:
        figures = drain_child(
            args.db or None, args.n, args.workers, args.per_host
        )
        print(json.dumps(figures))
        return
    if args.drain:
        drain(args)
        return
    proc, port = _start_receiver(_receiver)
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            backend = (args.db or "sqlite").split(":")[0]
            t = throughput(
                args.db, data_dir, port, args.n, args.workers, args.per_host
            )
            lat = {
                handed: latency(
                    args.db,
                    data_dir,
                    port,
                    args.latency_samples,
                    args.rate,
                    handed,
                )
                for handed in (True, False)
            }
            srv = (
                serve_latency(port, args.serve_alarms)
                if args.serve_alarms
                else None
            )
    finally:
        proc.terminate()
    print(f"backend: {backend}")
    print(f"{'measure':<42} {'value':>12}")
    print(f"{'-' * 42} {'-' * 12}")
    print(f"{'deliveries':<42} {t['deliveries']:>12d}")
    print(f"{'seconds':<42} {t['seconds']:>12.2f}")
    print(f"{'deliveries per second (1 process)':<42} {t['per_s']:>12.0f}")
    print(
        f"{'deliveries per CPU-second of the notifier':<42} "
        f"{t['per_cpu_s']:>12.0f}"
    )
    for handed, figures in lat.items():
        how = "handed" if handed else "watched"
        print(
            f"{f'latency samples (commit -> received, {how})':<42} "
            f"{figures['samples']:>12d}"
        )
        print(f"{f'latency p50 (ms), {how}':<42} {figures['p50_ms']:>12.1f}")
        print(f"{f'latency p99 (ms), {how}':<42} {figures['p99_ms']:>12.1f}")
        print(f"{f'latency max (ms), {how}':<42} {figures['max_ms']:>12.1f}")
    if srv:
        print(f"{'serve: transitions':<42} {srv['transitions']:>12d}")
        print(f"{'serve: webhooks matched':<42} {srv['samples']:>12d}")
        print(
            f"{'serve: transition -> received p50 (ms)':<42} "
            f"{srv['p50_ms']:>12.1f}"
        )
        print(
            f"{'serve: transition -> received p99 (ms)':<42} "
            f"{srv['p99_ms']:>12.1f}"
        )
        print(
            f"{'serve: transition -> received max (ms)':<42} "
            f"{srv['max_ms']:>12.1f}"
        )


if __name__ == "__main__":
    main()
