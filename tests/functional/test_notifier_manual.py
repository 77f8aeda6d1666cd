"""PUT /v2/alarms/<id>/state notifies only when configured to."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from alarmer.alarms.tables import Alarm, Notification
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import Receiver, wait_for

MEMBER = {
    "X-User-Id": "u1",
    "X-Project-Id": "p1",
    "X-Roles": "member",
    "Content-Type": "application/json",
}


def _alarm(rt, url):
    alarm_id = str(uuid.uuid4())
    with rt.db.session() as session:
        session.add(
            Alarm(
                alarm_id=alarm_id,
                name="manual",
                type="gnocchi_resources_threshold",
                rule={},
                ok_actions=[url],
                alarm_actions=[url, url],
                insufficient_data_actions=[],
                time_constraints=[],
                project_id="p1",
                user_id="u1",
                state="ok",
            )
        )
        session.commit()
    return alarm_id


def _outbox(rt, alarm_id):
    with rt.db.read_session() as session:
        return list(
            session.execute(
                sa.select(Notification)
                .where(Notification.alarm_id == alarm_id)
                .order_by(Notification.seq)
            ).scalars()
        )


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_manual_change_is_not_notified_by_default(rt, client, receiver):
    alarm_id = _alarm(rt, receiver.url())
    response = client.put(
        f"/v2/alarms/{alarm_id}/state", data='"alarm"', headers=MEMBER
    )
    assert response.status_code == 200
    assert _outbox(rt, alarm_id) == []


def test_manual_change_notifies_when_enabled(rt, client, receiver):
    rt.conf.set_override(
        "notify_on_manual_state_change", True, group="notifier"
    )
    rt.conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    alarm_id = _alarm(rt, receiver.url())
    service = NotifierService(rt)
    service.start()
    try:
        for state in ("alarm", "ok", "insufficient data"):
            response = client.put(
                f"/v2/alarms/{alarm_id}/state",
                data=json.dumps(state),
                headers=MEMBER,
            )
            assert response.status_code == 200
        rows = _outbox(rt, alarm_id)
        # insufficient data has no actions: no notification.
        assert [(r.seq, r.previous, r.current) for r in rows] == [
            (1, "ok", "alarm"),
            (2, "alarm", "ok"),
        ]
        assert rows[0].actions == [receiver.url()]
        got = wait_for(
            lambda: len(receiver.bodies()) == 2 and receiver.bodies()
        )
        assert [g.json["current"] for g in got] == ["alarm", "ok"]
        assert got[0].json["reason"] == "Manually set via API"
        with rt.db.read_session() as session:
            assert session.get(Alarm, alarm_id).seq == 2
    finally:
        service.stop()
