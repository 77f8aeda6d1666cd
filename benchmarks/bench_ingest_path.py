"""The ingest request path in process: measures per CPU-second.

Each round runs in a fresh process: the ``/v1`` app (SQLite index, file
series storage in a temporary directory) under Flask's test client, the
metrics created (``medium`` policy) and one untimed request that creates
their logs, then ``--requests`` timed requests, each carrying new points
(ISO 8601 UTC strings, one per second, moving forward):

* ``batch``: ``POST /v1/batch/metrics/measures``, 1,000 metrics x 5
  points;
* ``single``: ``POST /v1/metric/<id>/measures``, 5,000 points.

What is measured is the CPU time of the process over the timed requests
(JSON decode, validation, policy lookup, aggregation, log appends,
answer; no HTTP server, no socket, no client): measures per CPU-second
and per wall-clock second.  With ``--baseline DIR`` (another checkout of
the code), rounds alternate between that tree and this one, so both see
the same load.  ``--profile FILE`` writes a cProfile of one round of
this tree instead.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_ingest_path.py \\
        [--workload batch] [--rounds 6] [--requests 20] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADERS = {
    "X-User-Id": "bench",
    "X-Project-Id": "bench",
    "X-Roles": "admin",
    "Content-Type": "application/json",
}
#: (metrics per request, points per metric).
WORKLOADS = {"batch": (1000, 5), "single": (1, 5000)}
HERE = Path(__file__).resolve().parent.parent


def _bodies(ids: list[str], points: int, start_s: int, count: int) -> list:
    import numpy as np
    import orjson

    values = np.round(np.random.default_rng(1).random(points) * 100, 3)
    bodies = []
    second = start_s
    for _ in range(count):
        stamps = np.datetime_as_string(
            np.datetime64(second, "s") + np.arange(points), unit="s"
        ).tolist()
        second += points
        measures = [
            {"timestamp": f"{t}Z", "value": v}
            for t, v in zip(stamps, values.tolist(), strict=True)
        ]
        bodies.append(
            orjson.dumps(
                measures if len(ids) == 1 else dict.fromkeys(ids, measures)
            )
        )
    return bodies


def one_round(workload: str, requests: int, profile: str | None) -> dict:
    """Run one round in this process; the figures as a dict."""
    from alarmer import conf as aconf
    from alarmer import runtime
    from api.app import create_app

    per_request, points = WORKLOADS[workload]
    with tempfile.TemporaryDirectory(prefix="alarmer-bench-") as tmp:
        conf = aconf.make_conf(overrides={"DEFAULT": {"data_dir": tmp}})
        rt = runtime.build(conf, migrate=True)
        try:
            client = create_app(rt).test_client()
            ids = []
            for _ in range(per_request):
                r = client.post(
                    "/v1/metric",
                    json={"archive_policy_name": "medium"},
                    headers=HEADERS,
                )
                assert r.status_code == 201, r.data
                ids.append(r.get_json()["id"])
            url = (
                f"/v1/metric/{ids[0]}/measures"
                if per_request == 1
                else "/v1/batch/metrics/measures"
            )
            start_s = int(time.time()) - 300 * 86400
            bodies = _bodies(ids, points, start_s, requests + 1)

            def post(body: bytes) -> int:
                r = client.post(url, data=body, headers=HEADERS)
                assert r.status_code == 202, r.data
                return int(r.get_json()["measures_stored"])

            post(bodies[0])  # creates the logs, untimed
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile(time.process_time)
                profiler.enable()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            stored = sum(post(body) for body in bodies[1:])
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
        finally:
            rt.close()
    assert stored == requests * per_request * points, stored
    return {
        "measures": stored,
        "cpu": cpu,
        "wall": wall,
        "per_cpu_s": stored / cpu,
        "per_s": stored / wall,
        "load": os.getloadavg()[0],
    }


def spawn(tree: Path, workload: str, requests: int) -> dict:
    """One round in a fresh process running the code of *tree*."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--round",
            "--workload",
            workload,
            "--requests",
            str(requests),
        ],
        env=env,
        cwd=str(tree),
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workload", choices=sorted(WORKLOADS), action="append"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workloads = args.workload or ["batch", "single"]
    if args.round or args.profile:
        result = one_round(workloads[0], args.requests, args.profile)
        print(json.dumps(result))
        return
    trees = [("this", HERE)]
    if args.baseline is not None:
        trees.insert(0, ("baseline", args.baseline.resolve()))
    print(
        f"{os.cpu_count()} cores, load average at start "
        f"{os.getloadavg()[0]:.1f}; {args.rounds} rounds of "
        f"{args.requests} requests per tree and workload\n"
    )
    print(
        "| workload | tree | round | measures/CPU-s | measures/s (wall) "
        "| CPU-s / 1,000 | load |"
    )
    print("|---|---|---|---|---|---|---|")
    summary: dict[tuple[str, str], list[float]] = {}
    for workload in workloads:
        for n in range(args.rounds):
            for name, tree in trees:
                r = spawn(tree, workload, args.requests)
                summary.setdefault((workload, name), []).append(r["per_cpu_s"])
                print(
                    f"| {workload} | {name} | {n + 1} | {r['per_cpu_s']:,.0f} "
                    f"| {r['per_s']:,.0f} "
                    f"| {r['cpu'] / r['measures'] * 1000:.4f} "
                    f"| {r['load']:.1f} |",
                    flush=True,
                )
    print("\n| workload | tree | median measures/CPU-s |")
    print("|---|---|---|")
    for (workload, name), rates in summary.items():
        print(f"| {workload} | {name} | {statistics.median(rates):,.0f} |")


if __name__ == "__main__":
    main()
