"""``/v2/silences`` over the API: create, read, scope, expire, refuse."""

from __future__ import annotations

import datetime as dt

import pytest

from alarmer.alarms import silences
from tests.functional.v2_helpers import (
    ADMIN,
    MEMBER,
    OTHER,
    READER,
    assert_envelope,
)

LATER = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
BODY = {
    "matchers": [
        {"field": "name", "op": "=~", "value": "cpu-.*"},
        {"field": "severity", "op": "!=", "value": "critical"},
    ],
    "ends_at": LATER,
    "comment": "upgrade",
}


def _count(client, headers=ADMIN):
    response = client.get("/v2/silences", headers=headers)
    assert response.status_code == 200
    return len(response.get_json())


def test_create_read_list_and_expire(client):
    response = client.post("/v2/silences", json=BODY, headers=MEMBER)
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert response.headers["Location"].endswith(
        f"/v2/silences/{created['silence_id']}"
    )
    assert created["project_id"] == "p1"
    assert created["created_by"] == "u1"
    assert created["status"] == "active"
    assert created["matchers"] == BODY["matchers"]
    assert created["comment"] == "upgrade"
    assert created["ends_at"].endswith("+00:00")
    path = f"/v2/silences/{created['silence_id']}"
    assert client.get(path, headers=READER).get_json() == created
    assert [
        s["silence_id"]
        for s in client.get("/v2/silences", headers=READER).get_json()
    ] == [created["silence_id"]]
    # Another project sees nothing of it; the administrator sees it.
    assert client.get(path, headers=OTHER).status_code == 404
    assert _count(client, OTHER) == 0
    assert _count(client, ADMIN) == 1
    assert client.delete(path, headers=OTHER).status_code == 404
    # A reader may not end it; a member may; it stays, expired.
    assert client.delete(path, headers=READER).status_code == 403
    response = client.delete(path, headers=MEMBER)
    assert response.status_code == 200
    assert response.get_json()["status"] == "expired"
    assert client.get(path, headers=MEMBER).get_json()["status"] == "expired"
    expired = client.get("/v2/silences?status=expired", headers=MEMBER)
    assert len(expired.get_json()) == 1
    active = client.get("/v2/silences?status=active", headers=MEMBER)
    assert active.get_json() == []


def test_a_recurring_silence(client):
    body = {
        "matchers": [{"field": "project_id", "op": "=", "value": "p1"}],
        "recurrence": {
            "start": "0 2 * * 6",
            "duration": 7200,
            "timezone": "Europe/Paris",
        },
    }
    response = client.post("/v2/silences", json=body, headers=MEMBER)
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["ends_at"] is None
    assert created["recurrence"]["start"] == "0 2 * * 6"
    assert created["status"] in ("active", "pending")


def test_only_an_administrator_silences_another_or_every_project(client):
    body = {**BODY, "project_id": "p2"}
    response = client.post("/v2/silences", json=body, headers=MEMBER)
    assert_envelope(response, 403, "administrator")
    assert _count(client) == 0
    response = client.post(
        "/v2/silences", json={**BODY, "project_id": None}, headers=ADMIN
    )
    assert response.status_code == 201
    assert response.get_json()["project_id"] is None


