"""``alarmer serve`` with several processes: real processes, real faults.

The supervisor forks API processes sharing one socket, an evaluator and
a notifier; these tests kill its children with SIGKILL, stop it with
SIGTERM (during the startup too) and kill the supervisor itself, then
check that nothing acknowledged is lost, that crossings are still
detected and delivered, and that no process is left behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from tooz import coordination

from alarmer.evaluator.coordination import GROUP
from tests.functional.notifier_helpers import Receiver
from tests.functional.serve_helpers import (
    Serve,
    alive,
    answering_pid,
    wait_for,
)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


def make_alarm(serve: Serve, receiver: Receiver) -> tuple[str, str]:
    """A metric and an event-driven alarm on it (mean > 50 over 1 s)."""
    r = serve.post("/v1/metric", {"archive_policy_name": "high"})
    assert r.status_code == 201, r.text
    metric_id = r.json()["id"]
    r = serve.post(
        "/v2/alarms",
        {
            "name": "procs",
            "type": "gnocchi_aggregation_by_metrics_threshold",
            "gnocchi_aggregation_by_metrics_threshold_rule": {
                "metrics": [metric_id],
                "aggregation_method": "mean",
                "threshold": 50,
                "comparison_operator": "gt",
                "granularity": 1,
                "evaluation_periods": 2,
            },
            "alarm_actions": [receiver.url("/alarm")],
        },
    )
    assert r.status_code == 201, r.text
    return metric_id, r.json()["alarm_id"]


def state(serve: Serve, alarm_id: str) -> str:
    return serve.get(f"/v2/alarms/{alarm_id}").json()["state"]


def push(serve: Serve, metric_id: str, value: float) -> None:
    now = int(time.time())
    r = serve.post(
        f"/v1/metric/{metric_id}/measures",
        [{"timestamp": now - k, "value": value} for k in (3, 2, 1, 0)],
    )
    assert r.status_code == 202, r.text


def test_serve_runs_every_kind_of_process(tmp_path):
    serve = Serve(tmp_path, api_workers=2).start()
    try:
        children = serve.wait_ready()
        assert sorted(children) == [
            "api-1",
            "api-2",
            "evaluator-1",
            "notifier",
        ]
        for name, pid in children.items():
            with open(f"/proc/{pid}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            assert ppid == serve.pid, name
            with open(f"/proc/{pid}/comm") as handle:
                assert handle.read().strip() == f"alarmer-{name}"[:15]
        api_pids = {children["api-1"], children["api-2"]}
        answered = set()
        deadline = time.monotonic() + 30
        while answered != api_pids and time.monotonic() < deadline:
            pid = answering_pid(serve, api_pids)
            if pid is not None:
                answered.add(pid)
        # Both API processes accept on the one socket.
        assert answered == api_pids
        # The evaluator listens on the metric channel, the notifier for
        # outbox commits.
        run = tmp_path / "data" / "run"
        assert len(list((run / "metrics").glob("*.sock"))) == 1
        assert len(list((run / "outbox").glob("*.sock"))) == 1
        assert os.path.isdir(run / "prometheus")
    finally:
        code = serve.stop()
    assert code == 0
    for name, pid in children.items():
        assert not alive(pid), name
    log = serve.log()
    assert "alarmer stopped" in log
    assert "exited with status 0" in log
    assert not list((tmp_path / "data" / "run" / "metrics").glob("*.sock"))


@pytest.mark.parametrize("victim", ["api-1", "evaluator-1", "notifier"])
def test_kill_9_of_a_child_loses_nothing(tmp_path, receiver, victim):
    serve = Serve(tmp_path, api_workers=2).start()
    try:
        before = serve.wait_ready()
        metric_id, alarm_id = make_alarm(serve, receiver)
        r = serve.post("/v1/metric", {"archive_policy_name": "high"})
        side_metric = r.json()["id"]
        time.sleep(1.0)  # the evaluator loads the alarm (refresh 0.2 s)
        push(serve, metric_id, 1)
        wait_for(lambda: state(serve, alarm_id) == "ok", 15, what="ok")

        # Measures keep coming while the victim is killed and restarted;
        # every acknowledged one must be readable afterwards.
        acked: list[int] = []
        stop = threading.Event()

        def writer():
            base = int(time.time()) - 3000
            k = 0
            while not stop.is_set():
                k += 1
                try:
                    r = serve.post(
                        f"/v1/metric/{side_metric}/measures",
                        [{"timestamp": base + k, "value": k}],
                    )
                except Exception:
                    continue  # not acknowledged: may be lost
                if r.status_code == 202:
                    acked.append(k)
                time.sleep(0.01)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(0.3)
        os.kill(before[victim], signal.SIGKILL)
        after = wait_for(
            lambda: (c := serve.children())[victim] != before[victim] and c,
            30,
            what="restart",
        )
        serve.wait_ready()
        time.sleep(0.3)
        stop.set()
        thread.join(timeout=15)
        assert acked
        assert not alive(before[victim])
        for name, pid in before.items():
            if name != victim:
                assert after[name] == pid, f"{name} was restarted too"
        status = "killed by SIGKILL"
        assert f"{victim} (pid {before[victim]}) {status}" in serve.log()

        # Nothing acknowledged was lost.
        r = serve.get(
            f"/v1/metric/{side_metric}/measures",
            params={"granularity": 1, "refresh": "true"},
        )
        assert r.status_code == 200, r.text
        stored = {int(value) for _ts, _gran, value in r.json()}
        missing = sorted(set(acked) - stored)
        assert not missing, missing

        # A crossing posted after the restart is detected and delivered.
        started = time.monotonic()
        push(serve, metric_id, 99)
        wait_for(lambda: state(serve, alarm_id) == "alarm", 10, what="alarm")
        bodies = wait_for(
            lambda: receiver.bodies("/alarm"), 10, what="webhook"
        )
        assert time.monotonic() - started < 10
        body = bodies[-1].json
        assert body["alarm_id"] == alarm_id
        assert body["current"] == "alarm"
    finally:
        try:
            assert serve.stop() == 0
        finally:
            serve.kill_all()


def test_sigterm_during_startup_stops_cleanly(tmp_path):
    serve = Serve(tmp_path, api_workers=2).start()
    try:
        # The supervisor has forked its first child; the children are
        # still importing and connecting.
        wait_for(lambda: "started api-1" in serve.log(), 60, step=0.01)
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(timeout=60) == 0
    finally:
        serve.kill_all()
    log = serve.log()
    assert "received SIGTERM" in log
    assert "alarmer stopped" in log
    for name, pid in serve.children().items():
        wait_for(lambda pid=pid: not alive(pid), 10, what=f"{name} ended")


def test_sigterm_during_migration_stops_cleanly(tmp_path):
    serve = Serve(tmp_path, api_workers=2).start()
    try:
        wait_for(lambda: "migrating database" in serve.log(), 60, step=0.01)
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(timeout=60) == 0
    finally:
        serve.kill_all()
    log = serve.log()
    assert "stopping during startup" in log
    assert "started api-1" not in log


def test_children_die_with_the_supervisor(tmp_path):
    serve = Serve(tmp_path, api_workers=2).start()
    try:
        children = serve.wait_ready()
        serve.proc.kill()
        serve.proc.wait()
        for name, pid in children.items():
            wait_for(lambda pid=pid: not alive(pid), 30, what=f"{name} ended")
    finally:
        serve.kill_all()


def test_two_evaluator_processes_share_the_alarms(tmp_path, receiver):
    serve = Serve(tmp_path, api_workers=1, evaluator={"workers": 2}).start()
    try:
        before = serve.wait_ready()
        assert {"evaluator-1", "evaluator-2"} <= set(before)
        pairs = [make_alarm(serve, receiver) for _ in range(8)]
        time.sleep(1.0)  # loaded by their owners (refresh 0.2 s)
        for metric_id, _alarm_id in pairs:
            push(serve, metric_id, 1)
        for _metric_id, alarm_id in pairs:
            wait_for(lambda a=alarm_id: state(serve, a) == "ok", 15)
        # Both are members of the evaluator group (the alarms are split
        # between them by the hash ring).
        observer = coordination.get_coordinator(
            f"file://{tmp_path / 'data' / 'coordination'}", b"observer"
        )
        observer.start()
        try:
            members = observer.get_members(GROUP).get()
        finally:
            observer.stop()
        names = sorted(m.decode().rsplit("-", 2)[-2:][1] for m in members)
        assert names == ["1", "2"], members
        assert all(b"-serve-" in m for m in members)

        # One evaluator dies: the restarted one takes its share back at
        # once (same member id), every alarm still detects its crossing.
        os.kill(before["evaluator-2"], signal.SIGKILL)
        wait_for(
            lambda: serve.children()["evaluator-2"] != before["evaluator-2"],
            30,
        )
        serve.wait_ready()
        started = time.monotonic()
        for metric_id, _alarm_id in pairs:
            push(serve, metric_id, 99)
        for _metric_id, alarm_id in pairs:
            wait_for(lambda a=alarm_id: state(serve, a) == "alarm", 10)
        wait_for(lambda: len(receiver.bodies("/alarm")) >= len(pairs), 10)
        # Far below [coordination] membership_timeout + an interval.
        assert time.monotonic() - started < 10
        delivered = {r.json["alarm_id"] for r in receiver.bodies("/alarm")}
        assert delivered == {alarm_id for _m, alarm_id in pairs}
    finally:
        try:
            assert serve.stop() == 0
        finally:
            serve.kill_all()
