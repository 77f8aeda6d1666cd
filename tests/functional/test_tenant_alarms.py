"""The tenant boundary through alarms: a project reads only its own data.

Project B must not read project A's measures through an alarm: neither
by creating or updating an alarm whose rule names A's metrics or
resources (refused with a 400 naming the field and the id, nothing
stored), nor through an alarm that already names them (an alarm stored
before the check, a resource moved to another project): the evaluator
resolves every rule for the alarm's project, and such an alarm is in
``insufficient data`` with a reason, history and webhooks that carry
nothing of A's.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

import pytest
import requests

from alarmer.alarms.tables import Alarm
from alarmer.evaluator.service import EvaluatorService
from alarmer.metrics import index
from api.app import create_app
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import Receiver, wait_for
from tests.functional.v2_helpers import assert_envelope, count_alarms

ALICE = {"X-User-Id": "alice", "X-Project-Id": "pa", "X-Roles": "member"}
BOB = {"X-User-Id": "bob", "X-Project-Id": "pb", "X-Roles": "member"}
ADMIN = {"X-User-Id": "admin", "X-Project-Id": "padmin", "X-Roles": "admin"}

RESOURCES = "gnocchi_resources_threshold"
BY_METRICS = "gnocchi_aggregation_by_metrics_threshold"
BY_RESOURCES = "gnocchi_aggregation_by_resources_threshold"

#: A's secret value: it must never show anywhere B can look.
SECRET = 8675309.25
SECRET_TEXT = "8675309"

BASE = {
    "aggregation_method": "mean",
    "threshold": 10,
    "comparison_operator": "gt",
    "granularity": 1,
    "evaluation_periods": 1,
}


def _ok(response, status: int = 201) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _a_and_b(client) -> dict[str, str]:
    """A's metric and resource, and B's own metric, over /v1."""
    a_metric = _ok(
        client.post(
            "/v1/metric", json={"archive_policy_name": "low"}, headers=ALICE
        )
    )["id"]
    vm1 = _ok(
        client.post(
            "/v1/resource/generic",
            json={
                "id": "vm1",
                "metrics": {"cpu": {"archive_policy_name": "low"}},
            },
            headers=ALICE,
        )
    )
    b_metric = _ok(
        client.post(
            "/v1/metric", json={"archive_policy_name": "low"}, headers=BOB
        )
    )["id"]
    # The v1 API itself hides A's from B: the alarm API must as well.
    assert client.get(f"/v1/metric/{a_metric}", headers=BOB).status_code == 404
    return {
        "a_metric": a_metric,
        "a_resource": vm1["id"],
        "a_resource_metric": vm1["metrics"]["cpu"],
        "b_metric": b_metric,
    }


def _rule(kind: str, ids: dict[str, str], target: str) -> dict[str, Any]:
    """A rule of *kind* naming *target* (an id of ``ids``)."""
    if kind == RESOURCES:
        return {
            **BASE,
            "metric": "cpu",
            "resource_type": "generic",
            "resource_id": ids[target],
        }
    if kind == BY_METRICS:
        return {**BASE, "metrics": [ids["b_metric"], ids[target]]}
    return {
        **BASE,
        "metric": "cpu",
        "resource_type": "generic",
        "query": json.dumps({"=": {"id": ids[target]}}),
    }


#: (alarm type, sub-rule type for composites, what is named, field).
CASES = [
    pytest.param(
        BY_METRICS,
        None,
        "a_metric",
        f"{BY_METRICS}_rule.metrics[1]",
        id="by-metrics-metric",
    ),
    pytest.param(
        BY_METRICS,
        None,
        "a_resource_metric",
        f"{BY_METRICS}_rule.metrics[1]",
        id="by-metrics-resource-metric",
    ),
    pytest.param(
        RESOURCES,
        None,
        "a_resource",
        f"{RESOURCES}_rule.resource_id",
        id="resources",
    ),
    pytest.param(
        RESOURCES,
        None,
        "guessed",
        f"{RESOURCES}_rule.resource_id",
        id="resources-guessed-uuid5",
    ),
    pytest.param(
        BY_RESOURCES,
        None,
        "a_resource",
        f"{BY_RESOURCES}_rule.query",
        id="by-resources-id",
    ),
    pytest.param(
        "composite",
        BY_METRICS,
        "a_metric",
        "composite_rule.or[1].metrics[1]",
        id="composite-by-metrics",
    ),
    pytest.param(
        "composite",
        RESOURCES,
        "guessed",
        "composite_rule.or[1].resource_id",
        id="composite-resources",
    ),
]


def _body(
    kind: str, sub: str | None, ids: dict[str, str], target: str
) -> dict[str, Any]:
    ids = {
        # Non-UUID ids map to uuid5 (as in Gnocchi): anyone can compute
        # the id of A's "vm1"; knowing it must not be enough.
        "guessed": index.resource_uuid("vm1", "alice:pa"),
        **ids,
    }
    if kind == "composite":
        own = {"type": BY_METRICS, **BASE, "metrics": [ids["b_metric"]]}
        assert sub is not None
        foreign = {"type": sub, **_rule(sub, ids, target)}
        rule: Any = {"or": [own, foreign]}
    else:
        rule = _rule(kind, ids, target)
    return {"name": "peek", "type": kind, f"{kind}_rule": rule}


@pytest.mark.parametrize(("kind", "sub", "target", "field"), CASES)
def test_b_cannot_create_an_alarm_on_a_s_data(
    client, kind, sub, target, field
):
    ids = _a_and_b(client)
    body = _body(kind, sub, ids, target)
    named = ids.get(target) or index.resource_uuid("vm1", "alice:pa")
    message = assert_envelope(
        client.post("/v2/alarms", json=body, headers=BOB),
        400,
        f"field/attribute {field}.",
        named,
    )
    assert "not visible to project pb" in message
    assert client.get("/v2/alarms", headers=BOB).get_json() == []
    assert count_alarms(client) == 0


@pytest.mark.parametrize(("kind", "sub", "target", "field"), CASES)
def test_b_cannot_update_its_alarm_onto_a_s_data(
    client, kind, sub, target, field
):
    ids = _a_and_b(client)
    # The same alarm, naming B's metric or a resource not (yet) known.
    unknown = str(uuid.uuid4())
    own_ids = {
        **ids,
        "a_metric": ids["b_metric"],
        "a_resource_metric": ids["b_metric"],
        "a_resource": unknown,
        "guessed": unknown,
    }
    own = _body(kind, sub, own_ids, target)
    created = _ok(client.post("/v2/alarms", json=own, headers=BOB))
    alarm_id = created["alarm_id"]
    foreign = _body(kind, sub, ids, target)
    response = client.put(f"/v2/alarms/{alarm_id}", json=foreign, headers=BOB)
    assert_envelope(response, 400, f"field/attribute {field}.")
    stored = _ok(client.get(f"/v2/alarms/{alarm_id}", headers=BOB), 200)
    assert stored[f"{kind}_rule"] == created[f"{kind}_rule"]
    history = _ok(
        client.get(f"/v2/alarms/{alarm_id}/history", headers=BOB), 200
    )
    assert [entry["type"] for entry in history] == ["creation"]


def test_the_owner_and_an_admin_for_the_owner_may(client):
    ids = _a_and_b(client)
    for kind, target in (
        (BY_METRICS, "a_metric"),
        (RESOURCES, "a_resource"),
        (BY_RESOURCES, "a_resource"),
    ):
        body = _body(kind, None, {**ids, "b_metric": ids["a_metric"]}, target)
        _ok(client.post("/v2/alarms", json=body, headers=ALICE))
        as_admin = _ok(
            client.post(
                "/v2/alarms",
                json={**body, "project_id": "pa", "user_id": "alice"},
                headers=ADMIN,
            )
        )
        assert as_admin["project_id"] == "pa"
        # An administrator creating it for B (or for its own project)
        # gets what B would: the alarm would read A's data for B.
        for project in ("pb", "padmin"):
            response = client.post(
                "/v2/alarms",
                json={**body, "project_id": project, "user_id": "u"},
                headers=ADMIN,
            )
            assert_envelope(response, 400, f"to project {project}")
    assert count_alarms(client) == 6
    # An administrator moving A's alarm to B is refused the same way.
    alarm = client.get("/v2/alarms", headers=ALICE).get_json()[0]
    moved = {
        key: alarm[key]
        for key in ("name", "type", f"{alarm['type']}_rule", "user_id")
    }
    response = client.put(
        f"/v2/alarms/{alarm['alarm_id']}",
        json={**moved, "project_id": "pb"},
        headers=ADMIN,
    )
    assert_envelope(response, 400, "to project pb")


def test_a_metric_of_a_resource_made_for_a_project_is_that_project_s(client):
    """Ceilometer's case: a service creates the resource for a project."""
    made = _ok(
        client.post(
            "/v1/resource/generic",
            json={
                "id": "vm9",
                "project_id": "pa",
                "metrics": {"cpu": {"archive_policy_name": "low"}},
            },
            headers=ADMIN,
        )
    )
    body = {
        "name": "cpu",
        "type": BY_METRICS,
        f"{BY_METRICS}_rule": {**BASE, "metrics": [made["metrics"]["cpu"]]},
    }
    _ok(client.post("/v2/alarms", json=body, headers=ALICE))
    response = client.post("/v2/alarms", json=body, headers=BOB)
    assert_envelope(response, 400, made["metrics"]["cpu"])
    resources = {
        "name": "cpu",
        "type": RESOURCES,
        f"{RESOURCES}_rule": {
            **BASE,
            "metric": "cpu",
            "resource_type": "generic",
            "resource_id": made["id"],
        },
    }
    _ok(client.post("/v2/alarms", json=resources, headers=ALICE))
    assert_envelope(
        client.post("/v2/alarms", json=resources, headers=BOB), 400, made["id"]
    )


