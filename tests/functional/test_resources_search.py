"""POST /v1/search/resource/{type}: operators, types, scoping, paging."""

from __future__ import annotations

import pytest

from tests.functional.test_resources import ADMIN, ALICE, BOB, INSTANCE, fault


@pytest.fixture
def fleet(client):
    assert (
        client.post("/v1/resource_type", json=INSTANCE, headers=ADMIN)
        .status_code == 201
    )  # fmt: skip
    rows = [
        ("vm1", ALICE, {"server_group": "g1", "host": "node-1", "vcpus": 2,
                        "pinned": True,
                        "booted_at": "2026-01-01T00:00:00Z"}),
        ("vm2", ALICE, {"server_group": "g1", "host": "node-2", "vcpus": 4,
                        "pinned": False,
                        "booted_at": "2026-01-02T00:00:00Z"}),
        ("vm3", ALICE, {"server_group": "g2", "host": "node-1", "vcpus": 8,
                        "started_at": "2026-01-01T00:00:00Z",
                        "ended_at": "2026-02-01T00:00:00Z"}),
        ("vm4", ALICE, {"host": "other"}),
        ("vm5", BOB, {"server_group": "g1", "host": "node-9", "vcpus": 2}),
    ]  # fmt: skip
    for rid, headers, attrs in rows:
        response = client.post(
            "/v1/resource/instance", json={"id": rid, **attrs}, headers=headers
        )
        assert response.status_code == 201, response.get_json()
    generic = client.post(
        "/v1/resource/generic", json={"id": "gen1"}, headers=ALICE
    )
    assert generic.status_code == 201
    return client


def search(client, query, type_name="instance", headers=ALICE, params=""):
    response = client.post(
        f"/v1/search/resource/{type_name}{params}", json=query, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    return sorted(r["original_resource_id"] for r in response.get_json())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["vm1", "vm2", "vm3", "vm4"]),
        ({"=": {"server_group": "g1"}}, ["vm1", "vm2"]),
        ({"eq": {"server_group": "g1"}}, ["vm1", "vm2"]),
        ({"==": {"host": "node-1"}}, ["vm1", "vm3"]),
        ({"!=": {"server_group": "g1"}}, ["vm3"]),
        ({"ne": {"server_group": "g1"}}, ["vm3"]),
        ({"=": {"server_group": None}}, ["vm4"]),
        ({"!=": {"server_group": None}}, ["vm1", "vm2", "vm3"]),
        ({">": {"vcpus": 2}}, ["vm2", "vm3"]),
        ({"ge": {"vcpus": 4}}, ["vm2", "vm3"]),
        ({"<": {"vcpus": 8}}, ["vm1", "vm2"]),
        ({"≤": {"vcpus": 4.0}}, ["vm1", "vm2"]),
        ({"in": {"vcpus": [2, 8]}}, ["vm1", "vm3"]),
        ({"in": {"host": []}}, []),
        ({"like": {"host": "node-%"}}, ["vm1", "vm2", "vm3"]),
        ({"=": {"pinned": True}}, ["vm1"]),
        ({"=": {"pinned": False}}, ["vm2"]),
        ({">": {"booted_at": "2026-01-01T12:00:00"}}, ["vm2"]),
        ({"=": {"ended_at": None}}, ["vm1", "vm2", "vm4"]),
        ({"and": [{"=": {"server_group": "g1"}}, {"=": {"ended_at": None}}]},
         ["vm1", "vm2"]),
        ({"or": [{"=": {"host": "other"}}, {">=": {"vcpus": 8}}]},
         ["vm3", "vm4"]),
        ({"not": {"=": {"host": "node-1"}}}, ["vm2", "vm4"]),
        ({"∧": [{"=": {"server_group": "g1"}}, {"¬": {"=": {"vcpus": 2}}}]},
         ["vm2"]),
        ({"=": {"id": "vm2"}}, ["vm2"]),
        ({"=": {"project_id": None}}, ["vm1", "vm2", "vm3", "vm4"]),
        ({"=": {"created_by_project_id": "pa"}},
         ["vm1", "vm2", "vm3", "vm4"]),
        ({"<": {"started_at": "2000-01-01"}}, []),
        ({"<": {"started_at": "2026-01-15"}}, ["vm3"]),
    ],
)  # fmt: skip
def test_search_operators(fleet, query, expected):
    assert search(fleet, query) == expected


