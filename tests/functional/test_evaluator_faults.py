"""Fault tests with real evaluator processes (``alarmer evaluator``).

Workers share a SQLite file and a coordination backend: the real Redis
(kill -9 of one of three) and the file:// driver (workers joining and
leaving repeatedly).
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from tooz import coordination, hashring

from alarmer import conf as aconf
from alarmer import runtime
from alarmer.alarms.tables import Alarm, AlarmHistory, Notification
from alarmer.evaluator import coordination as evaluator_coordination
from alarmer.evaluator.coordination import GROUP

ALARMER = str(Path(sys.executable).with_name("alarmer"))
INTERVAL = 2
TIMEOUT = 2


def write_conf(tmp_path: Path, backend_url: str) -> Path:
    path = tmp_path / "alarmer.conf"
    path.write_text(
        f"""[DEFAULT]
data_dir = {tmp_path / "data"}
log_level = INFO

[database]
connection = sqlite:///{tmp_path / "alarmer.sqlite"}

[coordination]
backend_url = {backend_url}
membership_timeout = {TIMEOUT}
check_interval = 0.2

[evaluator]
evaluation_interval = {INTERVAL}
refresh_interval = 0.2
metric_channel = local
"""
    )
    return path


def setup_db(
    conf_path: Path, count: int, **fields
) -> tuple[object, list[str]]:
    conf = aconf.make_conf(config_files=[str(conf_path)])
    rt = runtime.build(conf, migrate=True)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    values = {
        "name": "ghost",
        "type": "gnocchi_aggregation_by_metrics_threshold",
        "rule": {
            "metrics": [str(uuid.uuid4())],
            "aggregation_method": "mean",
            "threshold": 1,
            "comparison_operator": "gt",
            "granularity": 1,
            "evaluation_periods": 2,
        },
        "state": "ok",
        "ok_actions": [],
        "alarm_actions": [],
        "insufficient_data_actions": ["log://"],
        "time_constraints": [],
        "project_id": "p1",
        "user_id": "u1",
    }
    values.update(fields)
    with rt.db.session() as session:
        session.add_all(Alarm(alarm_id=i, **values) for i in ids)
        session.commit()
    return rt, ids


def start_worker(conf_path: Path, log: Path) -> subprocess.Popen:
    handle = open(log, "ab")
    return subprocess.Popen(
        [ALARMER, "evaluator", "--config-file", str(conf_path)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def states(rt) -> dict[str, str]:
    with rt.db.read_session() as session:
        rows = session.execute(sa.select(Alarm.alarm_id, Alarm.state))
        return {alarm_id: state for alarm_id, state in rows}


def wait_for(predicate, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def members(observer) -> set[bytes]:
    try:
        return set(observer.get_members(GROUP).get())
    except coordination.GroupNotCreated:
        return set()


def coordination_url(conf_path: Path) -> str:
    """The tooz URL the workers configured by *conf_path* use."""
    conf = aconf.make_conf(config_files=[str(conf_path)])
    return evaluator_coordination.backend_url(conf)


def worker_is_member(observer, proc: subprocess.Popen) -> bool:
    """True once the worker process *proc* is listed in the group."""
    assert proc.poll() is None, f"worker exited with {proc.returncode}"
    marker = f"-{proc.pid}-".encode()
    return any(marker in member for member in members(observer))


def worker_is_running(log: Path, proc: subprocess.Popen) -> bool:
    """True once the worker *proc* logged that its services run."""
    assert proc.poll() is None, f"worker exited with {proc.returncode}"
    marker = f" {proc.pid} INFO alarmer.process: alarmer is running"
    return marker in log.read_text()


def stop_all(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_kill_one_of_three_workers_on_redis(tmp_path, redis_url):
    namespace = f"alarmer-test-{uuid.uuid4().hex[:8]}"
    backend = f"{redis_url.rsplit('/', 1)[0]}?namespace={namespace}"
    conf_path = write_conf(tmp_path, backend)
    rt, ids = setup_db(conf_path, 90)
    procs = [
        start_worker(conf_path, tmp_path / f"worker{i}.log") for i in range(3)
    ]
    observer = coordination.get_coordinator(
        f"{backend}&timeout={TIMEOUT}", b"observer"
    )
    observer.start()
    try:
        wait_for(lambda: len(members(observer)) == 3, 30)
        # Every alarm evaluated once: ok -> insufficient data.
        wait_for(lambda: set(states(rt).values()) == {"insufficient data"}, 20)
        current = members(observer)
        ring = hashring.HashRing(current, partitions=512)
        victim = procs[1]
        victim_id = next(m for m in current if f"-{victim.pid}-".encode() in m)
        victim_alarms = [
            a for a in ids if ring.get_nodes(a.encode()) == {victim_id}
        ]
        assert victim_alarms, "the victim owned nothing"

        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        # A new crossing for every alarm (as a manual state change does).
        with rt.db.session() as session:
            session.execute(
                sa.update(Alarm).values(state="ok", version=Alarm.version + 1)
            )
            session.commit()
        wait_for(
            lambda: all(
                states(rt)[a] == "insufficient data" for a in victim_alarms
            ),
            TIMEOUT + INTERVAL + 6,
        )
        elapsed = time.monotonic() - killed_at
        wait_for(lambda: set(states(rt).values()) == {"insufficient data"}, 10)
        assert elapsed <= TIMEOUT + INTERVAL + 3, elapsed
        assert len(members(observer)) == 2

        # Exactly one transition (and one notification) per crossing.
        with rt.db.read_session() as session:
            per_alarm = collections.Counter(
                session.scalars(
                    sa.select(AlarmHistory.alarm_id).where(
                        AlarmHistory.type == "state transition"
                    )
                )
            )
            notified = collections.Counter(
                session.scalars(sa.select(Notification.alarm_id))
            )
        assert set(per_alarm.values()) == {2}, per_alarm.most_common(3)
        assert set(notified.values()) == {2}
        assert len(per_alarm) == len(ids)
    finally:
        stop_all(procs)
        observer.stop()
        rt.close()
    survivors = [p for i, p in enumerate(procs) if i != 1]
    assert [p.returncode for p in survivors] == [0, 0]
    logs = (tmp_path / "worker0.log").read_text()
    assert "left evaluator group" in logs


def test_workers_joining_and_leaving(tmp_path):
    conf_path = write_conf(tmp_path, "")  # file://<data_dir>/coordination
    rt, ids = setup_db(
        conf_path, 40, state="insufficient data", repeat_actions=True
    )
    stable = start_worker(conf_path, tmp_path / "stable.log")
    churn_log = tmp_path / "churn.log"
    procs = [stable]
    observer = coordination.get_coordinator(
        coordination_url(conf_path), b"observer"
    )
    observer.start()
    try:
        # Every evaluation of these alarms writes one outbox row
        # ("Remaining as insufficient data ...").
        def everyone_evaluated():
            with rt.db.read_session() as session:
                return len(
                    set(session.scalars(sa.select(Notification.alarm_id)))
                ) == len(ids)

        wait_for(everyone_evaluated, 30)
        with rt.db.read_session() as session:
            started = session.scalar(
                sa.select(sa.func.max(Notification.created_at))
            )
        for _round in range(4):
            proc = start_worker(conf_path, churn_log)
            procs.append(proc)
            # Ready once it is a member and has loaded its share and
            # started evaluating (a loaded machine may take seconds to
            # start it); then it owns that share for an interval.
            wait_for(functools.partial(worker_is_member, observer, proc), 60)
            wait_for(functools.partial(worker_is_running, churn_log, proc), 60)
            time.sleep(INTERVAL)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            time.sleep(1.0)
        with rt.db.read_session() as session:
            ended = session.scalar(
                sa.select(sa.func.max(Notification.created_at))
            )
            rows = session.execute(
                sa.select(Notification.alarm_id, Notification.created_at)
                .where(Notification.created_at >= started)
                .order_by(Notification.created_at)
            ).all()
    finally:
        stop_all(procs)
        observer.stop()
        rt.close()
    assert stable.returncode == 0
    times: dict[str, list] = collections.defaultdict(list)
    for alarm_id, created in rows:
        times[alarm_id].append(created)
    assert set(times) == set(ids)
    worst = (0.0, "", None)
    for alarm_id in ids:
        marks = [started, *times[alarm_id], ended]
        for a, b in itertools.pairwise(marks):
            worst = max(worst, ((b - a).total_seconds(), alarm_id, a))
    # The worst gap, the alarm and when the gap began (to match the log).
    assert worst[0] <= 2 * INTERVAL, worst
    assert "joined evaluator group" in churn_log.read_text()
