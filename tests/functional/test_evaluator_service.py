"""The evaluator end to end over HTTP, in one process (one-command start).

A real API server and the evaluator share one runtime (SQLite file, file
series storage, file:// coordination, the in-process metric channel).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import sqlalchemy as sa

from alarmer import timeutils
from alarmer.alarms.tables import Alarm, AlarmHistory, Notification
from alarmer.evaluator.service import EvaluatorService
from alarmer.metrics.series import store as series_mod

H = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "admin"}


def wait_for(predicate, timeout=5.0, step=0.02):
    """Poll *predicate* until truthy; return its value or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def env(live_api, sqlite_rt) -> Iterator[dict]:
    """API server + a factory starting the evaluator on the same runtime."""
    conf = sqlite_rt.conf
    conf.set_override("refresh_interval", 0.05, group="evaluator")
    conf.set_override("check_interval", 0.05, group="coordination")
    started: list[EvaluatorService] = []

    def start(interval: int = 3600, event_driven: bool = True):
        conf.set_override("evaluation_interval", interval, group="evaluator")
        conf.set_override("event_driven", event_driven, group="evaluator")
        service = EvaluatorService(sqlite_rt)
        service.start()
        started.append(service)
        return service

    yield {"url": live_api, "rt": sqlite_rt, "start": start}
    for service in started:
        service.stop()


