"""Memory of ``alarmer serve`` with 5,000 alarms, all processes together.

Starts the real command in a temporary directory (embedded defaults:
SQLite, ``file`` series driver, ``file://`` coordination) with alarms
and metrics created beforehand, lets the evaluator evaluate every alarm
at least once while measures are pushed through the API, then adds up
the memory of the supervisor and of every child::

    python benchmarks/bench_serve_memory.py [--alarms 5000]
        [--api-workers 2 --api-workers 1 ...] [--interval 10]

Printed per run: the resident set size (RSS) and the proportional set
size (PSS) of each process, and their sums.  The children are forked
from a supervisor that loaded their modules, so most of their pages are
shared: the sum of RSS counts every shared page once per process, while
the sum of PSS counts it once in total -- the memory the processes take
together, which is what the budget (300 MiB for 5,000 alarms) is
checked against.  The sum of RSS is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from bench_evaluator import (
    build,
    by_metrics_rule,
    insert_alarms,
    make_metrics,
    resources_rule,
)

ALARMER = str(Path(sys.executable).with_name("alarmer"))
H = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "admin"}
BUDGET_MIB = 300.0


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of *pid* in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except FileNotFoundError:
        return []


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as handle:
        return handle.read().strip()


def prepare(tmp: str, alarms: int) -> list[str]:
    """Metrics with data, and *alarms* alarms (half by resource)."""
    rt = build(tmp)
    try:
        metrics = make_metrics(rt, max(1, alarms // 10))
        rules = []
        for i in range(alarms):
            resource_id, metric_id = metrics[i % len(metrics)]
            if i % 2:
                rules.append(
                    (
                        "gnocchi_resources_threshold",
                        resources_rule(resource_id, 50.0 + i % 9),
                    )
                )
            else:
                rules.append(
                    (
                        "gnocchi_aggregation_by_metrics_threshold",
                        by_metrics_rule([metric_id], 50.0 + i % 9),
                    )
                )
        insert_alarms(rt, rules)
        return [metric_id for _rid, metric_id in metrics]
    finally:
        rt.close()


def run_once(
    alarms: int, api_workers: int, interval: int, port: int
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="alarmer-mem-") as tmp:
        metric_ids = prepare(tmp, alarms)
        conf = Path(tmp) / "alarmer.conf"
        conf.write_text(
            f"[DEFAULT]\ndata_dir = {tmp}\nlog_level = INFO\n"
            f"[api]\nworkers = {api_workers}\nport = {port}\n"
            f"[evaluator]\nevaluation_interval = {interval}\n"
        )
        log_path = Path(tmp) / "serve.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [ALARMER, "serve", "--config-file", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 180
            pattern = re.compile(r"evaluator started: (\d+) alarms owned")
            while True:
                assert proc.poll() is None, log_path.read_text()
                found = pattern.findall(log_path.read_text())
                if found and sum(map(int, found)) >= alarms:
                    break
                assert time.monotonic() < deadline, "serve never ready"
                time.sleep(0.5)
            url = f"http://127.0.0.1:{port}"
            # Every alarm evaluated at least once, measures arriving.
            end = time.monotonic() + interval * 1.5
            pushed = 0
            while time.monotonic() < end:
                now = time.time()
                batch = {
                    m: [{"timestamp": now, "value": 42.0}]
                    for m in metric_ids[: min(len(metric_ids), 200)]
                }
                r = requests.post(
                    f"{url}/v1/batch/metrics/measures",
                    json=batch,
                    headers=H,
                    timeout=60,
                )
                assert r.status_code == 202, r.text
                pushed += len(batch)
                time.sleep(0.2)
            pids = [proc.pid, *children_of(proc.pid)]
            rows = []
            for pid in pids:
                rss, pss = memory_kib(pid)
                rows.append((comm(pid), pid, rss / 1024, pss / 1024))
            return {
                "api_workers": api_workers,
                "rows": rows,
                "rss": sum(r[2] for r in rows),
                "pss": sum(r[3] for r in rows),
                "pushed": pushed,
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", type=int, default=5000)
    parser.add_argument("--api-workers", type=int, action="append", default=[])
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--port", type=int, default=18777)
    args = parser.parse_args(argv)
    results = [
        run_once(args.alarms, workers, args.interval, args.port)
        for workers in (args.api_workers or [2])
    ]
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    print(
        f"alarms {args.alarms}, cores {os.cpu_count()}, "
        f"load average {' '.join(load)}"
    )
    print(
        f"{'[api] workers':>13} {'process':<20} {'pid':>7} "
        f"{'RSS MiB':>8} {'PSS MiB':>8}"
    )
    ok = True
    for result in results:
        for name, pid, rss, pss in result["rows"]:  # type: ignore[attr-defined]
            print(
                f"{result['api_workers']:>13} {name:<20} {pid:>7} "
                f"{rss:>8.1f} {pss:>8.1f}"
            )
        verdict = "within" if result["pss"] <= BUDGET_MIB else "OVER"
        ok = ok and result["pss"] <= BUDGET_MIB
        print(
            f"{result['api_workers']:>13} {'all processes':<20} {'':>7} "
            f"{result['rss']:>8.1f} {result['pss']:>8.1f}   "
            f"target <= {BUDGET_MIB:.0f} MiB (PSS): {verdict}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
