"""v1 archive policies, rules and metrics over HTTP, on SQLite and PG."""

from __future__ import annotations

import uuid

import pytest

from tests import envelopes

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "p-admin", "X-Roles": "admin"}
ALICE = {"X-User-Id": "alice", "X-Project-Id": "p-a", "X-Roles": "member"}
BOB = {"X-User-Id": "bob", "X-Project-Id": "p-b", "X-Roles": "member"}


def fault(response, status):
    return envelopes.message(response, status)


# ---------------------------------------------------------- policies --


def test_default_policies_and_rule_exist(client):
    policies = {
        p["name"]: p
        for p in client.get("/v1/archive_policy", headers=ALICE).get_json()
    }
    assert set(policies) == {"low", "medium", "high", "bool"}
    assert policies["low"]["definition"] == [
        {"granularity": 300, "points": 8640, "timespan": 2592000}
    ]
    assert policies["bool"]["back_window"] == 3600
    assert policies["bool"]["aggregation_methods"] == ["last"]
    assert [d["granularity"] for d in policies["high"]["definition"]] == [
        1,
        60,
        3600,
    ]
    assert policies["medium"]["aggregation_methods"] == [
        "count",
        "max",
        "mean",
        "min",
        "std",
        "sum",
    ]
    rules = client.get("/v1/archive_policy_rule", headers=ALICE).get_json()
    assert rules == [
        {
            "name": "default",
            "archive_policy_name": "low",
            "metric_pattern": "*",
        }
    ]


def test_policy_crud_round_trip(client):
    body = {
        "name": "p1",
        "back_window": 2,
        "definition": [
            {"granularity": "1m", "timespan": "1h"},
            {"granularity": 3600, "points": 24},
        ],
        "aggregation_methods": ["mean", "95pct"],
    }
    r = client.post("/v1/archive_policy", json=body, headers=ADMIN)
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.headers["Location"].endswith("/v1/archive_policy/p1")
    expected = {
        "name": "p1",
        "back_window": 2,
        "definition": [
            {"granularity": 60, "points": 60, "timespan": 3600},
            {"granularity": 3600, "points": 24, "timespan": 86400},
        ],
        "aggregation_methods": ["95pct", "mean"],
    }
    assert r.get_json() == expected
    assert (
        client.get("/v1/archive_policy/p1", headers=ALICE).get_json()
        == expected
    )

    r = client.patch(
        "/v1/archive_policy/p1",
        json={
            "definition": [
                {"granularity": 60, "points": 120},
                {"granularity": 3600, "timespan": "2 days"},
            ],
            "back_window": 0,
        },
        headers=ADMIN,
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    got = client.get("/v1/archive_policy/p1", headers=ALICE).get_json()
    assert got["back_window"] == 0
    assert got["definition"] == [
        {"granularity": 60, "points": 120, "timespan": 7200},
        {"granularity": 3600, "points": 48, "timespan": 172800},
    ]
    assert got["aggregation_methods"] == ["95pct", "mean"]

    r = client.delete("/v1/archive_policy/p1", headers=ADMIN)
    assert r.status_code == 204
    assert "p1 does not exist" in fault(
        client.get("/v1/archive_policy/p1", headers=ALICE), 404
    )


def test_policy_duplicate_is_409_and_keeps_the_first(client):
    body = {"name": "dup", "definition": [{"granularity": 1, "points": 5}]}
    assert client.post("/v1/archive_policy", json=body, headers=ADMIN)
    other = {"name": "dup", "definition": [{"granularity": 2, "points": 9}]}
    message = fault(
        client.post("/v1/archive_policy", json=other, headers=ADMIN), 409
    )
    assert "dup" in message
    got = client.get("/v1/archive_policy/dup", headers=ALICE).get_json()
    assert got["definition"][0]["points"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "definition": []}, "definition"),
        ({"name": "x", "definition": [{"points": 60}]}, "definition[0]"),
        (
            {"name": "x", "definition": [{"granularity": -1, "points": 3}]},
            "definition[0].granularity",
        ),
        (
            {"name": "x", "definition": [{"granularity": 60, "points": 2.5}]},
            "definition[0].points",
        ),
        (
            {
                "name": "x",
                "definition": [{"granularity": 60, "points": 2}],
                "aggregation_methods": ["nope"],
            },
            "aggregation_methods",
        ),
        (
            {
                "name": "x",
                "definition": [{"granularity": 60, "points": 2}],
                "back_window": "3",
            },
            "back_window",
        ),
        ({"definition": [{"granularity": 60, "points": 2}]}, "name"),
        (
            {"name": "x", "definition": [{"granularity": 1e-12, "points": 1}]},
            "definition[0].granularity",
        ),
        (
            {
                "name": "x",
                "definition": [{"granularity": 1, "points": 10**30}],
            },
            "definition[0]",
        ),
        (
            {
                "name": "x",
                "definition": [{"granularity": 1, "points": 1}],
                "back_window": 10**20,
            },
            "back_window",
        ),
        (
            {
                "name": "x",
                "definition": [{"granularity": 1, "points": 1}],
                "z": 1,
            },
            "z",
        ),
    ],
)
def test_policy_bad_input_is_400_and_stores_nothing(client, body, field):
    message = fault(
        client.post("/v1/archive_policy", json=body, headers=ADMIN), 400
    )
    assert field in message
    names = [
        p["name"]
        for p in client.get("/v1/archive_policy", headers=ALICE).get_json()
    ]
    assert "x" not in names