def test_names_and_ids_not_yet_known_are_still_accepted(client):
    """Nothing is refused for not existing: it resolves when it does."""
    body = _body(RESOURCES, None, {"x": "vm1"}, "x")
    _ok(client.post("/v2/alarms", json=body, headers=BOB))
    body = _body(
        BY_METRICS, None, {"b_metric": str(uuid.uuid4()), "x": "y"}, "b_metric"
    )
    _ok(client.post("/v2/alarms", json=body, headers=BOB))


# -- evaluation --------------------------------------------------------------


def _insert(rt, project: str, kind: str, rule: Any, hook: str) -> str:
    """An alarm stored directly (as before the API checked references)."""
    alarm_id = str(uuid.uuid4())
    with rt.db.session() as session:
        session.add(
            Alarm(
                alarm_id=alarm_id,
                name=f"old-{kind}",
                type=kind,
                rule=copy.deepcopy(rule),
                state="ok",
                ok_actions=[hook],
                alarm_actions=[hook],
                insufficient_data_actions=[hook],
                time_constraints=[],
                project_id=project,
                user_id="bob" if project == "pb" else "alice",
            )
        )
        session.commit()
    return alarm_id


def _push(
    url: str,
    metric_id: str,
    headers: dict[str, str],
    value: float = SECRET,
) -> None:
    end = time.time()
    response = requests.post(
        f"{url}/v1/metric/{metric_id}/measures",
        json=[{"timestamp": end - i, "value": value} for i in range(3)],
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 202, response.text


def _state(url: str, alarm_id: str) -> dict[str, Any]:
    response = requests.get(f"{url}/v2/alarms/{alarm_id}", headers=BOB)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _everything_b_sees(url: str, alarm_id: str) -> str:
    alarm = requests.get(f"{url}/v2/alarms/{alarm_id}", headers=BOB)
    history = requests.get(f"{url}/v2/alarms/{alarm_id}/history", headers=BOB)
    assert alarm.status_code == history.status_code == 200
    return json.dumps([alarm.json(), history.json()])


@pytest.fixture
def services(live_api, sqlite_rt):
    conf = sqlite_rt.conf
    conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    conf.set_override("refresh_interval", 0.05, group="evaluator")
    conf.set_override("evaluation_interval", 1, group="evaluator")
    conf.set_override("check_interval", 0.05, group="coordination")
    receiver = Receiver()
    evaluator = EvaluatorService(sqlite_rt)
    notifier = NotifierService(sqlite_rt)
    evaluator.start()
    notifier.start()
    try:
        yield live_api, sqlite_rt, evaluator, receiver
    finally:
        notifier.stop()
        evaluator.stop()
        receiver.stop()


@pytest.mark.slow
def test_an_old_alarm_on_a_s_data_reads_nothing_of_it(services):
    url, rt, evaluator, receiver = services
    a_metric = requests.post(
        f"{url}/v1/metric", json={"archive_policy_name": "high"}, headers=ALICE
    ).json()["id"]
    vm1 = requests.post(
        f"{url}/v1/resource/generic",
        json={
            "id": "vm1",
            "metrics": {"cpu": {"archive_policy_name": "high"}},
        },
        headers=ALICE,
    ).json()
    by_metrics = {**BASE, "metrics": [a_metric]}
    stolen = {
        BY_METRICS: by_metrics,
        RESOURCES: {
            **BASE,
            "metric": "cpu",
            "resource_type": "generic",
            "resource_id": vm1["id"],
        },
        # A query stored without the project filter (an old alarm).
        BY_RESOURCES: {
            **BASE,
            "metric": "cpu",
            "resource_type": "generic",
            "query": json.dumps({"=": {"id": vm1["id"]}}),
        },
        "composite": {
            "and": [
                {"type": BY_METRICS, **by_metrics},
                {"type": BY_METRICS, **by_metrics, "threshold": 0},
            ]
        },
    }
    b_alarms = {
        _insert(rt, "pb", kind, rule, receiver.url(f"/b/{kind}")): kind
        for kind, rule in stolen.items()
    }
    # A's own alarm on the same data: it sees the value.
    a_alarm = _insert(rt, "pa", BY_METRICS, by_metrics, receiver.url("/a"))
    wait_for(lambda: a_alarm in evaluator.owned())
    wait_for(lambda: all(a in evaluator.owned() for a in b_alarms))
    _push(url, a_metric, ALICE)
    _push(url, vm1["metrics"]["cpu"], ALICE)
    wait_for(
        lambda: any(
            g.json["current"] == "alarm" for g in receiver.bodies("/a")
        ),
        timeout=15,
    )
    fired = [g for g in receiver.bodies("/a") if g.json["current"] == "alarm"]
    assert SECRET_TEXT in fired[0].json["reason"]
    for kind in b_alarms.values():
        wait_for(
            lambda k=kind: any(
                g.json["current"] == "insufficient data"
                for g in receiver.bodies(f"/b/{k}")
            ),
            timeout=15,
        )
    time.sleep(2.5)  # two more periodic evaluations of every alarm
    for alarm_id, kind in b_alarms.items():
        seen = _everything_b_sees(url, alarm_id)
        assert SECRET_TEXT not in seen, (kind, seen)
        alarm = requests.get(f"{url}/v2/alarms/{alarm_id}", headers=BOB)
        assert alarm.json()["state"] == "insufficient data", kind
        hooks = receiver.bodies(f"/b/{kind}")
        assert [g.json["current"] for g in hooks] == ["insufficient data"]
        for hook in hooks:
            assert SECRET_TEXT not in hook.body.decode(), (kind, hook.json)
            assert hook.json["reason_data"].get("most_recent") is None
            assert hook.json["reason"] == alarm.json()["state_reason"]


@pytest.mark.slow
def test_a_resource_moved_to_another_project_is_no_longer_read(services):
    """Made for B by a service, then given to A: B's alarm stops reading."""
    url, _, evaluator, receiver = services
    made = requests.post(
        f"{url}/v1/resource/generic",
        json={
            "id": "shared",
            "project_id": "pb",
            "metrics": {"cpu": {"archive_policy_name": "high"}},
        },
        headers=ADMIN,
    ).json()
    body = {
        "name": "mine-for-now",
        "type": RESOURCES,
        "alarm_actions": [receiver.url("/b")],
        "insufficient_data_actions": [receiver.url("/b")],
        f"{RESOURCES}_rule": {
            **BASE,
            "metric": "cpu",
            "resource_type": "generic",
            "resource_id": made["id"],
        },
    }
    response = requests.post(f"{url}/v2/alarms", json=body, headers=BOB)
    assert response.status_code == 201, response.text
    alarm_id = response.json()["alarm_id"]
    wait_for(lambda: alarm_id in evaluator.owned())
    # While the resource is B's, B's alarm reads it.
    _push(url, made["metrics"]["cpu"], ADMIN, value=50.0)
    wait_for(lambda: _state(url, alarm_id)["state"] == "alarm", timeout=15)
    passes = evaluator.stats.revalidations
    moved = requests.patch(
        f"{url}/v1/resource/generic/{made['id']}",
        json={"project_id": "pa"},
        headers=ADMIN,
    )
    assert moved.status_code == 200, moved.text
    # The control thread notices the index change and resolves again.
    wait_for(lambda: evaluator.stats.revalidations > passes, timeout=10)
    assert not evaluator.registry.get(alarm_id).metric_ids()
    _push(url, made["metrics"]["cpu"], ADMIN)
    wait_for(
        lambda: _state(url, alarm_id)["state"] == "insufficient data",
        timeout=15,
    )
    time.sleep(2.5)
    seen = _everything_b_sees(url, alarm_id)
    assert SECRET_TEXT not in seen, seen
    state = _state(url, alarm_id)
    assert state["state"] == "insufficient data"
    assert state["state_reason"] == (
        f"metric cpu for resource {made['id']} does not exists"
    )
    hooks = receiver.bodies("/b")
    assert [g.json["current"] for g in hooks] == ["alarm", "insufficient data"]
    for hook in hooks:
        assert SECRET_TEXT not in hook.body.decode()


def test_an_evaluation_costs_no_more_queries(sqlite_rt):
    """Scoping is paid when alarms are (re)loaded, not per evaluation.

    A ``gnocchi_resources_threshold`` or by-metrics alarm resolved at
    load time is evaluated without any SQL statement (as before the
    check), a by-resources one with the one read of the change counter
    its cached group needs (each as before the check); a change of the
    index costs one batched pass of the control thread.
    """
    import sqlalchemy as sa

    rt = sqlite_rt
    client = create_app(rt).test_client()
    ids = _a_and_b(client)
    by_metrics = {**BASE, "metrics": [ids["a_metric"]]}
    kinds = {
        BY_METRICS: by_metrics,
        RESOURCES: _rule(RESOURCES, ids, "a_resource"),
        BY_RESOURCES: _rule(BY_RESOURCES, ids, "a_resource"),
    }
    alarms = {
        kind: _insert(rt, "pa", kind, rule, "log://")
        for kind, rule in kinds.items()
    }
    service = EvaluatorService(rt)
    service.membership.start()
    service._control_step(force=True)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(rt.db.engine, "before_cursor_execute", count)
    try:
        per_kind = {}
        for kind, alarm_id in alarms.items():
            alarm = service.registry.get(alarm_id)
            assert alarm is not None
            assert alarm.metric_ids(), kind  # A's alarm reads A's data
            for _ in range(2):  # the first one commits a transition
                service.evaluate(alarm)
            statements.clear()
            for _ in range(10):
                service.evaluate(alarm)
            per_kind[kind] = len(statements) / 10
    finally:
        sa.event.remove(rt.db.engine, "before_cursor_execute", count)
    # By resources: the read of the counter, in its transaction (SQLite's
    # explicit BEGIN), as before.
    assert per_kind == {BY_METRICS: 0, RESOURCES: 0, BY_RESOURCES: 2}
    assert not [
        s
        for s in statements
        if "resource_generation" not in s and s != "BEGIN"
    ]
