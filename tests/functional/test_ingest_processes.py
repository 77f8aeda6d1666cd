"""Several API processes writing the same file storage lose nothing.

Three ``alarmer api`` processes share one data directory (SQLite index,
file series storage).  Client threads, each talking to its own process,
push interleaved points to one shared metric and to a metric of their
own, through the batch route and the one-metric route in turn; every
point acknowledged (202, counted stored) is then read back, from every
process.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

HEADERS = {
    "X-User-Id": "writer",
    "X-Project-Id": "ingest",
    "X-Roles": "admin",
}
PROCESSES = 3
WRITERS_PER_PROCESS = 2
ROUNDS = 40
#: Seconds since the epoch of the first point (a recent day).
T0 = int(time.time()) - 86400 * 3 - int(time.time()) % 86400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alarmer.cli",
            "api",
            "--data-dir",
            str(data),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen[bytes], base: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{base}/healthcheck", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        assert proc.poll() is None, "an API process exited"
        assert time.monotonic() < deadline, "an API process never got ready"
        time.sleep(0.2)


@pytest.fixture
def apis(tmp_path):
    data = tmp_path / "data"
    first = start_api(data)
    started = [first]
    try:
        # The first one creates the database; then the others start.
        wait_ready(*first)
        started += [start_api(data) for _ in range(PROCESSES - 1)]
        for proc, base in started[1:]:
            wait_ready(proc, base)
        yield [base for _, base in started]
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def counted(base: str, metric_id: str) -> dict[int, float]:
    r = requests.get(
        f"{base}/v1/metric/{metric_id}/measures",
        params={"aggregation": "count", "granularity": "1"},
        headers=HEADERS,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {
        int(dt.datetime.fromisoformat(ts).timestamp()): value
        for ts, _, value in r.json()
    }


@pytest.mark.slow
def test_api_processes_sharing_storage_lose_no_acknowledged_point(apis):
    http = requests.Session()
    http.headers.update(HEADERS)
    r = http.post(
        f"{apis[0]}/v1/archive_policy",
        json={
            "name": "every-second",
            # The writers run at different speeds: a wide back window.
            "back_window": 3600,
            "definition": [{"granularity": "1s", "points": 86400}],
            "aggregation_methods": ["count", "sum"],
        },
    )
    assert r.status_code == 201, r.text

    def create() -> str:
        r = http.post(
            f"{apis[0]}/v1/metric",
            json={"archive_policy_name": "every-second"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    writers = PROCESSES * WRITERS_PER_PROCESS
    shared = create()
    own = [create() for _ in range(writers)]
    acked: dict[str, set[int]] = {m: set() for m in [shared, *own]}
    lock = threading.Lock()
    failures: list[str] = []

    def write(w: int) -> None:
        base = apis[w % PROCESSES]
        session = requests.Session()
        session.headers.update(HEADERS)
        for k in range(ROUNDS):
            # Interleaved: writer w owns the seconds w, w + writers, ...
            second = T0 + k * writers + w
            point = [{"timestamp": second, "value": 1.0}]
            if k % 2:
                r = session.post(
                    f"{base}/v1/batch/metrics/measures",
                    json={shared: point, own[w]: point},
                )
                targets = [shared, own[w]]
            else:
                r = session.post(
                    f"{base}/v1/metric/{shared}/measures", json=point
                )
                targets = [shared]
            if r.status_code != 202:
                failures.append(f"{r.status_code} {r.text}")
                continue
            assert r.json()["measures_stored"] == len(targets), r.text
            with lock:
                for metric in targets:
                    acked[metric].add(second)

    threads = [
        threading.Thread(target=write, args=(w,)) for w in range(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    # A 503 (concurrent writers kept winning) is allowed, never a loss.
    assert all(f.startswith("503") for f in failures), failures
    assert len(acked[shared]) >= writers * ROUNDS * 0.9
    for base in apis:
        for metric, seconds in acked.items():
            stored = counted(base, metric)
            assert seconds <= set(stored), (base, metric)
            assert all(stored[s] == 1.0 for s in seconds)