def test_policy_body_not_json_is_400(client):
    r = client.post(
        "/v1/archive_policy",
        data=b"{nope",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert "JSON" in fault(r, 400)


def test_policy_writes_need_admin(client):
    body = {"name": "mine", "definition": [{"granularity": 1, "points": 5}]}
    fault(client.post("/v1/archive_policy", json=body, headers=ALICE), 403)
    assert (
        client.get("/v1/archive_policy/mine", headers=ALICE).status_code == 404
    )
    fault(
        client.patch(
            "/v1/archive_policy/low", json={"back_window": 3}, headers=ALICE
        ),
        403,
    )
    fault(client.delete("/v1/archive_policy/low", headers=ALICE), 403)
    assert (
        client.get("/v1/archive_policy/low", headers=ALICE).get_json()[
            "back_window"
        ]
        == 0
    )


def test_policy_patch_cannot_change_granularities(client):
    r = client.patch(
        "/v1/archive_policy/medium",
        json={"definition": [{"granularity": 60, "points": 5}]},
        headers=ADMIN,
    )
    assert "does not support change" in fault(r, 400)
    got = client.get("/v1/archive_policy/medium", headers=ALICE).get_json()
    assert len(got["definition"]) == 2
    assert got["definition"][0]["points"] == 10080
    r = client.patch(
        "/v1/archive_policy/medium",
        json={"aggregation_methods": ["mean"]},
        headers=ADMIN,
    )
    assert "aggregation_methods" in fault(r, 400)
    r = client.patch(
        "/v1/archive_policy/nothere", json={"back_window": 1}, headers=ADMIN
    )
    assert "nothere" in fault(r, 404)


def test_policy_in_use_cannot_be_deleted(client):
    body = {"name": "used", "definition": [{"granularity": 1, "points": 5}]}
    client.post("/v1/archive_policy", json=body, headers=ADMIN)
    r = client.post(
        "/v1/metric", json={"archive_policy_name": "used"}, headers=ALICE
    )
    assert r.status_code == 201
    message = fault(
        client.delete("/v1/archive_policy/used", headers=ADMIN), 400
    )
    assert message == "Archive policy used is still in use"
    # low is referenced by the default rule
    message = fault(
        client.delete("/v1/archive_policy/low", headers=ADMIN), 400
    )
    assert "still in use" in message and "default" in message
    assert (
        client.get("/v1/archive_policy/low", headers=ALICE).status_code == 200
    )


# ------------------------------------------------------------- rules --


def test_rule_crud_and_matching_order(client):
    for name, pattern, policy in (
        ("r-disk", "disk.*", "medium"),
        ("r-disk-io", "disk.io.*", "high"),
    ):
        r = client.post(
            "/v1/archive_policy_rule",
            json={
                "name": name,
                "metric_pattern": pattern,
                "archive_policy_name": policy,
            },
            headers=ADMIN,
        )
        assert r.status_code == 201, r.get_data(as_text=True)
        assert r.get_json()["metric_pattern"] == pattern
    names = [
        r["name"]
        for r in client.get(
            "/v1/archive_policy_rule", headers=ALICE
        ).get_json()
    ]
    assert names == ["r-disk-io", "r-disk", "default"]

    def policy_of(metric_name):
        r = client.post(
            "/v1/metric", json={"name": metric_name}, headers=ALICE
        )
        assert r.status_code == 201
        return r.get_json()["archive_policy_name"]

    assert policy_of("disk.io.read") == "high"
    assert policy_of("disk.usage") == "medium"
    assert policy_of("cpu") == "low"

    r = client.patch(
        "/v1/archive_policy_rule/r-disk", json={"name": "r-d"}, headers=ADMIN
    )
    assert r.status_code == 200
    assert r.get_json() == {
        "name": "r-d",
        "archive_policy_name": "medium",
        "metric_pattern": "disk.*",
    }
    assert (
        client.get("/v1/archive_policy_rule/r-disk", headers=ALICE).status_code
        == 404
    )
    assert (
        client.get("/v1/archive_policy_rule/r-d", headers=ALICE).status_code
        == 200
    )
    assert (
        client.delete("/v1/archive_policy_rule/r-d", headers=ADMIN).status_code
        == 204
    )
    assert (
        client.get("/v1/archive_policy_rule/r-d", headers=ALICE).status_code
        == 404
    )
    assert policy_of("disk.free") == "low"


def test_rule_bad_input(client):
    r = client.post(
        "/v1/archive_policy_rule",
        json={"name": "r", "metric_pattern": "*", "archive_policy_name": "zz"},
        headers=ADMIN,
    )
    assert fault(r, 400) == "Archive policy zz does not exist"
    r = client.post(
        "/v1/archive_policy_rule",
        json={"name": "r", "metric_pattern": "*"},
        headers=ADMIN,
    )
    assert "archive_policy_name" in fault(r, 400)
    r = client.post(
        "/v1/archive_policy_rule",
        json={
            "name": "default",
            "metric_pattern": "*",
            "archive_policy_name": "high",
        },
        headers=ADMIN,
    )
    assert "default" in fault(r, 409)
    r = client.post(
        "/v1/archive_policy_rule",
        json={
            "name": "r2",
            "metric_pattern": "*",
            "archive_policy_name": "low",
        },
        headers=ALICE,
    )
    fault(r, 403)
    rules = client.get("/v1/archive_policy_rule", headers=ALICE).get_json()
    assert [r["name"] for r in rules] == ["default"]
    assert rules[0]["archive_policy_name"] == "low"


def test_metric_without_matching_rule_is_400(client):
    client.delete("/v1/archive_policy_rule/default", headers=ADMIN)
    r = client.post("/v1/metric", json={"name": "cpu"}, headers=ALICE)
    assert "no archive policy rule" in fault(r, 400)
    assert client.get("/v1/metric", headers=ADMIN).get_json() == []


# ----------------------------------------------------------- metrics --


def test_metric_create_show_list(client):
    r = client.post(
        "/v1/metric",
        json={"archive_policy_name": "medium", "name": "cpu", "unit": "%"},
        headers=ALICE,
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    created = r.get_json()
    uuid.UUID(created["id"])
    assert created["name"] == "cpu"
    assert created["unit"] == "%"
    assert created["creator"] == "alice:p-a"
    assert created["created_by_user_id"] == "alice"
    assert created["created_by_project_id"] == "p-a"
    assert created["archive_policy"]["name"] == "medium"
    shown = client.get(f"/v1/metric/{created['id']}", headers=ALICE)
    assert shown.get_json() == created
    listed = client.get("/v1/metric", headers=ALICE).get_json()
    assert [m["id"] for m in listed] == [created["id"]]


def test_metric_bad_input_stores_nothing(client):
    for body, field in (
        (
            {"archive_policy_name": "nope"},
            "Archive policy nope does not exist",
        ),
        ({"archive_policy_name": 3}, "archive_policy_name"),
        ({"unit": "u" * 40}, "unit"),
        ({"name": "x", "colour": "red"}, "colour"),
        ([1, 2], "body"),
    ):
        r = client.post("/v1/metric", json=body, headers=ALICE)
        assert field in fault(r, 400)
    assert client.get("/v1/metric", headers=ADMIN).get_json() == []


def test_metric_name_unique_per_resource(client):
    rid = str(uuid.uuid4())
    made = client.post("/v1/resource/generic", json={"id": rid}, headers=ALICE)
    assert made.status_code == 201, made.get_data(as_text=True)
    body = {"name": "cpu", "resource_id": rid}
    assert (
        client.post("/v1/metric", json=body, headers=ALICE).status_code == 201
    )
    # Gnocchi 4.7.1 answers this route with a 400 (409 on the resource's
    # own metric route).
    again = client.post("/v1/metric", json=body, headers=ALICE)
    assert envelopes.gnocchi(again.get_json(), 400) == {
        "cause": "Named metric already exists",
        "detail": "cpu",
    }
    assert "cpu" in fault(
        client.post(f"/v1/resource/generic/{rid}/metric",
                    json={"cpu": {}}, headers=ALICE), 409
    )  # fmt: skip
    missing = {"name": "cpu", "resource_id": str(uuid.uuid4())}
    assert "does not exist" in fault(
        client.post("/v1/metric", json=missing, headers=ALICE), 404
    )
    assert len(client.get("/v1/metric", headers=ALICE).get_json()) == 1


def test_metrics_are_private_to_their_project(client):
    mine = client.post("/v1/metric", json={"name": "a"}, headers=ALICE)
    mid = mine.get_json()["id"]
    client.post("/v1/metric", json={"name": "b"}, headers=BOB)
    assert fault(client.get(f"/v1/metric/{mid}", headers=BOB), 404)
    fault(client.delete(f"/v1/metric/{mid}", headers=BOB), 404)
    assert [
        m["name"] for m in client.get("/v1/metric", headers=BOB).get_json()
    ] == ["b"]
    assert (
        client.get("/v1/metric?project_id=p-a", headers=BOB).get_json() == []
    )
    names = sorted(
        m["name"] for m in client.get("/v1/metric", headers=ADMIN).get_json()
    )
    assert names == ["a", "b"]
    only_a = client.get("/v1/metric?project_id=p-a", headers=ADMIN).get_json()
    assert [m["name"] for m in only_a] == ["a"]
    assert client.get(f"/v1/metric/{mid}", headers=ADMIN).status_code == 200


def test_metric_list_filters_sort_and_paging(client):
    ids = {}
    for name, unit, policy in (
        ("m3", "B", "low"),
        ("m1", "B", "medium"),
        ("m2", "%", "low"),
        ("m0", None, "high"),
    ):
        r = client.post(
            "/v1/metric",
            json={"name": name, "unit": unit, "archive_policy_name": policy},
            headers=ALICE,
        )
        ids[name] = r.get_json()["id"]
    got = client.get("/v1/metric?unit=B&sort=name:asc", headers=ALICE)
    assert [m["name"] for m in got.get_json()] == ["m1", "m3"]
    got = client.get(
        "/v1/metric?archive_policy_name=low&sort=name:desc", headers=ALICE
    )
    assert [m["name"] for m in got.get_json()] == ["m3", "m2"]
    names = []
    url = "/v1/metric?sort=name:desc&limit=3"
    page = client.get(url, headers=ALICE)
    names += [m["name"] for m in page.get_json()]
    assert 'rel="next"' in page.headers["Link"]
    marker = page.get_json()[-1]["id"]
    page = client.get(
        f"/v1/metric?sort=name:desc&limit=3&marker={marker}", headers=ALICE
    )
    names += [m["name"] for m in page.get_json()]
    assert names == ["m3", "m2", "m1", "m0"]
    assert "Link" not in page.headers
    # sort by a nullable column pages consistently
    got = client.get("/v1/metric?sort=unit:asc&limit=2", headers=ALICE)
    first = [m["name"] for m in got.get_json()]
    marker = got.get_json()[-1]["id"]
    rest = client.get(
        f"/v1/metric?sort=unit:asc&limit=2&marker={marker}", headers=ALICE
    ).get_json()
    assert sorted(first + [m["name"] for m in rest]) == [
        "m0",
        "m1",
        "m2",
        "m3",
    ]
    assert first[0] == "m0"
    for query, field in (
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("sort=colour:asc", "sort"),
        ("sort=name:sideways", "sort"),
        ("marker=nope", "marker"),
    ):
        assert field in fault(
            client.get(f"/v1/metric?{query}", headers=ALICE), 400
        )


def test_metric_unknown_is_404(client):
    assert "does not exist" in fault(
        client.get(f"/v1/metric/{uuid.uuid4()}", headers=ALICE), 404
    )
    fault(client.get("/v1/metric/not-a-uuid", headers=ALICE), 404)


def test_capabilities_and_version(client):
    caps = client.get("/v1/capabilities").get_json()["aggregation_methods"]
    assert {"mean", "95pct", "rate:last", "std"} <= set(caps)
    doc = client.get("/v1/").get_json()
    assert doc["version"]["id"] == "v1.0"
    assert client.get("/v1").status_code == 200
