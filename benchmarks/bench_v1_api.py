"""Benchmark of the v1 (Gnocchi-compatible) HTTP API.

Starts alarmer's API (waitress, SQLite index, file series driver) in this
process on a temporary data directory, drives it over real HTTP with one
keep-alive ``requests`` session and prints a table: pushes of 1 / 100 /
1000 / 5000 measures per request, a batch of 1000 metrics x 1 point, a
bounded read of one series, and ``/v1/aggregates`` mean across 10 and
100 metrics (the same workloads as the Gnocchi 4.7.1 baseline).

    .venv/bin/python benchmarks/bench_v1_api.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import requests

from alarmer import conf as aconf
from alarmer import runtime
from api.server import ApiServer

HEADERS = {
    "X-User-Id": "bench",
    "X-Project-Id": "bench",
    "X-Roles": "admin",
    "Content-Type": "application/json",
}
T0 = 1_700_000_000 - 1_700_000_000 % 86400


def timed(fn, repeat):
    samples = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return samples


def row(name, samples, per_request):
    p50 = statistics.median(samples)
    p95 = sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]
    rate = 1 / p50
    print(
        f"| {name} | {len(samples)} | {p50 * 1000:.2f} | {p95 * 1000:.2f} "
        f"| {rate:,.0f} | {rate * per_request:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        conf = aconf.make_conf(
            overrides={"DEFAULT": {"data_dir": tmp}, "api": {"port": 0}}
        )
        rt = runtime.build(conf, migrate=True)
        server = ApiServer(rt)
        server.start()
        base = f"http://127.0.0.1:{server.port}/v1"
        http = requests.Session()
        http.headers.update(HEADERS)
        try:
            run(http, base, args.repeat)
        finally:
            server.stop()
            rt.close()


def create(http, base, policy="medium"):
    r = http.post(f"{base}/metric", json={"archive_policy_name": policy})
    r.raise_for_status()
    return r.json()["id"]


def run(http, base, repeat):
    print("| workload | requests | p50 ms | p95 ms | req/s | measures/s |")
    print("|---|---|---|---|---|---|")
    next_ts = [T0]

    def push(mid, n):
        def one(_):
            start = next_ts[0]
            body = [
                {"timestamp": start + k, "value": float(k % 97)}
                for k in range(n)
            ]
            next_ts[0] += n
            r = http.post(f"{base}/metric/{mid}/measures", json=body)
            assert r.status_code == 202, r.text

        return one

    for n, reps in (
        (1, repeat),
        (100, repeat),
        (1000, max(20, repeat // 5)),
        (5000, max(10, repeat // 20)),
    ):
        mid = create(http, base)
        next_ts[0] = T0
        row(
            f"push {n}/request, 1 metric (medium)",
            timed(push(mid, n), reps),
            n,
        )

    ids = [create(http, base) for _ in range(1000)]
    clock = [T0]

    def batch(_):
        clock[0] += 60
        body = {m: [{"timestamp": clock[0], "value": 1.0}] for m in ids}
        r = http.post(f"{base}/batch/metrics/measures", json=body)
        assert r.status_code == 202, r.text

    row(
        "batch 1000 metrics x 1 point",
        timed(batch, max(5, repeat // 20)),
        1000,
    )

    def read(_):
        r = http.get(
            f"{base}/metric/{ids[0]}/measures",
            params={
                "granularity": 60,
                "start": clock[0] - 600,
                "stop": clock[0] + 60,
            },
        )
        assert r.status_code == 200 and r.json(), r.text

    row("GET measures, 10-min window at 60 s", timed(read, repeat), 1)

    for n in (10, 100):
        ops = [
            "aggregate",
            "mean",
            ["metric", *[[m, "mean"] for m in ids[:n]]],
        ]

        def aggregate(_, ops=ops):
            r = http.post(
                f"{base}/aggregates",
                params={
                    "granularity": 60,
                    "start": clock[0] - 600,
                    "stop": clock[0] + 60,
                    "needed_overlap": 0,
                },
                json={"operations": ops},
            )
            assert r.status_code == 200, r.text
            assert r.json()["measures"]["aggregated"]

        row(
            f"aggregates mean across {n} metrics",
            timed(aggregate, max(20, repeat // 4)),
            1,
        )

    def create_metric(_):
        create(http, base, "low")

    row("create metric", timed(create_metric, repeat), 1)


if __name__ == "__main__":
    main()
