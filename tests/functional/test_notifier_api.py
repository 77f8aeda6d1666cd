"""The delivery log API and the redeliver action, over the Flask app."""

from __future__ import annotations

import uuid

import pytest

from notifiers import tables as models
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import (
    Receiver,
    add_notification,
    wait_for,
)

MEMBER = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "member"}
OTHER = {"X-User-Id": "u2", "X-Project-Id": "p2", "X-Roles": "member"}
READER = {"X-User-Id": "u3", "X-Project-Id": "p1", "X-Roles": "reader"}
ADMIN = {"X-User-Id": "a", "X-Project-Id": "admin", "X-Roles": "admin"}


@pytest.fixture
def setup(rt, client):
    rt.conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    rt.conf.set_override("poll_interval", 0.05, group="notifier")
    receiver = Receiver()
    receiver.behaviour["/hook"] = 400
    service = NotifierService(rt)
    service.start()
    yield rt, client, receiver
    service.stop()
    receiver.stop()


def _dead(client, alarm_id, headers=MEMBER):
    def check():
        response = client.get(
            f"/v2/alarms/{alarm_id}/deliveries", headers=headers
        )
        if response.status_code == 404:  # not expanded yet
            return []
        return [d for d in response.get_json() if d["status"] == "dead"]

    return wait_for(check)


def test_list_detail_and_redeliver(setup):
    rt, client, receiver = setup
    alarm_id = str(uuid.uuid4())
    url = receiver.url() + "?token=abc"
    add_notification(rt, alarm_id, 1, [url, "log://"])
    (dead,) = _dead(client, alarm_id)
    assert dead["delivery_id"] == models.delivery_id(alarm_id, 1, url)
    assert dead["target"].endswith("/hook?token=***")
    assert dead["attempts"] == 1
    assert dead["last_status_code"] == 400
    assert "answer 400" in dead["last_error"]
    assert dead["current"] == "alarm"
    assert dead["next_attempt_at"] is None
    listed = client.get(
        f"/v2/alarms/{alarm_id}/deliveries", headers=MEMBER
    ).get_json()
    assert {d["status"] for d in listed} == {"dead", "delivered"}
    only = client.get(
        f"/v2/alarms/{alarm_id}/deliveries?status=delivered", headers=READER
    ).get_json()
    assert [d["target"] for d in only] == ["log://"]

    detail = client.get(
        f"/v2/alarms/{alarm_id}/deliveries/{dead['delivery_id']}",
        headers=MEMBER,
    ).get_json()
    (attempt,) = detail["attempt_log"]
    assert attempt["status_code"] == 400
    assert attempt["outcome"] == "failed"
    assert attempt["duration_ms"] >= 0

    receiver.behaviour["/hook"] = 200
    path = f"/v2/alarms/{alarm_id}/deliveries/{dead['delivery_id']}/redeliver"
    assert client.post(path, headers=READER).status_code == 403
    response = client.post(path, headers=MEMBER)
    assert response.status_code == 202
    assert response.get_json()["status"] in (
        "pending",
        "in_flight",
        "delivered",
    )
    (got,) = wait_for(lambda: receiver.bodies("/hook"))
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["webhook-id"] == dead["delivery_id"]

    def delivered():
        return (
            client.get(
                f"/v2/alarms/{alarm_id}/deliveries/{dead['delivery_id']}",
                headers=MEMBER,
            ).get_json()["status"]
            == "delivered"
        )

    wait_for(delivered)
    again = client.post(path, headers=MEMBER)
    assert again.status_code == 409
    fault = again.get_json()["error_message"]
    assert "not dead" in fault["faultstring"]


def test_other_projects_see_nothing(setup):
    rt, client, receiver = setup
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, [receiver.url()])
    (dead,) = _dead(client, alarm_id, ADMIN)
    response = client.get(f"/v2/alarms/{alarm_id}/deliveries", headers=OTHER)
    assert response.status_code == 404
    assert response.get_json()["error_message"]["faultcode"] == "Client"
    detail = client.get(
        f"/v2/alarms/{alarm_id}/deliveries/{dead['delivery_id']}",
        headers=OTHER,
    )
    assert detail.status_code == 404
    redo = client.post(
        f"/v2/alarms/{alarm_id}/deliveries/{dead['delivery_id']}/redeliver",
        headers=OTHER,
    )
    assert redo.status_code == 404
    # Nothing changed: still dead.
    assert _dead(client, alarm_id, ADMIN)[0]["attempts"] == 1


def test_bad_query_parameters_are_400(setup):
    rt, client, receiver = setup
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, [receiver.url()])
    _dead(client, alarm_id)
    for query, field in (("status=gone", "status"), ("limit=-1", "limit")):
        response = client.get(
            f"/v2/alarms/{alarm_id}/deliveries?{query}", headers=MEMBER
        )
        assert response.status_code == 400
        fault = response.get_json()["error_message"]
        assert f"field/attribute {field}" in fault["faultstring"]


def test_unknown_alarm_is_404(setup):
    _rt, client, _receiver = setup
    response = client.get(
        f"/v2/alarms/{uuid.uuid4()}/deliveries", headers=ADMIN
    )
    assert response.status_code == 404
    response = client.post(
        f"/v2/alarms/{uuid.uuid4()}/deliveries/x/redeliver", headers=ADMIN
    )
    assert response.status_code == 404
