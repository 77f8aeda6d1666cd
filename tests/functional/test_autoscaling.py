"""The autoscaling loop, end to end on loopback.

alarmer (HTTP API + evaluator + notifier on one runtime, as ``alarmer
serve`` runs them) watches "the mean CPU of every instance of server group
asg" through a ``gnocchi_aggregation_by_resources_threshold`` alarm
created by a non-admin.  A small autoscaler receives the webhooks, reads
``current``, honours a cooldown and adds or ends instances (with their
``cpu`` metric) over the v1 API, while a feeder thread reports each live
instance's CPU every 0.2 s with ``/v1/batch/resources/metrics/measures``.

Per-instance values differ on purpose, so that the mean the alarm sees
proves which instances it counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from alarmer.evaluator.service import EvaluatorService
from notifiers.service import NotifierService

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "admin", "X-Roles": "admin"}
HEAT = {"X-User-Id": "heat", "X-Project-Id": "tenant", "X-Roles": "member"}
OTHER = {"X-User-Id": "eve", "X-Project-Id": "other", "X-Roles": "member"}
GROUP_QUERY = json.dumps(
    {"and": [{"=": {"server_group": "asg"}}, {"=": {"ended_at": None}}]}
)

pytestmark = pytest.mark.slow


class Autoscaler:
    """A minimal Heat: webhooks in, instances added or ended over v1."""

    def __init__(
        self, api: str, *, cooldown: float, min_size: int, max_size: int
    ) -> None:
        self.api = api
        self.cooldown = cooldown
        self.min_size = min_size
        self.max_size = max_size
        self.lock = threading.Lock()
        #: Live members, oldest first: name -> reported CPU value.
        self.members: dict[str, float] = {}
        #: Ended instances still reporting (stragglers): name -> value.
        self.stragglers: dict[str, float] = {}
        self.new_value = 0.0
        self.received: list[dict[str, Any]] = []
        self.actions: list[tuple[float, str, str]] = []
        self.ignored: list[tuple[float, str, str]] = []
        self.last_action = float("-inf")
        self._count = 0
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- v1 calls ------------------------------------------------------

    def add_instance(self, value: float) -> str:
        self._count += 1
        name = f"vm-{self._count}"
        response = requests.post(
            f"{self.api}/v1/resource/instance",
            json={
                "id": name,
                "server_group": "asg",
                "project_id": "tenant",
                "metrics": {"cpu": {"archive_policy_name": "high"}},
            },
            headers=HEAT,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        self.members[name] = value
        return name

    def end_instance(self, name: str) -> None:
        response = requests.patch(
            f"{self.api}/v1/resource/instance/{name}",
            json={"ended_at": time.time()},
            headers=HEAT,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        del self.members[name]

    # -- webhook -------------------------------------------------------

    def on_webhook(self, body: dict[str, Any]) -> None:
        now = time.monotonic()
        with self.lock:
            self.received.append({**body, "_at": now})
            state = body["current"]
            size = len(self.members)
            if state == "alarm":
                wanted, action = size + 1, "up"
            elif state == "ok":
                wanted, action = size - 1, "down"
            else:
                return
            if not self.min_size <= wanted <= self.max_size:
                self.ignored.append((now, action, "size limit"))
                return
            if now - self.last_action < self.cooldown:
                self.ignored.append((now, action, "cooldown"))
                return
            if action == "up":
                name = self.add_instance(self.new_value)
            else:
                # Heat's default removal policy: oldest first.
                name = next(iter(self.members))
                self.end_instance(name)
            self.last_action = now
            self.actions.append((now, action, name))

    def start(self) -> str:
        scaler = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                scaler.on_webhook(body)
                self.send_response(200)
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, daemon=True
        ).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/signal"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- load ------------------------------------------------------------

    def report(self) -> None:
        """Push the current CPU of every reporting instance (one batch)."""
        with self.lock:
            values = {**self.stragglers, **self.members}
        if not values:
            return
        now = time.time()
        body = {
            name: {"cpu": [{"timestamp": now, "value": value}]}
            for name, value in values.items()
        }
        response = requests.post(
            f"{self.api}/v1/batch/resources/metrics/measures",
            json=body,
            headers=HEAT,
            timeout=10,
        )
        assert response.status_code == 202, response.text

    def set_values(self, value: float, **overrides: float) -> None:
        with self.lock:
            for name in self.members:
                self.members[name] = overrides.get(name.replace("-", "_"),
                                                   value)  # fmt: skip

    def states(self) -> list[str]:
        with self.lock:
            return [b["current"] for b in self.received]


def wait_for(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def stack(live_api, sqlite_rt) -> Iterator[dict[str, Any]]:
    """alarmer on loopback: API, evaluator every second, notifier."""
    conf = sqlite_rt.conf
    conf.set_override("evaluation_interval", 1, group="evaluator")
    conf.set_override("refresh_interval", 0.1, group="evaluator")
    conf.set_override("check_interval", 0.1, group="coordination")
    conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    conf.set_override("poll_interval", 0.05, group="notifier")
    response = requests.post(
        f"{live_api}/v1/resource_type",
        json={
            "name": "instance",
            "attributes": {"server_group": {"type": "string"}},
        },
        headers=ADMIN,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    services = [EvaluatorService(sqlite_rt), NotifierService(sqlite_rt)]
    for service in services:
        service.start()
    scalers: list[Autoscaler] = []
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.2):
            for scaler in list(scalers):
                scaler.report()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield {"api": live_api, "scalers": scalers}
    stop.set()
    feeder.join(timeout=10)
    for scaler in scalers:
        scaler.stop()
    for service in reversed(services):
        service.stop()


def make_group(stack, **kwargs: Any) -> Autoscaler:
    scaler = Autoscaler(stack["api"], **kwargs)
    scaler.url = scaler.start()
    scaler.add_instance(20.0)
    scaler.add_instance(20.0)
    stack["scalers"].append(scaler)
    return scaler


def create_alarm(api: str, url: str, *, repeat: bool) -> dict[str, Any]:
    response = requests.post(
        f"{api}/v2/alarms",
        json={
            "name": "asg-cpu-high",
            "type": "gnocchi_aggregation_by_resources_threshold",
            "gnocchi_aggregation_by_resources_threshold_rule": {
                "metric": "cpu",
                "resource_type": "instance",
                "query": GROUP_QUERY,
                "aggregation_method": "mean",
                "granularity": 1,
                "evaluation_periods": 1,
                "comparison_operator": "gt",
                "threshold": 70,
            },
            "alarm_actions": [url],
            "ok_actions": [url],
            "repeat_actions": repeat,
        },
        headers=HEAT,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_alarm_query_is_scoped_to_the_creator_project(stack):
    make_group(stack, cooldown=0, min_size=2, max_size=2)
    alarm = create_alarm(stack["api"], "http://127.0.0.1:9/x", repeat=False)
    stored = alarm["gnocchi_aggregation_by_resources_threshold_rule"]["query"]
    scope = {
        "or": [
            {"=": {"created_by_project_id": "tenant"}},
            {"=": {"project_id": "tenant"}},
        ]
    }
    assert json.loads(stored) == {"and": [scope, json.loads(GROUP_QUERY)]}
    bad = requests.post(
        f"{stack['api']}/v2/alarms",
        json={
            "name": "bad",
            "type": "gnocchi_aggregation_by_resources_threshold",
            "gnocchi_aggregation_by_resources_threshold_rule": {
                "metric": "cpu",
                "resource_type": "instance",
                "query": '{"=": {"colour": "red"}}',
                "aggregation_method": "mean",
                "threshold": 70,
            },
        },
        headers=HEAT,
        timeout=10,
    )
    assert bad.status_code == 400
    assert "colour" in bad.json()["error_message"]["faultstring"]
    listed = requests.get(
        f"{stack['api']}/v2/alarms", headers=HEAT, timeout=10
    ).json()
    assert [a["name"] for a in listed] == ["asg-cpu-high"]


def test_loop_without_repeat_actions(stack):
    scaler = make_group(stack, cooldown=0.0, min_size=2, max_size=3)
    create_alarm(stack["api"], scaler.url, repeat=False)
    # Quiet group: the first evaluation settles on ok (nothing to remove).
    wait_for(lambda: scaler.states() == ["ok"], timeout=15)
    assert scaler.actions == []

    # Load above the threshold: alarm -> scale up; the new instance
    # reports 90 too, so the group stays in alarm (no repeat).
    scaler.new_value = 90.0
    scaler.set_values(90.0)
    wait_for(lambda: len(scaler.members) == 3, timeout=15)
    assert scaler.states() == ["ok", "alarm"]
    assert scaler.actions[0][1] == "up"

    # Load drops on the new instance only: the mean is (80 + 80 + 20) / 3
    # = 60 only if vm-3 counts; without it the mean would stay 80.
    scaler.set_values(80.0, vm_3=20.0)
    wait_for(lambda: scaler.states() == ["ok", "alarm", "ok"], timeout=15)
    # vm-1 and vm-2 never report below 80: a mean at or under 70 holds
    # vm-3's 20 (60 once the bucket holds only the new values).
    assert scaler.received[-1]["reason_data"]["most_recent"] <= 70.0
    # ok -> scale down: the oldest instance (vm-1) is ended; the group
    # (vm-2 at 80, vm-3 at 20) stays ok.
    wait_for(lambda: len(scaler.members) == 2, timeout=5)
    assert [a[1:] for a in scaler.actions] == [
        ("up", "vm-3"), ("down", "vm-1"),
    ]  # fmt: skip

    # vm-1 keeps reporting a huge value after its end: it no longer
    # matches the query (ended_at = null), so it does not count.
    with scaler.lock:
        scaler.stragglers["vm-1"] = 500.0
    time.sleep(3.5)
    assert scaler.states() == ["ok", "alarm", "ok"]
    alarm = requests.get(
        f"{stack['api']}/v2/alarms", headers=HEAT, timeout=10
    ).json()[0]
    assert alarm["state"] == "ok"


def test_loop_with_repeat_actions_and_cooldown(stack):
    cooldown = 2.5
    scaler = make_group(stack, cooldown=cooldown, min_size=2, max_size=4)
    create_alarm(stack["api"], scaler.url, repeat=True)
    wait_for(lambda: "ok" in scaler.states(), timeout=15)

    # High load; new instances report 75 while the first two report 90:
    # the mean reaching 82.5 proves both new members count from their
    # first measures.  (The current partial bucket is evaluated, as in
    # Aodh, so a notification may also carry the mean of a bucket that
    # holds only some members' points, or both old and new values.)
    scaler.new_value = 75.0
    scaler.set_values(90.0)
    wait_for(lambda: len(scaler.members) == 4, timeout=20)
    wait_for(
        lambda: any(
            b["current"] == "alarm"
            and b["reason_data"]["most_recent"] == pytest.approx(82.5)
            for b in scaler.received
        ),
        timeout=10,
    )
    seen = [
        round(b["reason_data"]["most_recent"], 2)
        for b in scaler.received
        if b["current"] == "alarm"
    ]
    assert 82.5 in seen
    assert all(value > 70.0 for value in seen)
    ups = [a for a in scaler.actions if a[1] == "up"]
    assert len(ups) == 2
    assert ups[1][0] - ups[0][0] >= cooldown
    # Repeated alarm notifications arrived during the cooldown and at the
    # size limit, and were not acted upon.
    assert any(reason == "cooldown" for _, _, reason in scaler.ignored)
    wait_for(
        lambda: any(r == "size limit" for _, _, r in scaler.ignored),
        timeout=10,
    )

    # Load drops: repeated ok notifications scale down one step per
    # cooldown, down to the minimum size.
    scaler.set_values(20.0)
    wait_for(lambda: len(scaler.members) == 2, timeout=20)
    downs = [a for a in scaler.actions if a[1] == "down"]
    assert [a[2] for a in downs] == ["vm-1", "vm-2"]
    assert downs[1][0] - downs[0][0] >= cooldown
    assert downs[0][0] - ups[1][0] >= cooldown
    # The group keeps reporting ok at the minimum size.
    count = len(scaler.received)
    wait_for(lambda: len(scaler.received) >= count + 2, timeout=10)
    assert set(scaler.states()[count:]) == {"ok"}
    assert len(scaler.members) == 2
