"""Complex queries: POST /v2/query/alarms and /v2/query/alarms/history."""

from __future__ import annotations

import json

import pytest

from tests.functional.v2_helpers import (
    ADMIN,
    MEMBER,
    alarm_body,
    assert_envelope,
)


@pytest.fixture
def alarms(client):
    made = []
    for name, severity, enabled in [
        ("web-cpu", "critical", True),
        ("web-mem", "low", True),
        ("db-cpu", "moderate", False),
    ]:
        body = alarm_body(name, severity=severity, enabled=enabled)
        response = client.post("/v2/alarms", json=body, headers=MEMBER)
        assert response.status_code == 201
        made.append(response.get_json())
    return made


def query(client, headers=MEMBER, **body):
    payload = {
        k: json.dumps(v) if k in ("filter", "orderby") else v
        for k, v in body.items()
    }
    return client.post("/v2/query/alarms", json=payload, headers=headers)


def names(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    return [a["name"] for a in response.get_json()]


def test_filters_and_order(client, alarms):
    assert names(query(client, filter={"=": {"name": "web-cpu"}})) == [
        "web-cpu"
    ]
    assert names(
        query(
            client, filter={"=~": {"name": "^web"}}, orderby=[{"name": "desc"}]
        )
    ) == ["web-mem", "web-cpu"]
    assert names(
        query(
            client,
            filter={
                "and": [{"=": {"enabled": True}}, {"!=": {"severity": "low"}}]
            },
        )
    ) == ["web-cpu"]
    assert names(
        query(
            client,
            filter={"in": {"severity": ["low", "moderate"]}},
            orderby=[{"severity": "asc"}],
        )
    ) == ["web-mem", "db-cpu"]
    assert names(
        query(
            client,
            filter={"NOT": {"=": {"name": "web-cpu"}}},
            orderby=[{"name": "asc"}],
        )
    ) == ["db-cpu", "web-mem"]
    assert names(query(client, orderby=[{"name": "asc"}], limit=1)) == [
        "db-cpu"
    ]
    after = alarms[0]["timestamp"]
    assert sorted(
        names(query(client, filter={">": {"timestamp": after}}))
    ) == [
        "db-cpu",
        "web-mem",
    ]
    assert (
        names(query(client, filter={"=": {"project": "p1"}}, limit=10)) != []
    )


def test_history_query(client, alarms):
    client.delete(f"/v2/alarms/{alarms[0]['alarm_id']}", headers=MEMBER)
    response = client.post(
        "/v2/query/alarms/history",
        json={
            "filter": json.dumps({"=": {"type": "deletion"}}),
            "orderby": json.dumps([{"timestamp": "desc"}]),
        },
        headers=MEMBER,
    )
    entries = response.get_json()
    assert [e["alarm_id"] for e in entries] == [alarms[0]["alarm_id"]]
    everything = client.post(
        "/v2/query/alarms/history", json={}, headers=MEMBER
    ).get_json()
    assert len(everything) == 4
    assert (
        client.post(
            "/v2/query/alarms/history", json={}, headers=ADMIN
        ).get_json()
        != []
    )


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ({"filter": "{bad"}, ["filter", "JSON"]),
        (
            {"filter": json.dumps({"~~": {"name": "x"}})},
            ["Filter expression not valid", "~~"],
        ),
        (
            {"filter": json.dumps({"=": {"nope": "x"}})},
            ["Filter expression not valid", "nope"],
        ),
        (
            {"filter": json.dumps({"and": []})},
            ["Filter expression not valid", "and"],
        ),
        (
            {"filter": json.dumps({"=~": {"name": "("}})},
            ["regular expression"],
        ),
        ({"filter": json.dumps({">": {"timestamp": "soon"}})}, ["timestamp"]),
        (
            {"orderby": json.dumps([{"name": "up"}])},
            ["Order-by expression not valid"],
        ),
        ({"orderby": json.dumps([{"nope": "asc"}])}, ["Order-by", "nope"]),
        ({"limit": 0}, ["Limit should be positive"]),
        ({"limit": "x"}, ["limit"]),
        ({"bogus": 1}, ["Unknown attribute", "bogus"]),
    ],
)
def test_bad_queries_are_400(client, alarms, body, needles):
    response = client.post("/v2/query/alarms", json=body, headers=MEMBER)
    assert_envelope(response, 400, *needles)