def create_metric(url: str) -> str:
    r = requests.post(
        f"{url}/v1/metric", json={"archive_policy_name": "high"}, headers=H
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def push(url: str, metric_id: str, values, *, end=None) -> float:
    """Push one value per second ending at the current second."""
    end = int(end if end is not None else time.time())
    start = end - len(values) + 1
    body = [{"timestamp": start + i, "value": v} for i, v in enumerate(values)]
    t0 = time.monotonic()
    r = requests.post(
        f"{url}/v1/metric/{metric_id}/measures", json=body, headers=H
    )
    assert r.status_code == 202, r.text
    return t0


def create_alarm(url: str, metric_id: str, rule=None, **extra) -> str:
    body = {
        "name": "cpu-high",
        "type": "gnocchi_aggregation_by_metrics_threshold",
        "severity": "critical",
        "alarm_actions": ["log://"],
        "ok_actions": ["log://"],
        "gnocchi_aggregation_by_metrics_threshold_rule": {
            "metrics": [metric_id],
            "aggregation_method": "mean",
            "threshold": 50,
            "comparison_operator": "gt",
            "granularity": 1,
            "evaluation_periods": 3,
            **(rule or {}),
        },
    }
    body.update(extra)
    r = requests.post(f"{url}/v2/alarms", json=body, headers=H)
    assert r.status_code == 201, r.text
    return r.json()["alarm_id"]


def get_alarm(url: str, alarm_id: str) -> dict:
    r = requests.get(f"{url}/v2/alarms/{alarm_id}", headers=H)
    assert r.status_code == 200, r.text
    return r.json()


def outbox(rt, alarm_id: str) -> list[Notification]:
    with rt.db.read_session() as session:
        return list(
            session.scalars(
                sa.select(Notification)
                .where(Notification.alarm_id == alarm_id)
                .order_by(Notification.seq)
            )
        )


def transitions_of(rt, alarm_id: str) -> list[dict]:
    with rt.db.read_session() as session:
        rows = session.scalars(
            sa.select(AlarmHistory)
            .where(
                AlarmHistory.alarm_id == alarm_id,
                AlarmHistory.type == "state transition",
            )
            .order_by(AlarmHistory.timestamp)
        ).all()
    return [json.loads(r.detail) for r in rows]


def test_event_driven_crossing_end_to_end(env):
    url, rt = env["url"], env["rt"]
    service = env["start"]()
    metric_id = create_metric(url)
    alarm_id = create_alarm(url, metric_id)
    wait_for(lambda: alarm_id in service.owned())
    assert get_alarm(url, alarm_id)["state"] == "insufficient data"

    t0 = push(url, metric_id, [90, 91, 92, 93, 94, 95])
    wait_for(lambda: get_alarm(url, alarm_id)["state"] == "alarm")
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0
    assert service.stats.event_evaluations >= 1
    alarm = get_alarm(url, alarm_id)
    assert alarm["state_reason"] == (
        "Transition to alarm due to 3 samples outside threshold, "
        "most recent: 95.0"
    )
    assert timeutils.parse_datetime(alarm["state_timestamp"]) > (
        timeutils.utcnow() - timeutils.dt.timedelta(seconds=10)
    )
    history = requests.get(
        f"{url}/v2/alarms/{alarm_id}/history", headers=H
    ).json()
    details = [
        json.loads(h["detail"])
        for h in history
        if h["type"] == "state transition"
    ]
    assert details == [
        {"state": "alarm", "transition_reason": alarm["state_reason"]}
    ]
    rows = outbox(rt, alarm_id)
    assert [(r.seq, r.previous, r.current) for r in rows] == [
        (1, "insufficient data", "alarm")
    ]
    assert rows[0].actions == ["log://"]
    assert rows[0].reason_data == {
        "type": "threshold",
        "disposition": "outside",
        "count": 3,
        "most_recent": 95.0,
    }
    assert (rows[0].alarm_name, rows[0].severity) == ("cpu-high", "critical")

    # Back under the threshold: ok, a second notification.
    push(url, metric_id, [10, 11, 12, 13, 14, 15])
    wait_for(lambda: get_alarm(url, alarm_id)["state"] == "ok")
    rows = outbox(rt, alarm_id)
    assert [(r.seq, r.previous, r.current) for r in rows] == [
        (1, "insufficient data", "alarm"),
        (2, "alarm", "ok"),
    ]
    assert rows[1].reason.startswith("Transition to ok due to 3 samples")


def test_periodic_path_without_events(env):
    url, rt = env["url"], env["rt"]
    service = env["start"](interval=1, event_driven=False)
    metric_id = create_metric(url)
    # One 60 s bucket: the data stay in the window for the whole test.
    alarm_id = create_alarm(
        url, metric_id, rule={"granularity": 60, "evaluation_periods": 1}
    )
    wait_for(lambda: alarm_id in service.owned())
    if time.time() % 60 > 55:
        time.sleep(6)
    push(url, metric_id, [90, 91, 92, 93, 94, 95])
    wait_for(lambda: get_alarm(url, alarm_id)["state"] == "alarm", 4)
    assert service.stats.event_evaluations == 0
    assert transitions_of(rt, alarm_id)[-1]["state"] == "alarm"
    # evaluated again and again at its slot without new transitions
    before = service.stats.evaluations
    wait_for(lambda: service.stats.evaluations >= before + 2, 4)
    assert len(transitions_of(rt, alarm_id)) == 1
    assert service.stats.lag_percentiles()["max"] < 1.0


def test_resources_threshold_by_resource_name(env):
    url = env["url"]
    service = env["start"]()
    r = requests.post(
        f"{url}/v1/resource/generic",
        json={
            "id": "vm-1",
            "metrics": {"cpu": {"archive_policy_name": "high"}},
        },
        headers=H,
    )
    assert r.status_code == 201, r.text
    metric_id = r.json()["metrics"]["cpu"]
    body = {
        "name": "vm-cpu",
        "type": "gnocchi_resources_threshold",
        "alarm_actions": ["log://"],
        "gnocchi_resources_threshold_rule": {
            "metric": "cpu",
            "resource_id": "vm-1",
            "resource_type": "generic",
            "aggregation_method": "max",
            "threshold": 50,
            "comparison_operator": "ge",
            "granularity": 1,
            "evaluation_periods": 2,
        },
    }
    r = requests.post(f"{url}/v2/alarms", json=body, headers=H)
    assert r.status_code == 201, r.text
    alarm_id = r.json()["alarm_id"]
    wait_for(lambda: alarm_id in service.owned())
    push(url, metric_id, [50, 60, 70, 80])
    wait_for(lambda: get_alarm(url, alarm_id)["state"] == "alarm")
    assert get_alarm(url, alarm_id)["state_reason"] == (
        "Transition to alarm due to 2 samples outside threshold, "
        "most recent: 80.0"
    )


def test_unknown_resource_goes_insufficient_with_aodh_reason(env):
    url = env["url"]
    body = {
        "name": "ghost",
        "type": "gnocchi_resources_threshold",
        "state": "ok",
        "gnocchi_resources_threshold_rule": {
            "metric": "cpu",
            "resource_id": "nope",
            "resource_type": "generic",
            "aggregation_method": "mean",
            "threshold": 50,
            "granularity": 1,
            "evaluation_periods": 2,
        },
    }
    r = requests.post(f"{url}/v2/alarms", json=body, headers=H)
    assert r.status_code == 201, r.text
    alarm_id = r.json()["alarm_id"]
    assert get_alarm(url, alarm_id)["state"] == "ok"
    env["start"](interval=2)  # loaded at start: evaluated at its slot
    wait_for(lambda: get_alarm(url, alarm_id)["state"] == "insufficient data")
    assert get_alarm(url, alarm_id)["state_reason"] == (
        "metric cpu for resource nope does not exists"
    )


def test_time_constraints_freeze_the_state(env):
    url, rt = env["url"], env["rt"]
    service = env["start"]()
    metric_id = create_metric(url)
    hour = (time.gmtime().tm_hour + 12) % 24
    alarm_id = create_alarm(
        url,
        metric_id,
        time_constraints=[
            {"name": "night", "start": f"0 {hour} * * *", "duration": 600}
        ],
    )
    wait_for(lambda: alarm_id in service.owned())
    push(url, metric_id, [90, 91, 92, 93, 94, 95])
    wait_for(lambda: service.stats.frozen >= 1)
    time.sleep(0.2)
    assert get_alarm(url, alarm_id)["state"] == "insufficient data"
    assert outbox(rt, alarm_id) == []


def test_repeat_actions_renotify(env):
    url, rt = env["url"], env["rt"]
    service = env["start"](interval=1)
    metric_id = create_metric(url)
    alarm_id = create_alarm(url, metric_id, repeat_actions=True)
    wait_for(lambda: alarm_id in service.owned())
    push(url, metric_id, [90, 91, 92, 93, 94, 95])
    wait_for(lambda: len(outbox(rt, alarm_id)) >= 1)
    push(url, metric_id, [96, 97, 98, 99, 100, 101])
    rows = wait_for(lambda: (r := outbox(rt, alarm_id)) and len(r) >= 2 and r)
    assert (rows[1].previous, rows[1].current) == ("alarm", "alarm")
    assert rows[1].reason.startswith("Remaining as alarm due to 3 samples")
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert len(transitions_of(rt, alarm_id)) == 1


def test_engine_error_goes_insufficient_and_worker_survives(env, caplog):
    url, rt = env["url"], env["rt"]
    metric_id = create_metric(url)
    alarm_id = create_alarm(url, metric_id, state="ok")
    real = rt.series

    class Broken:
        def last_buckets(self, *args, **kwargs):
            raise OSError("disk on fire")

    rt.series = Broken()
    try:
        with caplog.at_level(logging.WARNING, logger="alarmer.evaluator"):
            service = env["start"](interval=2)
            wait_for(
                lambda: (
                    get_alarm(url, alarm_id)["state"] == "insufficient data"
                )
            )
        assert get_alarm(url, alarm_id)["state_reason"] == (
            "alarm statistics retrieval failed: disk on fire"
        )
        assert any(
            alarm_id in r.getMessage() and "disk on fire" in r.getMessage()
            for r in caplog.records
        )
    finally:
        rt.series = real
    # The worker still runs and evaluates once the engine is back.
    push(url, metric_id, [90, 91, 92, 93, 94, 95])
    wait_for(lambda: get_alarm(url, alarm_id)["state"] == "alarm")
    assert service.stats.errors == 0


def test_database_error_on_commit_is_logged_and_retried(env, caplog):
    url, rt = env["url"], env["rt"]
    service = env["start"]()
    metric_id = create_metric(url)
    alarm_id = create_alarm(url, metric_id)
    wait_for(lambda: alarm_id in service.owned())
    real_session = rt.db.session
    failures = []

    def failing_session():
        if not failures:
            failures.append(1)
            raise sa.exc.OperationalError("BEGIN", {}, Exception("db down"))
        return real_session()

    rt.db.session = failing_session
    try:
        with caplog.at_level(logging.ERROR, logger="alarmer.evaluator"):
            push(url, metric_id, [90, 91, 92, 93, 94, 95])
            wait_for(lambda: failures)
            wait_for(lambda: service.stats.errors >= 1)
        assert any(alarm_id in r.getMessage() for r in caplog.records)
        # The failed commit stored nothing; the next evaluation (the
        # periodic pass or the next measures, whichever comes first)
        # commits the transition, once.
        push(url, metric_id, [90, 91, 92, 93, 94, 95])
        wait_for(lambda: get_alarm(url, alarm_id)["state"] == "alarm")
    finally:
        rt.db.session = real_session
    assert len(transitions_of(rt, alarm_id)) == 1


def test_stale_view_is_fenced_and_healed(env):
    url, rt = env["url"], env["rt"]
    service = env["start"](event_driven=False)
    metric_id = create_metric(url)
    alarm_id = create_alarm(url, metric_id)
    wait_for(lambda: alarm_id in service.owned())
    held = service.registry.alarms[alarm_id]
    # Someone else (an API user) changes the state meanwhile.
    r = requests.put(
        f"{url}/v2/alarms/{alarm_id}/state", json="alarm", headers=H
    )
    assert r.status_code == 200, r.text
    push(url, metric_id, [10, 11, 12, 13, 14, 15])
    service.evaluate(held)  # the stale in-memory view (version 1)
    assert service.stats.fence_conflicts >= 1
    alarm = get_alarm(url, alarm_id)
    assert alarm["state"] == "ok"
    states = [d["state"] for d in transitions_of(rt, alarm_id)]
    assert states == ["alarm", "ok"]
    with rt.db.read_session() as session:
        assert session.get(Alarm, alarm_id).version == 3


def test_by_resources_aggregates_matching_resources(env):
    url = env["url"]
    service = env["start"]()
    metric_ids = []
    for name in ("web-1", "web-2", "db-1"):
        r = requests.post(
            f"{url}/v1/resource/generic",
            json={
                "id": name,
                "project_id": "p1" if name.startswith("web") else "p9",
                "metrics": {"cpu": {"archive_policy_name": "high"}},
            },
            headers=H,
        )
        assert r.status_code == 201, r.text
        metric_ids.append(r.json()["metrics"]["cpu"])
    body = {
        "name": "web-cpu",
        "type": "gnocchi_aggregation_by_resources_threshold",
        "alarm_actions": ["log://"],
        "gnocchi_aggregation_by_resources_threshold_rule": {
            "metric": "cpu",
            "resource_type": "generic",
            "query": json.dumps({"=": {"project_id": "p1"}}),
            "aggregation_method": "mean",
            "threshold": 50,
            "comparison_operator": "gt",
            "granularity": 1,
            "evaluation_periods": 2,
        },
    }
    r = requests.post(f"{url}/v2/alarms", json=body, headers=H)
    assert r.status_code == 201, r.text
    alarm_id = r.json()["alarm_id"]
    wait_for(lambda: alarm_id in service.owned())
    # web-1 at 90, web-2 at 20: mean 55 > 50; db-1 (not matching) at 0.
    push(url, metric_ids[2], [0, 0, 0, 0])
    push(url, metric_ids[1], [20, 20, 20, 20])
    push(url, metric_ids[0], [90, 90, 90, 90])
    wait_for(lambda: get_alarm(url, alarm_id)["state"] == "alarm")
    assert get_alarm(url, alarm_id)["state_reason"] == (
        "Transition to alarm due to 2 samples outside threshold, "
        "most recent: 55.0"
    )


def _direct_alarm(rt, metric_id: str, **fields) -> str:
    alarm_id = str(uuid.uuid4())
    values = {
        "name": "direct",
        "type": "gnocchi_aggregation_by_metrics_threshold",
        "rule": {
            "metrics": [metric_id],
            "aggregation_method": "mean",
            "threshold": 50,
            "comparison_operator": "gt",
            "granularity": 1,
            "evaluation_periods": 2,
        },
        "state": "ok",
        "ok_actions": [],
        "alarm_actions": ["log://"],
        "insufficient_data_actions": [],
        "time_constraints": [],
        "project_id": "p1",
        "user_id": "u1",
    }
    values.update(fields)
    with rt.db.session() as session:
        session.add(Alarm(alarm_id=alarm_id, **values))
        session.commit()
    return alarm_id


def test_event_path_on_each_database(rt):
    """The service on SQLite and PostgreSQL, without HTTP."""
    rt.conf.set_override("refresh_interval", 0.05, group="evaluator")
    rt.conf.set_override("evaluation_interval", 3600, group="evaluator")
    metric = rt.index.create_metric(
        archive_policy_name="high", user_id="u1", project_id="p1"
    )
    service = EvaluatorService(rt)
    service.start()
    try:
        alarm_id = _direct_alarm(rt, metric.id)

        def state():
            with rt.db.read_session() as session:
                return session.get(Alarm, alarm_id).state

        wait_for(lambda: alarm_id in service.owned())
        # The first, immediate evaluation sees no data yet; the measures
        # are written only after it, so that the event path decides next.
        wait_for(lambda: state() == "insufficient data")
        now = time.time_ns() // 10**9
        rt.series.add_measures(
            series_mod.MetricRef(metric.id, metric.archive_policy),
            np.array([(now - k) * 10**9 for k in (2, 1, 0)], dtype=np.int64),
            np.array([70.0, 80.0, 90.0]),
        )
        rt.channel.publish([metric.id])
        wait_for(lambda: state() == "alarm")
        # Created after the start: evaluated at once (no data yet: ok ->
        # insufficient data, which has no action), then on the event.
        assert [d["state"] for d in transitions_of(rt, alarm_id)] == [
            "insufficient data",
            "alarm",
        ]
        rows = outbox(rt, alarm_id)
        assert [(r.seq, r.previous, r.current) for r in rows] == [
            (1, "insufficient data", "alarm")
        ]
        assert service.stats.event_evaluations >= 1
    finally:
        service.stop()


def test_composite_alarm_in_the_service(rt):
    rt.conf.set_override("refresh_interval", 0.05, group="evaluator")
    rt.conf.set_override("evaluation_interval", 3600, group="evaluator")
    index = rt.index
    # The alarm's project (p1) created them: an alarm reads only what
    # its project may see.
    owner = {"user_id": "u1", "project_id": "p1"}
    cpu = index.create_metric(archive_policy_name="high", **owner)
    mem = index.create_metric(archive_policy_name="high", **owner)

    def sub(metric, threshold):
        return {
            "type": "gnocchi_aggregation_by_metrics_threshold",
            "metrics": [metric.id],
            "aggregation_method": "mean",
            "threshold": threshold,
            "comparison_operator": "gt",
            "granularity": 1,
            "evaluation_periods": 2,
        }

    service = EvaluatorService(rt)
    service.start()
    try:
        alarm_id = _direct_alarm(
            rt,
            cpu.id,
            type="composite",
            rule={"and": [sub(cpu, 50), sub(mem, 80)]},
        )
        wait_for(lambda: alarm_id in service.owned())
        now = time.time_ns() // 10**9
        stamps = np.array([(now - k) * 10**9 for k in (2, 1, 0)])

        def write(metric, value):
            rt.series.add_measures(
                series_mod.MetricRef(metric.id, metric.archive_policy),
                stamps,
                np.full(3, value),
            )
            rt.channel.publish([metric.id])

        def alarm():
            with rt.db.read_session() as session:
                return session.get(Alarm, alarm_id)

        write(cpu, 90.0)  # rule1 alarm, rule2 without data: unknown
        wait_for(lambda: alarm().state == "insufficient data")
        write(mem, 95.0)  # both in alarm: the composite fires
        wait_for(lambda: alarm().state == "alarm")
        assert alarm().state_reason == (
            "Composite rule alarm with composition form: (rule1 and rule2) "
            "transition to alarm, due to rules: rule1, rule2 outside their "
            "threshold."
        )
        rows = outbox(rt, alarm_id)
        assert rows[-1].reason_data["type"] == "composite"
        assert set(rows[-1].reason_data["causative_rules"]) == {
            "rule1",
            "rule2",
        }
    finally:
        service.stop()


def test_stop_unsubscribes_and_leaves(sqlite_rt):
    service = EvaluatorService(sqlite_rt)
    service.start()
    assert service.membership.connected
    assert len(sqlite_rt.channel._callbacks) == 1
    service.stop()
    assert sqlite_rt.channel._callbacks == ()
    assert not service.membership.connected


@pytest.mark.parametrize("refresh", [0.05, 1.0])
def test_by_resources_sees_a_resource_created_after_it_was_loaded(rt, refresh):
    """A new matching resource's measures reach the alarm on events.

    The periodic pass is an hour away: only the event path can move the
    alarm.  With a short refresh the index change is noticed before the
    measure arrives; with a refresh of 1 s the measure is posted at once
    after the resource, so it is announced before the alarm reads the
    new metric and must not be lost for that.
    """
    from api.app import create_app

    rt.conf.set_override("refresh_interval", refresh, group="evaluator")
    rt.conf.set_override("check_interval", refresh, group="coordination")
    rt.conf.set_override("evaluation_interval", 3600, group="evaluator")
    api = create_app(rt).test_client()

    def resource(name: str) -> str:
        r = api.post(
            "/v1/resource/generic",
            json={
                "id": name,
                "project_id": "p1",
                "metrics": {"cpu": {"archive_policy_name": "high"}},
            },
            headers=H,
        )
        assert r.status_code == 201, r.text
        return r.get_json()["metrics"]["cpu"]

    # Every measure in one 60 s bucket, the newest for the whole test.
    stamp = time.time()

    def measure(metric_id: str, value: float) -> None:
        r = api.post(
            f"/v1/metric/{metric_id}/measures",
            json=[{"timestamp": stamp, "value": value}],
            headers=H,
        )
        assert r.status_code == 202, r.text

    def state() -> str:
        r = api.get(f"/v2/alarms/{alarm_id}", headers=H)
        assert r.status_code == 200, r.text
        return r.get_json()["state"]

    first = resource("web-1")
    measure(first, 10.0)
    service = EvaluatorService(rt)
    service.start()
    try:
        r = api.post(
            "/v2/alarms",
            json={
                "name": "web-cpu",
                "type": "gnocchi_aggregation_by_resources_threshold",
                "alarm_actions": ["log://"],
                "ok_actions": ["log://"],
                "gnocchi_aggregation_by_resources_threshold_rule": {
                    "metric": "cpu",
                    "resource_type": "generic",
                    "query": json.dumps({"=": {"project_id": "p1"}}),
                    "aggregation_method": "mean",
                    "threshold": 40,
                    "comparison_operator": "gt",
                    "granularity": 60,
                    "evaluation_periods": 1,
                },
            },
            headers=H,
        )
        assert r.status_code == 201, r.text
        alarm_id = r.get_json()["alarm_id"]
        # Created after the start: evaluated at once, on web-1 only.
        wait_for(lambda: state() == "ok")
        second = resource("web-2")
        if refresh < 1.0:
            wait_for(lambda: service.registry.reads_any(second))
        else:
            assert not service.registry.reads_any(second)
        measure(second, 90.0)  # mean of 10 and 90: 50 > 40
        wait_for(lambda: state() == "alarm", timeout=10.0)
        # Now read by the alarm: the next measure is an event like any.
        assert service.registry.reads_any(second)
        events = service.stats.event_evaluations
        measure(second, 0.0)  # web-2's bucket 45, the mean 27.5
        wait_for(lambda: state() == "ok", timeout=10.0)
        assert service.stats.event_evaluations > events
        assert [d["state"] for d in transitions_of(rt, alarm_id)] == [
            "ok",
            "alarm",
            "ok",
        ]
        rows = outbox(rt, alarm_id)
        assert [(r.previous, r.current) for r in rows] == [
            ("insufficient data", "ok"),
            ("ok", "alarm"),
            ("alarm", "ok"),
        ]
    finally:
        service.stop()
