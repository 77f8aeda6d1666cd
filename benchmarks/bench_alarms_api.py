"""Benchmark of the v2 (Aodh-compatible) alarm API.

Starts ``alarmer api`` (waitress) in its own process on a temporary
SQLite file or a temporary PostgreSQL database, drives it over real HTTP
with one keep-alive ``requests`` session (one client, sequential
requests) and
prints a table: create, get, list-page (first page and a page deep in
the list, 100 alarms each) and update, with throughput and p50/p99
latency.  The list pages are measured at 100 alarms, at ``--alarms`` and,
after bulk-inserting rows straight into SQL, at ``--grow`` alarms.

    .venv/bin/python benchmarks/bench_alarms_api.py --backend sqlite
    .venv/bin/python benchmarks/bench_alarms_api.py --backend postgresql
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import requests
import sqlalchemy as sa

from alarmer import conf as aconf
from alarmer import runtime, timeutils
from alarmer.alarms.tables import Alarm

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HEADERS = {
    "X-User-Id": "bench",
    "X-Project-Id": "bench",
    "X-Roles": "member",
}
# An address literal: validating it needs no DNS lookup.
ACTIONS = ["http://93.184.215.14/hook"]
RULE = {
    "metric": "cpu",
    "resource_id": "r1",
    "resource_type": "instance",
    "aggregation_method": "mean",
    "threshold": 80,
    "comparison_operator": "gt",
    "granularity": 60,
    "evaluation_periods": 3,
}


def body(i: int) -> dict:
    return {
        "name": f"alarm-{i}",
        "type": "gnocchi_resources_threshold",
        "severity": ("low", "moderate", "critical")[i % 3],
        "alarm_actions": ACTIONS,
        "gnocchi_resources_threshold_rule": {**RULE, "resource_id": f"r{i}"},
    }


def stats(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    rate = len(samples) / sum(samples)
    return (
        f"| {name} | {len(samples)} | {rate:,.0f} | {p50 * 1000:.2f} "
        f"| {p99 * 1000:.2f} |"
    )


def timed(session: requests.Session, method: str, url: str, **kw) -> float:
    start = time.perf_counter()
    response = session.request(method, url, **kw)
    elapsed = time.perf_counter() - start
    if response.status_code >= 300:
        raise RuntimeError(
            f"{method} {url}: {response.status_code} {response.text[:300]}"
        )
    return elapsed


def list_pages(session, base, count, samples):
    """Latency of the first page and of a page deep in the list."""
    first, deep = [], []
    ids = [
        a["alarm_id"]
        for a in session.get(
            f"{base}/v2/alarms?limit=1000", headers=HEADERS, timeout=60
        ).json()
    ]
    marker = ids[len(ids) // 2]
    for _ in range(samples):
        first.append(
            timed(
                session,
                "GET",
                f"{base}/v2/alarms?limit=100",
                headers=HEADERS,
                timeout=60,
            )
        )
        deep.append(
            timed(
                session,
                "GET",
                f"{base}/v2/alarms?limit=100&marker={marker}",
                headers=HEADERS,
                timeout=60,
            )
        )
    return [
        stats(f"list page 1 (100 of {count:,})", first),
        stats(f"list page after marker (100 of {count:,})", deep),
    ]


def grow(rt: runtime.Runtime, target: int, have: int) -> None:
    """Insert alarms straight into SQL up to *target* (same shape)."""
    now = timeutils.utcnow()
    batch = []
    with rt.db.engine.begin() as conn:
        for i in range(have, target):
            batch.append(
                {
                    "alarm_id": str(uuid.uuid4()),
                    "version": 1,
                    "seq": 0,
                    "name": f"alarm-{i}",
                    "description": "gnocchi_resources_threshold alarm rule",
                    "type": "gnocchi_resources_threshold",
                    "rule": {**RULE, "resource_id": f"r{i}"},
                    "enabled": True,
                    "state": "insufficient data",
                    "state_reason": "Not evaluated yet",
                    "state_timestamp": now,
                    "timestamp": now,
                    "evaluate_timestamp": now,
                    "severity": "low",
                    "ok_actions": [],
                    "alarm_actions": [],
                    "insufficient_data_actions": [],
                    "repeat_actions": False,
                    "time_constraints": [],
                    "project_id": "bench" if i % 2 else "other",
                    "user_id": "bench",
                }
            )
            if len(batch) == 5000:
                conn.execute(sa.insert(Alarm), batch)
                batch = []
        if batch:
            conn.execute(sa.insert(Alarm), batch)
        if rt.db.dialect == "postgresql":
            conn.exec_driver_sql("ANALYZE alarm")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def api_process(tmp: str, url: str) -> Iterator[str]:
    """Run ``alarmer api`` in its own process; yield its base URL."""
    port = free_port()
    config = os.path.join(tmp, "alarmer.conf")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write(
            f"[DEFAULT]\ndata_dir = {tmp}\nlog_level = WARNING\n"
            f"[database]\nconnection = {url}\n"
            f"[api]\nport = {port}\n"
        )
    exe = os.path.join(os.path.dirname(sys.executable), "alarmer")
    proc = subprocess.Popen([exe, "api", "--config-file", config])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthcheck", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(url: str, alarms: int, samples: int, grow_to: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{os.path.join(tmp, 'alarmer.sqlite')}"
        conf = aconf.make_conf(
            overrides={
                "DEFAULT": {"data_dir": tmp, "log_level": "WARNING"},
                "database": {"connection": url},
            }
        )
        rt = runtime.build(conf, migrate=True)
        session = requests.Session()
        rows = []
        with api_process(tmp, url) as base:
            creates, ids = [], []
            for i in range(alarms):
                start = time.perf_counter()
                response = session.post(
                    f"{base}/v2/alarms",
                    json=body(i),
                    headers=HEADERS,
                    timeout=60,
                )
                creates.append(time.perf_counter() - start)
                assert response.status_code == 201, response.text
                ids.append(response.json()["alarm_id"])
                if i + 1 == 100:
                    rows += list_pages(session, base, 100, samples)
            rows.insert(0, stats(f"create (to {alarms:,})", creates))
            rng = random.Random(42)
            gets = [
                timed(
                    session,
                    "GET",
                    f"{base}/v2/alarms/{rng.choice(ids)}",
                    headers=HEADERS,
                    timeout=60,
                )
                for _ in range(samples)
            ]
            rows.append(stats(f"get (of {alarms:,})", gets))
            rows += list_pages(session, base, alarms, samples)
            updates = []
            for _ in range(samples):
                alarm_id = rng.choice(ids)
                doc = session.get(
                    f"{base}/v2/alarms/{alarm_id}", headers=HEADERS, timeout=60
                ).json()
                doc["gnocchi_resources_threshold_rule"]["threshold"] = (
                    rng.randint(1, 99)
                )
                updates.append(
                    timed(
                        session,
                        "PUT",
                        f"{base}/v2/alarms/{alarm_id}",
                        json=doc,
                        headers=HEADERS,
                        timeout=60,
                    )
                )
            rows.append(stats(f"update (PUT, of {alarms:,})", updates))
            if grow_to > alarms:
                grow(rt, grow_to, alarms)
                rows += list_pages(session, base, grow_to, samples)
                gets = [
                    timed(
                        session,
                        "GET",
                        f"{base}/v2/alarms/{rng.choice(ids)}",
                        headers=HEADERS,
                        timeout=60,
                    )
                    for _ in range(samples)
                ]
                rows.append(stats(f"get (of {grow_to:,})", gets))
        rt.close()
    print(f"backend: {rt.db.dialect}")
    print("| operation | requests | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for line in rows:
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--backend", choices=("sqlite", "postgresql"), default="sqlite"
    )
    parser.add_argument("--alarms", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--grow", type=int, default=100_000)
    args = parser.parse_args()
    if args.backend == "sqlite":
        run("", args.alarms, args.samples, args.grow)
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"alarmer_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(PG_ADMIN_URL).set(database=name)
        run(
            url.render_as_string(hide_password=False),
            args.alarms,
            args.samples,
            args.grow,
        )
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )
        admin.dispose()


if __name__ == "__main__":
    main()
