"""The lifecycle options of an alarm through ``/v2/alarms``."""

from __future__ import annotations

import pytest

from tests.functional.v2_helpers import (
    ADMIN,
    alarm_body,
    assert_envelope,
    count_alarms,
)

BY_METRICS = "gnocchi_aggregation_by_metrics_threshold"
OPTIONS = {
    "repeat_interval": 300,
    "missing_data": "keep_last",
    "keep_firing_for": 120,
    "pending_for": 60,
    "evaluation_interval": 30,
}
LIFECYCLE_KEYS = (*OPTIONS, "datapoints_to_alarm", "recovery_threshold")


def _create(client, body):
    response = client.post("/v2/alarms", json=body, headers=ADMIN)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def test_an_aodh_alarm_shows_no_lifecycle_field(client):
    created = _create(client, alarm_body(alarm_type=BY_METRICS))
    got = client.get(f"/v2/alarms/{created['alarm_id']}", headers=ADMIN)
    for doc in (created, got.get_json()):
        assert not set(LIFECYCLE_KEYS) & set(doc)
        assert not set(LIFECYCLE_KEYS) & set(doc[f"{BY_METRICS}_rule"])


def test_lifecycle_fields_round_trip_and_a_put_without_them_unsets(client):
    body = alarm_body(alarm_type=BY_METRICS, **OPTIONS)
    rule = body[f"{BY_METRICS}_rule"]
    rule.update(datapoints_to_alarm=2, recovery_threshold=4.5)
    created = _create(client, body)
    alarm_id = created["alarm_id"]
    got = client.get(f"/v2/alarms/{alarm_id}", headers=ADMIN).get_json()
    for doc in (created, got):
        assert {k: doc[k] for k in OPTIONS} == OPTIONS
        stored = doc[f"{BY_METRICS}_rule"]
        assert stored["datapoints_to_alarm"] == 2
        assert stored["recovery_threshold"] == 4.5
    # The document read back PUT as is keeps everything.
    response = client.put(f"/v2/alarms/{alarm_id}", json=got, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert {k: response.get_json()[k] for k in OPTIONS} == OPTIONS
    # A full replacement without them returns to Aodh's behaviour.
    plain = alarm_body(alarm_type=BY_METRICS)
    response = client.put(f"/v2/alarms/{alarm_id}", json=plain, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    again = client.get(f"/v2/alarms/{alarm_id}", headers=ADMIN).get_json()
    assert not set(LIFECYCLE_KEYS) & set(again)
    assert not set(LIFECYCLE_KEYS) & set(again[f"{BY_METRICS}_rule"])


def test_lifecycle_fields_in_a_composite_rule(client):
    body = alarm_body(alarm_type="composite", missing_data="ok")
    leaf = body["composite_rule"]["or"][1]["and"][0]
    leaf["datapoints_to_alarm"] = 3
    created = _create(client, body)
    assert created["missing_data"] == "ok"
    stored = created["composite_rule"]["or"][1]["and"][0]
    assert stored["datapoints_to_alarm"] == 3


BAD = [
    ({"repeat_interval": 0}, "repeat_interval"),
    ({"repeat_interval": 1.5}, "repeat_interval"),
    ({"repeat_interval": "60s"}, "repeat_interval"),
    ({"missing_data": "ignore"}, "missing_data"),
    ({"keep_firing_for": -1}, "keep_firing_for"),
    ({"pending_for": 10**10}, "pending_for"),
    ({"pending_for": True}, "pending_for"),
    ({"evaluation_interval": 0}, "evaluation_interval"),
]


@pytest.mark.parametrize(("extra", "field"), BAD)
def test_bad_alarm_options_are_400_naming_the_field(client, extra, field):
    before = count_alarms(client)
    response = client.post(
        "/v2/alarms",
        json=alarm_body(alarm_type=BY_METRICS, **extra),
        headers=ADMIN,
    )
    assert_envelope(response, 400, field)
    assert count_alarms(client) == before


BAD_RULE = [
    ({"datapoints_to_alarm": 4}, "datapoints_to_alarm", "at most"),
    ({"datapoints_to_alarm": 0}, "datapoints_to_alarm", ""),
    ({"recovery_threshold": 6.0}, "recovery_threshold", "at most"),
    (
        {"recovery_threshold": 1.0, "comparison_operator": "eq"},
        "recovery_threshold",
        "gt, ge, lt or le",
    ),
    (
        {"recovery_threshold": 1.0, "comparison_operator": "lt"},
        "recovery_threshold",
        "at least",
    ),
    ({"recovery_threshold": "low"}, "recovery_threshold", ""),
]


@pytest.mark.parametrize(("extra", "field", "words"), BAD_RULE)
def test_bad_rule_options_are_400_naming_the_field(
    client, extra, field, words
):
    before = count_alarms(client)
    body = alarm_body(alarm_type=BY_METRICS)
    body[f"{BY_METRICS}_rule"].update(extra)
    response = client.post("/v2/alarms", json=body, headers=ADMIN)
    assert_envelope(response, 400, field, words)
    assert count_alarms(client) == before


def test_the_openapi_document_describes_the_options(client):
    doc = client.get("/openapi.json").get_json()
    text = str(doc)
    for key in LIFECYCLE_KEYS:
        assert key in text, key
