"""The v2 alarm resource over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from alarmer.alarms.tables import Alarm
from tests.functional.v2_helpers import (
    ADMIN,
    MEMBER,
    alarm_body,
    assert_envelope,
    count_alarms,
)

TYPES = (
    "gnocchi_resources_threshold",
    "gnocchi_aggregation_by_metrics_threshold",
    "gnocchi_aggregation_by_resources_threshold",
    "composite",
)


def create(client, body=None, headers=MEMBER):
    response = client.post(
        "/v2/alarms", json=body or alarm_body(), headers=headers
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("alarm_type", TYPES)
def test_create_each_type_and_read_back(client, alarm_type):
    body = alarm_body(f"a-{alarm_type}", alarm_type)
    response = client.post("/v2/alarms", json=body, headers=MEMBER)
    assert response.status_code == 201
    created = response.get_json()
    assert response.headers["Location"] == (
        f"http://localhost/v2/alarms/{created['alarm_id']}"
    )
    got = client.get(f"/v2/alarms/{created['alarm_id']}", headers=MEMBER)
    assert got.status_code == 200
    doc = got.get_json()
    assert doc == created
    assert doc["type"] == alarm_type
    assert doc["description"] == f"{alarm_type} alarm rule"
    assert doc["state"] == "insufficient data"
    assert doc["state_reason"] == "Not evaluated yet"
    assert doc["severity"] == "low"
    assert doc["enabled"] is True
    assert doc["repeat_actions"] is False
    assert doc["project_id"] == "p1" and doc["user_id"] == "u1"
    for key in ("timestamp", "state_timestamp", "evaluate_timestamp"):
        assert doc[key].endswith("+00:00")
    rule = doc[f"{alarm_type}_rule"]
    if alarm_type == "composite":
        leaf = rule["or"][0]
        assert leaf["type"] == "gnocchi_resources_threshold"
        assert leaf["comparison_operator"] == "eq"
        assert leaf["granularity"] == 60
        assert rule["or"][1]["and"][0]["granularity"] == 300
    else:
        expected = dict(body[f"{alarm_type}_rule"])
        expected.setdefault("comparison_operator", "eq")
        expected.setdefault("granularity", 60)
        expected.setdefault("evaluation_periods", 1)
        expected["threshold"] = float(expected["threshold"])
        if alarm_type == "gnocchi_aggregation_by_resources_threshold":
            # A non-admin's resource query is limited to its project.
            expected["query"] = json.dumps(
                {
                    "and": [
                        {
                            "or": [
                                {"=": {"created_by_project_id": "p1"}},
                                {"=": {"project_id": "p1"}},
                            ]
                        },
                        json.loads(expected["query"]),
                    ]
                }
            )
        assert rule == expected


def test_actions_deduplicated_in_order_and_time_constraints(client):
    body = alarm_body(
        alarm_actions=[
            "http://example.org/b",
            "http://example.org/a",
            "http://example.org/b",
        ],
        ok_actions=None,
        time_constraints=[
            {
                "name": "office",
                "start": "0 9 * * 1-5",
                "duration": 32400,
                "timezone": "Europe/Paris",
            }
        ],
    )
    doc = create(client, body)
    assert doc["alarm_actions"] == [
        "http://example.org/b",
        "http://example.org/a",
    ]
    assert doc["ok_actions"] == []
    assert doc["time_constraints"] == [
        {
            "name": "office",
            "description": "Time constraint at 0 9 * * 1-5 lasting for "
            "32400 seconds",
            "start": "0 9 * * 1-5",
            "duration": 32400,
            "timezone": "Europe/Paris",
        }
    ]


def test_put_replaces_and_keeps_bookkeeping(client, rt):
    doc = create(client)
    alarm_id = doc["alarm_id"]
    with rt.db.session() as session:
        before = session.get(Alarm, alarm_id)
        version, evaluated = before.version, before.evaluate_timestamp
    # A minimal PUT (what curl users send): no evaluate_timestamp, no state.
    minimal = alarm_body("renamed", severity="critical")
    response = client.put(
        f"/v2/alarms/{alarm_id}", json=minimal, headers=MEMBER
    )
    assert response.status_code == 200
    new = response.get_json()
    assert new["name"] == "renamed" and new["severity"] == "critical"
    assert new["evaluate_timestamp"] == doc["evaluate_timestamp"]
    assert new["state"] == "insufficient data"
    assert new["timestamp"] >= doc["timestamp"]
    with rt.db.session() as session:
        after = session.get(Alarm, alarm_id)
        assert after.version == version + 1
        assert after.evaluate_timestamp == evaluated
    assert (
        client.get(f"/v2/alarms/{alarm_id}", headers=MEMBER).get_json() == new
    )


def test_put_accepts_back_the_whole_get_document(client):
    doc = create(client)
    doc["description"] = "changed"
    doc["gnocchi_resources_threshold_rule"]["threshold"] = 90
    response = client.put(
        f"/v2/alarms/{doc['alarm_id']}", json=doc, headers=MEMBER
    )
    assert response.status_code == 200
    new = response.get_json()
    assert new["description"] == "changed"
    assert new["gnocchi_resources_threshold_rule"]["threshold"] == 90.0
    assert new["alarm_id"] == doc["alarm_id"]


def test_put_state_change_sets_reason_and_timestamp(client):
    doc = create(client)
    body = alarm_body(state="alarm")
    new = client.put(
        f"/v2/alarms/{doc['alarm_id']}", json=body, headers=MEMBER
    ).get_json()
    assert new["state"] == "alarm"
    assert new["state_reason"] == "Manually set via API"
    assert new["state_timestamp"] > doc["state_timestamp"]


def test_state_get_and_set(client):
    doc = create(client)
    url = f"/v2/alarms/{doc['alarm_id']}/state"
    assert client.get(url, headers=MEMBER).get_json() == "insufficient data"
    response = client.put(
        url,
        data='"ok"',
        headers={**MEMBER, "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.get_json() == "ok"
    assert client.get(url, headers=MEMBER).get_json() == "ok"
    got = client.get(
        f"/v2/alarms/{doc['alarm_id']}", headers=MEMBER
    ).get_json()
    assert got["state_reason"] == "Manually set via API"
    assert got["state_timestamp"] > doc["state_timestamp"]
    bad = client.put(url, json="bogus", headers=MEMBER)
    assert_envelope(bad, 400, "state", "bogus")
    assert client.get(url, headers=MEMBER).get_json() == "ok"


def test_history_records_changes_and_outlives_the_alarm(client):
    doc = create(client)
    alarm_id = doc["alarm_id"]
    client.put(
        f"/v2/alarms/{alarm_id}",
        json=alarm_body(severity="moderate"),
        headers=MEMBER,
    )
    client.put(f"/v2/alarms/{alarm_id}/state", json="alarm", headers=MEMBER)
    assert (
        client.delete(f"/v2/alarms/{alarm_id}", headers=MEMBER).status_code
        == 204
    )
    assert (
        client.get(f"/v2/alarms/{alarm_id}", headers=MEMBER).status_code == 404
    )
    response = client.get(f"/v2/alarms/{alarm_id}/history", headers=MEMBER)
    assert response.status_code == 200
    entries = response.get_json()
    assert [e["type"] for e in entries] == [
        "deletion",
        "state transition",
        "rule change",
        "creation",
    ]
    assert json.loads(entries[2]["detail"]) == {"severity": "moderate"}
    assert json.loads(entries[1]["detail"])["state"] == "alarm"
    assert json.loads(entries[3]["detail"])["name"] == "cpu-high"
    assert all(e["on_behalf_of"] == "p1" for e in entries)
    oldest = client.get(
        f"/v2/alarms/{alarm_id}/history?sort=timestamp:asc&limit=2",
        headers=MEMBER,
    ).get_json()
    assert [e["type"] for e in oldest] == ["creation", "rule change"]
    nxt = client.get(
        f"/v2/alarms/{alarm_id}/history?sort=timestamp:asc&limit=2"
        f"&marker={oldest[-1]['event_id']}",
        headers=MEMBER,
    ).get_json()
    assert [e["type"] for e in nxt] == ["state transition", "deletion"]
    only = client.get(
        f"/v2/alarms/{alarm_id}/history?q.field=type&q.value=rule change",
        headers=MEMBER,
    ).get_json()
    assert [e["type"] for e in only] == ["rule change"]


def test_list_filters_sort_and_pages(client):
    made = []
    for i, severity in enumerate(["critical", "low", "moderate", "low"]):
        made.append(
            create(
                client,
                alarm_body(f"a{i}", severity=severity, enabled=i != 3),
            )
        )
    resp = client.get(
        "/v2/alarms?q.field=severity&q.op=eq&q.value=low", headers=MEMBER
    )
    assert sorted(a["name"] for a in resp.get_json()) == ["a1", "a3"]
    resp = client.get(
        "/v2/alarms?q.field=enabled&q.value=False", headers=MEMBER
    )
    assert [a["name"] for a in resp.get_json()] == ["a3"]
    by_sev = client.get(
        "/v2/alarms?sort=severity:desc&sort=name:asc", headers=MEMBER
    ).get_json()
    assert [a["name"] for a in by_sev] == ["a0", "a2", "a1", "a3"]
    by_sev_asc = client.get(
        "/v2/alarms?sort=severity", headers=MEMBER
    ).get_json()
    assert [a["severity"] for a in by_sev_asc] == [
        "low",
        "low",
        "moderate",
        "critical",
    ]
    default = client.get("/v2/alarms", headers=MEMBER).get_json()
    assert [a["name"] for a in default] == ["a3", "a2", "a1", "a0"]
    # Pages with a marker, following the Link header.
    seen = []
    url = "/v2/alarms?sort=name:asc&limit=3"
    page = client.get(url, headers=MEMBER)
    seen += [a["name"] for a in page.get_json()]
    link = page.headers["Link"]
    assert 'rel="next"' in link
    nxt = link[1 : link.index(">")].replace("http://localhost", "")
    page = client.get(nxt, headers=MEMBER)
    seen += [a["name"] for a in page.get_json()]
    assert "Link" not in page.headers
    assert seen == ["a0", "a1", "a2", "a3"]


@pytest.mark.parametrize(
    ("mutate", "status", "needles"),
    [
        (
            lambda b: b.update(name=None),
            400,
            ["name", "Mandatory field missing"],
        ),
        (lambda b: b.pop("name"), 400, ["name", "Mandatory field missing"]),
        (lambda b: b.update(foo=1), 400, ["Unknown attribute", "foo"]),
        (lambda b: b.update(severity="high"), 400, ["severity", "high"]),
        (lambda b: b.update(type="threshold"), 400, ["type", "threshold"]),
        (lambda b: b.update(state="broken"), 400, ["state", "broken"]),
        (lambda b: b.update(enabled="bad"), 400, ["enabled", "boolean"]),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].update(
                threshold="x"
            ),
            400,
            ["threshold", "number"],
        ),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].update(
                threshold=None
            ),
            400,
            ["threshold", "Mandatory field missing"],
        ),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].update(
                granularity=5.7
            ),
            400,
            ["granularity", "integer"],
        ),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].update(
                granularity=0
            ),
            400,
            ["granularity", "greater or equal to 1"],
        ),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].update(
                evaluation_periods=101
            ),
            400,
            ["evaluation_periods", "lower or equal to 100"],
        ),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].update(
                comparison_operator="like"
            ),
            400,
            ["comparison_operator", "like"],
        ),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].update(
                aggregation_method="bogus"
            ),
            400,
            ["aggregation_method", "bogus"],
        ),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].pop("metric"),
            400,
            ["metric", "Mandatory field missing"],
        ),
        (
            lambda b: b["gnocchi_resources_threshold_rule"].update(extra=1),
            400,
            ["Unknown attribute", "extra"],
        ),
        (
            lambda b: b.pop("gnocchi_resources_threshold_rule"),
            400,
            ["gnocchi_resources_threshold_rule must be set"],
        ),
        (
            lambda b: b.update(composite_rule={"or": []}),
            400,
            ["cannot be set at the same time"],
        ),
        (
            lambda b: b.update(
                time_constraints=[{"name": "t", "start": "bad", "duration": 1}]
            ),
            400,
            ["start", "bad"],
        ),
        (
            lambda b: b.update(
                time_constraints=[
                    {"name": "t", "start": "61 * * * *", "duration": 1}
                ]
            ),
            400,
            ["time_constraints[0].start", "61"],
        ),
        (
            lambda b: b.update(
                time_constraints=[
                    {
                        "name": "t",
                        "start": "0 1 * * *",
                        "duration": 1,
                        "timezone": "Mars/Olympus",
                    }
                ]
            ),
            400,
            ["Timezone Mars/Olympus is not valid"],
        ),
        (
            lambda b: b.update(
                time_constraints=[
                    {"name": "t", "start": "0 1 * * *", "duration": 1},
                    {"name": "t", "start": "0 2 * * *", "duration": 1},
                ]
            ),
            400,
            ["names must be unique"],
        ),
        (
            lambda b: b.update(
                time_constraints=[
                    {"name": "t", "start": "0 1 * * *", "duration": -1}
                ]
            ),
            400,
            ["duration", "greater or equal to 0"],
        ),
        (
            lambda b: b.update(alarm_actions=["spam://x"]),
            400,
            ["Unsupported action spam://x"],
        ),
        (
            lambda b: b.update(alarm_actions=["log://"]),
            401,
            ["You are not authorized to create action: log://"],
        ),
        (
            lambda b: b.update(project_id="p2"),
            401,
            ["Not Authorized to access project p2"],
        ),
    ],
)
def test_bad_alarm_is_rejected_and_nothing_stored(
    client, mutate, status, needles
):
    body = alarm_body()
    mutate(body)
    response = client.post("/v2/alarms", json=body, headers=MEMBER)
    assert_envelope(response, status, *needles)
    assert count_alarms(client) == 0


def test_bad_composite_and_query_rules(client):
    for rule, needles in [
        ({"and": [{"type": "nope"}]}, ["composite_rule.and[0].type", "nope"]),
        ({"or": "x"}, ["composite_rule.or"]),
        (
            {"or": [{"type": "gnocchi_resources_threshold", "threshold": 1}]},
            ["composite_rule.or[0].metric", "Mandatory"],
        ),
    ]:
        body = {"name": "c", "type": "composite", "composite_rule": rule}
        assert_envelope(
            client.post("/v2/alarms", json=body, headers=MEMBER), 400, *needles
        )
    body = alarm_body(alarm_type="gnocchi_aggregation_by_resources_threshold")
    body["gnocchi_aggregation_by_resources_threshold_rule"]["query"] = "{bad"
    assert_envelope(
        client.post("/v2/alarms", json=body, headers=MEMBER),
        400,
        "gnocchi_aggregation_by_resources_threshold_rule.query",
    )
    assert count_alarms(client) == 0


def test_bad_json_and_media_type(client):
    response = client.post(
        "/v2/alarms",
        data="{not json",
        headers={**MEMBER, "Content-Type": "application/json"},
    )
    assert_envelope(response, 400, "not in valid JSON")
    response = client.post(
        "/v2/alarms",
        data="name: x",
        headers={**MEMBER, "Content-Type": "application/yaml"},
    )
    assert_envelope(response, 415, "application/yaml")
    response = client.post("/v2/alarms", json=["x"], headers=MEMBER)
    assert_envelope(response, 400, "Wrong type")
    assert count_alarms(client) == 0


def test_bad_put_changes_nothing(client):
    doc = create(client)
    body = alarm_body(severity="nope")
    response = client.put(
        f"/v2/alarms/{doc['alarm_id']}", json=body, headers=MEMBER
    )
    assert_envelope(response, 400, "severity")
    assert (
        client.get(f"/v2/alarms/{doc['alarm_id']}", headers=MEMBER).get_json()
        == doc
    )


@pytest.mark.parametrize(
    ("query", "needles"),
    [
        ("limit=abc", ["limit", "positive integer"]),
        ("limit=-1", ["limit", "positive integer"]),
        ("sort=bogus", ["sort", "bogus"]),
        ("sort=name:sideways", ["sort", "name:sideways"]),
        ("marker=nope", ["marker", "nope"]),
        ("q.field=foo&q.value=1", ["field", "foo"]),
        ("q.field=name&q.op=ne&q.value=1", ["op", "ne"]),
        ("q.field=enabled&q.value=perhaps", ["enabled", "perhaps"]),
        ("q.field=name", ["q.value"]),
        ("q.field=timestamp&q.value=yesterday", ["timestamp", "yesterday"]),
    ],
)
def test_bad_list_parameters_are_400(client, query, needles):
    create(client)
    assert_envelope(
        client.get(f"/v2/alarms?{query}", headers=MEMBER), 400, *needles
    )


def test_put_on_collection_is_405_and_missing_is_404(client):
    response = client.put("/v2/alarms", json={}, headers=MEMBER)
    assert response.status_code == 405
    assert {"GET", "POST"} <= {
        m.strip() for m in response.headers["Allow"].split(",")
    }
    assert response.get_json()["error_message"]["faultcode"] == "Client"
    assert_envelope(
        client.get("/v2/alarms/nope", headers=MEMBER),
        404,
        "Alarm nope not found",
    )
    assert_envelope(
        client.delete("/v2/alarms/nope", headers=MEMBER), 404, "nope"
    )
    assert_envelope(
        client.put("/v2/alarms/nope", json=alarm_body(), headers=MEMBER),
        404,
        "nope",
    )
    assert_envelope(
        client.get("/v2/alarms/nope/history", headers=MEMBER), 404, "nope"
    )


def test_capabilities_with_and_without_slash(client):
    for url in ("/v2/capabilities", "/v2/capabilities/"):
        body = client.get(url, headers=MEMBER).get_json()
        assert body["api"]["alarms:query:complex"] is True
        assert body["alarm_storage"]["storage:production_ready"] is True


def test_api_edit_and_evaluator_write_do_not_overwrite(client, rt):
    doc = create(client)
    alarm_id = doc["alarm_id"]
    # An evaluator commits a transition (version fence) while the API edits.
    with rt.db.session() as session, session.begin():
        version = session.get(Alarm, alarm_id).version
        session.execute(
            sa.update(Alarm)
            .where(Alarm.alarm_id == alarm_id, Alarm.version == version)
            .values(
                state="alarm", state_reason="evaluated", version=version + 1
            )
        )
    new = client.put(
        f"/v2/alarms/{alarm_id}",
        json=alarm_body(severity="critical"),
        headers=MEMBER,
    ).get_json()
    assert new["state"] == "alarm"
    assert new["state_reason"] == "evaluated"
    assert new["severity"] == "critical"


def test_admin_creates_for_another_project(client):
    body = alarm_body(project_id="p9", user_id="u9", alarm_actions=["log://"])
    doc = create(client, body, headers=ADMIN)
    assert doc["project_id"] == "p9" and doc["user_id"] == "u9"
    assert doc["alarm_actions"] == ["log://"]


def test_put_back_does_not_scope_the_resource_query_again(client):
    body = alarm_body(alarm_type="gnocchi_aggregation_by_resources_threshold")
    doc = create(client, body)
    key = "gnocchi_aggregation_by_resources_threshold_rule"
    scoped = doc[key]["query"]
    url = f"/v2/alarms/{doc['alarm_id']}"
    for _ in range(2):
        doc = client.put(url, json=doc, headers=MEMBER).get_json()
        assert doc[key]["query"] == scoped
    # A new query is limited to the project like at creation.
    doc[key]["query"] = '{"=": {"server_group": "g2"}}'
    doc = client.put(url, json=doc, headers=MEMBER).get_json()
    assert json.loads(doc[key]["query"])["and"][1] == {
        "=": {"server_group": "g2"}
    }