def test_search_generic_covers_every_type(fleet):
    found = search(fleet, {"=": {"ended_at": None}}, type_name="generic")
    assert found == ["gen1", "vm1", "vm2", "vm4"]


def test_search_is_scoped_to_the_project(fleet):
    assert search(fleet, {"=": {"server_group": "g1"}}, headers=BOB) == ["vm5"]
    assert search(fleet, {"=": {"server_group": "g1"}}, headers=ADMIN) == [
        "vm1", "vm2", "vm5",
    ]  # fmt: skip


def test_search_pages(fleet):
    page = fleet.post(
        "/v1/search/resource/instance?limit=2&sort=original_resource_id:asc",
        json={"!=": {"host": "x"}},
        headers=ALICE,
    ).get_json()
    assert [r["original_resource_id"] for r in page] == ["vm1", "vm2"]
    rest = fleet.post(
        "/v1/search/resource/instance?limit=2&sort=original_resource_id:asc"
        f"&marker={page[-1]['id']}",
        json={"!=": {"host": "x"}},
        headers=ALICE,
    ).get_json()
    assert [r["original_resource_id"] for r in rest] == ["vm3", "vm4"]
    assert rest[0]["host"] == "node-1"


def test_generic_search_shows_attributes_with_details(fleet):
    plain = fleet.post(
        "/v1/search/resource/generic", json={"=": {"id": "vm1"}},
        headers=ALICE,
    ).get_json()  # fmt: skip
    assert "host" not in plain[0]
    detailed = fleet.post(
        "/v1/search/resource/generic?details=true",
        json={"=": {"id": "vm1"}},
        headers=ALICE,
    ).get_json()
    assert detailed[0]["host"] == "node-1"


@pytest.mark.parametrize(
    ("query", "culprit"),
    [
        ({"~": {"host": "x"}}, "~"),
        ({"=": {"colour": "red"}}, "colour"),
        ({"=": {"vcpus": "two"}}, "vcpus"),
        ({"=": {"flavor_id": "small"}}, "flavor_id"),
        ({">": {"booted_at": "soon"}}, "booted_at"),
        ({"=": {"pinned": "yes"}}, "pinned"),
        ({"<": {"ended_at": None}}, "ended_at"),
        ({"like": {"vcpus": "1%"}}, "like"),
        ({"in": {"host": "node-1"}}, "host"),
        ({"in": {"host": ["a", None]}}, "host"),
        ({"=": {"host": ["a"]}}, "host"),
        ({"=": {"host": "a", "vcpus": 1}}, "="),
        ({"=": "host"}, "="),
        ({"and": []}, "and"),
        ({"or": {"=": {"host": "a"}}}, "or"),
        ({"and": [{"=": {"host": "a"}}, "x"]}, "'x'"),
        ({"=": {"host": "a"}, "or": []}, "one operator"),
        ([{"=": {"host": "a"}}], "not an object"),
        ({"not": {}}, "empty"),
        ({"=": {"server_group": 5}}, "server_group"),
    ],
)  # fmt: skip
def test_bad_query_is_a_400_naming_the_culprit(fleet, query, culprit):
    response = fleet.post(
        "/v1/search/resource/instance", json=query, headers=ALICE
    )
    assert response.status_code == 400, response.get_json()
    assert culprit in fault(response)


def test_search_unknown_type_and_bad_body(fleet):
    missing = fleet.post("/v1/search/resource/volume", json={}, headers=ALICE)
    assert missing.status_code == 404
    assert "volume" in fault(missing)
    bad = fleet.post(
        "/v1/search/resource/instance",
        data="{=",
        content_type="application/json",
        headers=ALICE,
    )
    assert bad.status_code == 400
    assert "JSON" in fault(bad)
    deep: dict = {"=": {"host": "a"}}
    for _ in range(40):
        deep = {"not": deep}
    too_deep = fleet.post(
        "/v1/search/resource/instance", json=deep, headers=ALICE
    )
    assert too_deep.status_code == 400
    assert "nested" in fault(too_deep)
