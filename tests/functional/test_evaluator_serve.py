"""``alarmer serve`` (the one-command start) runs the evaluator too."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import requests

from tests.functional.test_evaluator_faults import ALARMER, wait_for

H = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "admin"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_detects_a_crossing(tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "ab")
    proc = subprocess.Popen(
        [
            ALARMER,
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up():
            try:
                return requests.get(f"{url}/v2/alarms", headers=H).ok
            except requests.ConnectionError:
                return False

        wait_for(up, 30)
        r = requests.post(
            f"{url}/v1/metric",
            json={"archive_policy_name": "high"},
            headers=H,
        )
        metric_id = r.json()["id"]
        r = requests.post(
            f"{url}/v2/alarms",
            headers=H,
            json={
                "name": "serve",
                "type": "gnocchi_aggregation_by_metrics_threshold",
                "gnocchi_aggregation_by_metrics_threshold_rule": {
                    "metrics": [metric_id],
                    "aggregation_method": "mean",
                    "threshold": 50,
                    "comparison_operator": "gt",
                    "granularity": 1,
                    "evaluation_periods": 2,
                },
            },
        )
        assert r.status_code == 201, r.text
        alarm_id = r.json()["alarm_id"]
        time.sleep(1.5)  # loaded by the evaluator (refresh_interval 1 s)
        now = int(time.time())
        r = requests.post(
            f"{url}/v1/metric/{metric_id}/measures",
            json=[{"timestamp": now - k, "value": 99} for k in (3, 2, 1, 0)],
            headers=H,
        )
        assert r.status_code == 202, r.text

        def state():
            return requests.get(
                f"{url}/v2/alarms/{alarm_id}", headers=H
            ).json()["state"]

        wait_for(lambda: state() == "alarm", 3, step=0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log.close()
    assert "left evaluator group" in (tmp_path / "serve.log").read_text()
