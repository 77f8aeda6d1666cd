"""The WSME types of the v2 wire format: round trips against the API."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from wsme.rest import json as wjson

from alarmer.alarms import store as store_mod
from alarmer.alarms import validation as rules
from api.v2 import types
from tests.functional.v2_helpers import (
    ADMIN,
    MEMBER,
    alarm_body,
    assert_envelope,
    count_alarms,
)

#: Fields of the definition a client sends (the rest is the server's).
DEFINITION = (
    "alarm_actions",
    "description",
    "enabled",
    "insufficient_data_actions",
    "name",
    "ok_actions",
    "repeat_actions",
    "severity",
    "time_constraints",
    "type",
)


def _body(alarm_type: str) -> dict:
    return alarm_body(
        f"typed-{alarm_type}",
        alarm_type,
        severity="critical",
        alarm_actions=["http://example.org/b", "http://example.org/b"],
        time_constraints=[
            {
                "name": "office",
                "start": "0 9 * * 1-5",
                "duration": 3600,
                "timezone": "Europe/Paris",
            }
        ],
    )


@pytest.mark.parametrize("alarm_type", rules.ALARM_TYPES)
def test_alarm_round_trip_equals_the_api_output(client, alarm_type):
    body = _body(alarm_type)
    # An administrator's by-resources query is stored as sent (a
    # member's is scoped to its project, see test_v2_alarms).
    response = client.post("/v2/alarms", json=body, headers=ADMIN)
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    raw = response.get_data(as_text=True)

    # dict -> WSME object -> JSON: the whole created document, byte for
    # byte (key order, +00:00 offsets, floats kept floats).
    obj = types.parse(types.Alarm, created)
    assert isinstance(obj, types.Alarm)
    assert isinstance(obj.timestamp, dt.datetime)
    assert obj.timestamp.utcoffset() == dt.timedelta(0)
    rule = getattr(obj, f"{alarm_type}_rule")
    if alarm_type == "composite":
        assert rule == created["composite_rule"]
    else:
        assert isinstance(rule, types.RULE_TYPES[alarm_type])
        assert isinstance(rule.threshold, float)
    assert json.dumps(types.render(types.Alarm, obj)) == raw
    assert json.dumps(wjson.tojson(types.Alarm, obj)) == raw

    # The validated, defaulted body as a WSME object renders the
    # definition the API stored and returned.
    values = rules.validate_alarm(body)
    sent = types.render(types.Alarm, types.alarm_from_values(values))
    assert sent == {
        **{k: created[k] for k in DEFINITION},
        f"{alarm_type}_rule": created[f"{alarm_type}_rule"],
    }
    assert types.alarm_values(types.alarm_from_values(values)) == values

    # The stored row through the type equals the storage document and
    # the GET answer.
    row = store_mod.AlarmStore(client.application.extensions["alarmer"].db)
    stored = row.get(created["alarm_id"], None)
    rendered = types.render(types.Alarm, types.alarm_from_row(stored))
    assert json.dumps(rendered) == json.dumps(store_mod.document(stored))
    got = client.get(f"/v2/alarms/{created['alarm_id']}", headers=ADMIN)
    assert got.get_data(as_text=True) == json.dumps(rendered)


def test_unset_attributes_are_omitted_and_none_is_null():
    obj = types.Alarm(name="a", state_reason=None)
    assert types.render(types.Alarm, obj) == {
        "name": "a",
        "state_reason": None,
    }
    assert wjson.tojson(types.Alarm, obj) == types.render(types.Alarm, obj)


def test_history_round_trip_equals_the_api_output(client):
    created = client.post(
        "/v2/alarms", json=_body("composite"), headers=MEMBER
    ).get_json()
    alarm_id = created["alarm_id"]
    assert (
        client.put(
            f"/v2/alarms/{alarm_id}/state", json="alarm", headers=MEMBER
        ).status_code
        == 200
    )
    response = client.get(f"/v2/alarms/{alarm_id}/history", headers=MEMBER)
    entries = response.get_json()
    assert [e["type"] for e in entries] == ["state transition", "creation"]
    parsed = [types.parse(types.AlarmChange, e) for e in entries]
    assert all(p.timestamp.tzinfo is not None for p in parsed)
    assert json.dumps(
        [types.render(types.AlarmChange, p) for p in parsed]
    ) == response.get_data(as_text=True)


def test_quotas_and_capabilities_round_trip(client):
    body = {"project_id": "p1", "quotas": [{"resource": "alarms", "limit": 7}]}
    response = client.post("/v2/quotas", json=body, headers=ADMIN)
    assert response.status_code == 201
    obj = types.parse(types.Quotas, response.get_json())
    assert obj.quotas[0].limit == 7
    assert json.dumps(types.render(types.Quotas, obj)) == response.get_data(
        as_text=True
    )
    caps = client.get("/v2/capabilities", headers=MEMBER).get_json()
    obj = types.parse(types.Capabilities, caps)
    assert types.render(types.Capabilities, obj) == caps
    assert caps["api"]["alarms:query:complex"] is True


@pytest.mark.parametrize(
    ("patch", "needles"),
    [
        ({"enabled": None}, ("enabled",)),
        ({"name": None}, ("name", "Mandatory field missing")),
        ({"repeat_actions": "yes"}, ("repeat_actions", "Wrong type")),
    ],
)
def test_wsme_coercions_do_not_apply(client, patch, needles):
    """What WSME alone would coerce or accept is a 400; nothing stored."""
    before = count_alarms(client)
    body = {**alarm_body("strict"), **patch}
    response = client.post("/v2/alarms", json=body, headers=MEMBER)
    assert_envelope(response, 400, *needles)
    body = alarm_body("strict")
    body["gnocchi_resources_threshold_rule"]["granularity"] = 5.7
    response = client.post("/v2/alarms", json=body, headers=MEMBER)
    assert_envelope(response, 400, "granularity", "5.7")
    assert count_alarms(client) == before
