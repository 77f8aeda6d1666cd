"""Alarm lifecycle options over HTTP with the real evaluator and notifier.

Each test drives measures through a running API, evaluator and notifier
and checks the states, the history and what a webhook receiver gets.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from alarmer.evaluator.service import EvaluatorService
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import Receiver, wait_for

H = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "member"}
BY_METRICS = "gnocchi_aggregation_by_metrics_threshold"

pytestmark = pytest.mark.slow


class Stack:
    """A live API with an evaluator, a notifier and a receiver."""

    def __init__(self, api: str, receiver: Receiver) -> None:
        self.api = api
        self.receiver = receiver

    def metric(self) -> str:
        r = requests.post(
            f"{self.api}/v1/metric",
            json={"archive_policy_name": "high"},
            headers=H,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def alarm(self, metric_id: str, hook: str, **fields: Any) -> str:
        rule = {
            "metrics": [metric_id],
            "aggregation_method": "max",
            "threshold": 50,
            "comparison_operator": "gt",
            "granularity": 60,
            "evaluation_periods": 1,
            **fields.pop("rule", {}),
        }
        r = requests.post(
            f"{self.api}/v2/alarms",
            json={
                "name": "lifecycle",
                "type": BY_METRICS,
                "alarm_actions": [hook],
                "ok_actions": [hook],
                f"{BY_METRICS}_rule": rule,
                **fields,
            },
            headers=H,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["alarm_id"])

    def measures(self, metric_id: str, points: list[tuple[int, float]]):
        r = requests.post(
            f"{self.api}/v1/metric/{metric_id}/measures",
            json=[{"timestamp": t, "value": v} for t, v in points],
            headers=H,
        )
        assert r.status_code == 202, r.text

    def state(self, alarm_id: str) -> str:
        r = requests.get(f"{self.api}/v2/alarms/{alarm_id}/state", headers=H)
        assert r.status_code == 200, r.text
        return str(r.json())

    def history(self, alarm_id: str) -> list[dict[str, Any]]:
        r = requests.get(f"{self.api}/v2/alarms/{alarm_id}/history", headers=H)
        assert r.status_code == 200, r.text
        return list(reversed(r.json()))

    def transitions(self, alarm_id: str) -> list[str]:
        return [
            json.loads(h["detail"])["state"]
            for h in self.history(alarm_id)
            if h["type"] == "state transition"
        ]

    def received(self, hook_path: str) -> list[tuple[str, str]]:
        return [
            (g.json["previous"], g.json["current"])
            for g in self.receiver.bodies(hook_path)
        ]


@pytest.fixture
def stack(live_api, sqlite_rt) -> Iterator[Stack]:
    conf = sqlite_rt.conf
    conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    conf.set_override("refresh_interval", 0.05, group="evaluator")
    conf.set_override("evaluation_interval", 1, group="evaluator")
    conf.set_override("min_evaluation_interval", 1, group="evaluator")
    conf.set_override("check_interval", 0.05, group="coordination")
    receiver = Receiver()
    evaluator = EvaluatorService(sqlite_rt)
    notifier = NotifierService(sqlite_rt)
    evaluator.start()
    notifier.start()
    try:
        yield Stack(live_api, receiver)
    finally:
        notifier.stop()
        evaluator.stop()
        receiver.stop()


def _now() -> int:
    return int(time.time())


def test_repeat_interval_limits_re_notifications(stack):
    metric_id = stack.metric()
    limited, unlimited = f"/r/{uuid.uuid4()}", f"/r/{uuid.uuid4()}"
    with_interval = stack.alarm(
        metric_id,
        stack.receiver.url(limited),
        repeat_actions=True,
        repeat_interval=4,
    )
    as_aodh = stack.alarm(
        metric_id, stack.receiver.url(unlimited), repeat_actions=True
    )
    stack.measures(metric_id, [(_now(), 90.0)])
    wait_for(lambda: stack.received(limited), timeout=15)
    started = time.monotonic()
    time.sleep(6.5)
    elapsed = time.monotonic() - started
    limited_got = stack.received(limited)
    # One transition, then at most one repeat per 4 s.
    assert limited_got[0] == ("insufficient data", "alarm")
    assert set(limited_got[1:]) <= {("alarm", "alarm")}
    assert 2 <= len(limited_got) <= 2 + int(elapsed // 4)
    # Aodh's behaviour when unset: a repeat at every evaluation (1 s).
    assert len(stack.received(unlimited)) >= len(limited_got) + 2
    assert stack.state(with_interval) == stack.state(as_aodh) == "alarm"
    assert stack.transitions(with_interval) == ["alarm"]


def test_m_of_n_alarms_where_aodh_would_not(stack):
    # Event-driven only: the 1 s window slides away afterwards.
    metric_id = stack.metric()
    hook_m, hook_aodh = f"/m/{uuid.uuid4()}", f"/m/{uuid.uuid4()}"
    rule = {
        "aggregation_method": "mean",
        "granularity": 1,
        "evaluation_periods": 3,
    }
    m_of_n = stack.alarm(
        metric_id,
        stack.receiver.url(hook_m),
        rule={**rule, "datapoints_to_alarm": 2},
    )
    aodh = stack.alarm(metric_id, stack.receiver.url(hook_aodh), rule=rule)
    end = _now() + 1
    # Oldest first: 90, 90, 10 (two of the three breach).
    stack.measures(
        metric_id, [(end - 3, 90.0), (end - 2, 90.0), (end - 1, 10.0)]
    )
    wait_for(lambda: stack.received(hook_m), timeout=15)
    wait_for(lambda: stack.received(hook_aodh), timeout=15)
    assert stack.received(hook_m)[0] == ("insufficient data", "alarm")
    # Aodh: mixed points, the trend of the last one.
    assert stack.received(hook_aodh)[0] == ("insufficient data", "ok")
    assert stack.transitions(m_of_n)[0] == "alarm"
    assert stack.transitions(aodh)[0] == "ok"


def test_keep_firing_for_holds_alarm_then_clears_once(stack):
    metric_id = stack.metric()
    hook = f"/k/{uuid.uuid4()}"
    alarm_id = stack.alarm(
        metric_id,
        stack.receiver.url(hook),
        keep_firing_for=3,
        rule={"aggregation_method": "min"},
    )
    stack.measures(metric_id, [(_now(), 90.0)])
    wait_for(lambda: stack.state(alarm_id) == "alarm", timeout=15)
    stack.measures(metric_id, [(_now(), 10.0)])
    cleared = time.monotonic()
    time.sleep(1.5)
    assert stack.state(alarm_id) == "alarm"
    wait_for(lambda: stack.state(alarm_id) == "ok", timeout=15)
    assert time.monotonic() - cleared >= 3
    wait_for(lambda: len(stack.received(hook)) == 2, timeout=15)
    assert stack.received(hook) == [
        ("insufficient data", "alarm"),
        ("alarm", "ok"),
    ]
    assert stack.transitions(alarm_id) == ["alarm", "ok"]


def test_pending_for_waits_before_alarm(stack):
    metric_id = stack.metric()
    hook = f"/p/{uuid.uuid4()}"
    alarm_id = stack.alarm(metric_id, stack.receiver.url(hook), pending_for=3)
    stack.measures(metric_id, [(_now(), 10.0)])
    wait_for(lambda: stack.state(alarm_id) == "ok", timeout=15)
    stack.measures(metric_id, [(_now(), 90.0)])
    breached = time.monotonic()
    time.sleep(1.5)
    assert stack.state(alarm_id) == "ok"
    wait_for(lambda: stack.state(alarm_id) == "alarm", timeout=15)
    assert time.monotonic() - breached >= 2.5
    wait_for(lambda: len(stack.received(hook)) == 2, timeout=15)
    assert stack.received(hook) == [
        ("insufficient data", "ok"),
        ("ok", "alarm"),
    ]


def test_missing_data_ok_instead_of_insufficient(stack):
    metric_id = stack.metric()
    hook = f"/d/{uuid.uuid4()}"
    alarm_id = stack.alarm(
        metric_id, stack.receiver.url(hook), missing_data="ok"
    )
    wait_for(lambda: stack.state(alarm_id) == "ok", timeout=15)
    wait_for(lambda: stack.received(hook), timeout=15)
    assert stack.received(hook) == [("insufficient data", "ok")]
    (entry,) = [
        h for h in stack.history(alarm_id) if h["type"] == "state transition"
    ]
    reason = json.loads(entry["detail"])["transition_reason"]
    assert "missing data treated as ok" in reason


def _silence(stack: Stack, alarm_id: str, seconds: float) -> dict[str, Any]:
    ends = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    r = requests.post(
        f"{stack.api}/v2/silences",
        json={
            "matchers": [{"field": "alarm_id", "op": "=", "value": alarm_id}],
            "ends_at": ends.isoformat(),
            "comment": "maintenance",
        },
        headers=H,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_silence_holds_the_webhook_then_notifies_once(stack):
    metric_id = stack.metric()
    hook = f"/s/{uuid.uuid4()}"
    alarm_id = stack.alarm(metric_id, stack.receiver.url(hook))
    stack.measures(metric_id, [(_now(), 10.0)])
    wait_for(lambda: stack.received(hook), timeout=15)
    silence = _silence(stack, alarm_id, 4)
    assert silence["status"] == "active"
    assert silence["created_by"] == "u1"
    time.sleep(1.2)  # the evaluator rereads silences every refresh
    stack.measures(metric_id, [(_now(), 90.0)])
    wait_for(lambda: stack.state(alarm_id) == "alarm", timeout=15)
    # State and history change; the receiver gets nothing.
    (entry,) = [
        h
        for h in stack.history(alarm_id)
        if h["type"] == "state transition"
        and json.loads(h["detail"])["state"] == "alarm"
    ]
    assert json.loads(entry["detail"])["silenced"] == [silence["silence_id"]]
    time.sleep(1.0)
    assert stack.received(hook) == [("insufficient data", "ok")]
    # The silence ends: the current state, once.
    wait_for(lambda: len(stack.received(hook)) == 2, timeout=20)
    time.sleep(2.5)
    assert stack.received(hook) == [
        ("insufficient data", "ok"),
        ("ok", "alarm"),
    ]
    (last,) = stack.receiver.bodies(hook)[1:]
    assert last.json["reason"].startswith("Silence ended")
    r = requests.get(
        f"{stack.api}/v2/silences/{silence['silence_id']}", headers=H
    )
    assert r.json()["status"] == "expired"


def test_a_silence_that_ends_on_the_notified_state_sends_nothing(stack):
    metric_id = stack.metric()
    hook = f"/s/{uuid.uuid4()}"
    alarm_id = stack.alarm(metric_id, stack.receiver.url(hook))
    stack.measures(metric_id, [(_now(), 90.0)])
    wait_for(lambda: stack.received(hook), timeout=15)
    silence = _silence(stack, alarm_id, 60)
    time.sleep(1.2)
    # Set to ok by hand (not notified); the evaluator, silenced, moves
    # it back to alarm: the state last notified.
    r = requests.put(
        f"{stack.api}/v2/alarms/{alarm_id}/state", json="ok", headers=H
    )
    assert r.status_code == 200, r.text
    wait_for(lambda: stack.transitions(alarm_id)[-1:] == ["alarm"], timeout=15)
    assert stack.transitions(alarm_id) == ["alarm", "ok", "alarm"]
    r = requests.delete(
        f"{stack.api}/v2/silences/{silence['silence_id']}", headers=H
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "expired"
    time.sleep(3)
    assert stack.received(hook) == [("insufficient data", "alarm")]


def test_an_alarm_has_its_own_evaluation_interval(stack):
    metric_id = stack.metric()
    every_second, every_five = f"/e/{uuid.uuid4()}", f"/e/{uuid.uuid4()}"
    stack.alarm(
        metric_id, stack.receiver.url(every_second), repeat_actions=True
    )
    stack.alarm(
        metric_id,
        stack.receiver.url(every_five),
        repeat_actions=True,
        evaluation_interval=5,
    )
    stack.measures(metric_id, [(_now(), 90.0)])
    wait_for(lambda: stack.received(every_five), timeout=15)
    time.sleep(6)
    fast, slow = stack.received(every_second), stack.received(every_five)
    # The event-driven evaluation, then one per interval.
    assert 2 <= len(slow) <= 3
    assert len(fast) >= len(slow) + 3