BAD = [
    ({"matchers": []}, "matchers"),
    ({"matchers": [{"field": "colour", "value": "x"}]}, "matchers[0].field"),
    (
        {"matchers": [{"field": "name", "op": "~", "value": "x"}]},
        "matchers[0].op",
    ),
    (
        {"matchers": [{"field": "name", "op": "=~", "value": "("}]},
        "matchers[0].value",
    ),
    ({"matchers": [{"field": "name", "value": 5}]}, "matchers[0].value"),
    ({"ends_at": None}, "ends_at"),
    ({"ends_at": "yesterday"}, "ends_at"),
    ({"starts_at": LATER}, "ends_at"),
    (
        {"recurrence": {"start": "61 * * * *", "duration": 60}},
        "recurrence.start",
    ),
    (
        {"recurrence": {"start": "0 * *", "duration": 60}},
        "recurrence.start",
    ),
    (
        {"recurrence": {"start": "0 * * * *", "duration": 0}},
        "recurrence.duration",
    ),
    (
        {
            "recurrence": {
                "start": "0 * * * *",
                "duration": 60,
                "timezone": "Mars/Olympus",
            }
        },
        "recurrence.timezone",
    ),
    ({"colour": "red"}, "colour"),
    ({"comment": 5}, "comment"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_bad_silences_are_400_naming_the_field(client, change, field):
    body = {**BODY, **change}
    response = client.post("/v2/silences", json=body, headers=MEMBER)
    text = assert_envelope(response, 400, field)
    assert "time_constraints" not in text  # the silence's own field names
    assert _count(client) == 0


def test_matching_rules():
    alarm = type(
        "Row",
        (),
        {
            "alarm_id": "a1",
            "name": "cpu-high",
            "type": "composite",
            "severity": "low",
            "project_id": "p1",
            "rule": {
                "or": [
                    {"resource_id": "r1", "metric": "cpu"},
                    {"metrics": ["m1", "m2"]},
                ]
            },
        },
    )()
    facts = silences.facts(alarm)

    def covers(*matchers, project="p1"):
        return silences.SilenceDef(
            "s",
            project,
            tuple(silences.Matcher(*m) for m in matchers),
            silences.Window(None, None),
        ).covers(facts)

    assert covers(("name", "=", "cpu-high"))
    assert not covers(("name", "=", "cpu"))
    assert covers(("name", "=~", "cpu-.*"))
    assert not covers(("name", "=~", "cpu"))  # the whole value
    assert covers(("name", "!~", "mem-.*"), ("severity", "!=", "critical"))
    assert covers(("resource_id", "=", "r1"), ("metric", "=", "m2"))
    assert covers(("metric", "=", "cpu"))
    assert not covers(("metric", "!=", "m1"))
    assert covers(("type", "=", "composite"), project=None)
    assert not covers(("type", "=", "composite"), project="p2")
    when = dt.datetime(2026, 12, 5, 2, 30, tzinfo=dt.UTC)  # a Saturday
    weekly = silences.Window(
        None, None, {"start": "0 2 * * 6", "duration": 3600, "timezone": ""}
    )
    assert weekly.status(when) == silences.ACTIVE
    assert weekly.status(when + dt.timedelta(hours=1)) == silences.PENDING
    fixed = silences.Window(when, when + dt.timedelta(minutes=5))
    assert fixed.status(when - dt.timedelta(seconds=1)) == silences.PENDING
    assert fixed.status(when) == silences.ACTIVE
    assert fixed.status(when + dt.timedelta(minutes=5)) == silences.EXPIRED


def test_the_silences_in_force_follow_their_windows(rt):
    """The evaluator's set of silences in force is checked once per
    change of a window, and changes exactly at each window's edges."""
    from alarmer.alarms.tables import Silence

    when = dt.datetime(2026, 12, 5, 2, 30, tzinfo=dt.UTC)  # a Saturday
    minute = dt.timedelta(minutes=1)
    with rt.db.session() as session, session.begin():
        for sid, starts, ends, recurrence in (
            ("fixed", when, when + 5 * minute, None),
            # Saturdays 02:00-02:40 UTC, from an hour before *when* on.
            (
                "weekly",
                when - 60 * minute,
                None,
                {"start": "0 2 * * 6", "duration": 2400, "timezone": ""},
            ),
        ):
            session.add(
                Silence(
                    silence_id=sid,
                    project_id=None,
                    comment="",
                    matchers=[{"field": "name", "op": "=", "value": "x"}],
                    starts_at=starts,
                    ends_at=ends,
                    recurrence=recurrence,
                    created_at=when,
                    updated_at=when,
                )
            )
    cache = silences.SilenceCache(rt.db, ttl=3600)
    facts = {"name": ["x"], "project_id": ["p1"]}

    def in_force(at):
        return sorted(s.silence_id for s in cache.active(at))

    second = dt.timedelta(seconds=1)
    assert in_force(when - second) == ["weekly"]
    assert in_force(when) == ["fixed", "weekly"]
    assert sorted(cache.matching(facts, when + second)) == ["fixed", "weekly"]
    assert cache.matching({"name": ["y"]}, when + second) == ()
    assert in_force(when + 5 * minute - second) == ["fixed", "weekly"]
    assert in_force(when + 5 * minute) == ["weekly"]
    # The weekly window's end is included, as a time constraint's is.
    assert in_force(when + 10 * minute) == ["weekly"]
    assert in_force(when + 10 * minute + second) == []
    next_week = when + dt.timedelta(days=7) - 30 * minute
    assert in_force(next_week - second) == []
    assert in_force(next_week) == ["weekly"]
    # Back in time (another evaluation's clock): checked again.
    assert in_force(when) == ["fixed", "weekly"]
