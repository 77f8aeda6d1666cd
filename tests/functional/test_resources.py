"""Resources and resource types over the v1 API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from alarmer.metrics import index as res
from tests import envelopes

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "adminp", "X-Roles": "admin"}
ALICE = {"X-User-Id": "alice", "X-Project-Id": "pa", "X-Roles": "member"}
BOB = {"X-User-Id": "bob", "X-Project-Id": "pb", "X-Roles": "member"}

INSTANCE = {
    "name": "instance",
    "attributes": {
        "server_group": {"type": "string", "required": False},
        "host": {"type": "string", "required": True, "max_length": 64},
        "flavor_id": {"type": "uuid", "required": False},
        "vcpus": {"type": "number", "required": False, "min": 1},
        "pinned": {"type": "bool", "required": False},
        "booted_at": {"type": "datetime", "required": False},
    },
}


def fault(response) -> str:
    return envelopes.message(response)


@pytest.fixture
def itype(client):
    response = client.post("/v1/resource_type", json=INSTANCE, headers=ADMIN)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def make(client, rid, headers=ALICE, **attrs):
    body = {"id": rid, "host": "h1", **attrs}
    response = client.post("/v1/resource/instance", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [r["original_resource_id"] for r in response.get_json()]


# ------------------------------------------------------------ types


def test_resource_type_round_trip(client, itype):
    assert itype["name"] == "instance"
    assert itype["state"] == "active"
    assert itype["attributes"]["host"] == {
        "type": "string", "required": True, "min_length": 0, "max_length": 64,
    }  # fmt: skip
    assert itype["attributes"]["vcpus"] == {
        "type": "number", "required": False, "min": 1.0, "max": None,
    }  # fmt: skip
    shown = client.get("/v1/resource_type/instance", headers=ALICE)
    assert shown.get_json() == itype
    names = [
        t["name"]
        for t in client.get("/v1/resource_type", headers=ALICE).get_json()
    ]
    assert names == ["generic", "instance"]
    again = client.post("/v1/resource_type", json=INSTANCE, headers=ADMIN)
    assert again.status_code == 409
    assert "instance" in fault(again)


@pytest.mark.parametrize(
    ("body", "culprit"),
    [
        ({"name": "1bad"}, "name"),
        ({"name": "t", "attributes": {"x": {"type": "colour"}}}, "x/type"),
        ({"name": "t", "attributes": {"id": {"type": "string"}}}, "id"),
        ({"name": "t", "attributes": {"ended_at": {"type": "bool"}}},
         "ended_at"),
        ({"name": "t", "attributes": {"x": {"type": "string",
                                            "max_length": 300}}},
         "max_length"),
        ({"name": "t", "attributes": {"x": {"type": "number", "min": 5,
                                            "max": 1}}}, "max"),
        ({"name": "t", "attributes": {"x": {"type": "bool",
                                            "required": "yes"}}},
         "required"),
        ({"name": "t", "attributes": {"x": {"type": "uuid", "min": 1}}},
         "min"),
        ({"name": "t", "colour": 1}, "colour"),
    ],
)  # fmt: skip
def test_bad_resource_type_is_a_400_and_stores_nothing(client, body, culprit):
    response = client.post("/v1/resource_type", json=body, headers=ADMIN)
    assert response.status_code == 400
    assert culprit in fault(response)
    names = [
        t["name"]
        for t in client.get("/v1/resource_type", headers=ADMIN).get_json()
    ]
    assert names == ["generic"]


def test_resource_types_are_managed_by_admins(client):
    response = client.post("/v1/resource_type", json=INSTANCE, headers=ALICE)
    assert response.status_code == 403
    fault(response)
    assert (
        client.get("/v1/resource_type/instance", headers=ADMIN).status_code
        == 404
    )


def test_resource_type_in_use_cannot_be_deleted(client, itype):
    make(client, "vm1")
    response = client.delete("/v1/resource_type/instance", headers=ADMIN)
    assert response.status_code == 400
    assert "still in use" in fault(response)
    client.delete("/v1/resource/instance/vm1", headers=ALICE)
    assert (
        client.delete("/v1/resource_type/instance", headers=ADMIN).status_code
        == 204
    )
    assert (
        client.get("/v1/resource_type/instance", headers=ADMIN).status_code
        == 404
    )
    generic = client.delete("/v1/resource_type/generic", headers=ADMIN)
    assert generic.status_code == 400
    assert "generic" in fault(generic)


def test_resource_type_patch_adds_and_removes_attributes(client, itype):
    make(client, "vm1", pinned=True)
    patch = [
        {"op": "add", "path": "/attributes/az",
         "value": {"type": "string", "required": False}},
        {"op": "remove", "path": "/attributes/pinned"},
    ]  # fmt: skip
    response = client.patch(
        "/v1/resource_type/instance", json=patch, headers=ADMIN
    )
    assert response.status_code == 200, response.get_json()
    attrs = response.get_json()["attributes"]
    assert "az" in attrs and "pinned" not in attrs
    shown = client.get("/v1/resource/instance/vm1", headers=ALICE).get_json()
    assert shown["az"] is None and "pinned" not in shown
    required = [
        {"op": "add", "path": "/attributes/rack",
         "value": {"type": "string", "required": True}},
    ]  # fmt: skip
    refused = client.patch(
        "/v1/resource_type/instance", json=required, headers=ADMIN
    )
    assert refused.status_code == 400
    assert "rack" in fault(refused) or "required" in fault(refused)
    attrs = client.get("/v1/resource_type/instance", headers=ADMIN).get_json()[
        "attributes"
    ]
    assert "rack" not in attrs


# ------------------------------------------------------------ resources


def test_create_show_update_delete_resource(client, itype):
    flavor = str(uuid.uuid4())
    created = make(
        client,
        "vm-one",
        server_group="g1",
        flavor_id=flavor.upper(),
        vcpus=4,
        pinned=False,
        booted_at="2026-01-02T03:04:05",
        project_id="pa",
        user_id="alice",
    )
    assert created["id"] == res.resource_uuid("vm-one", "alice:pa")
    assert created["original_resource_id"] == "vm-one"
    assert created["type"] == "instance"
    assert created["created_by_project_id"] == "pa"
    assert created["creator"] == "alice:pa"
    assert created["flavor_id"] == flavor
    assert created["vcpus"] == 4
    assert created["pinned"] is False
    assert created["booted_at"] == "2026-01-02T03:04:05+00:00"
    assert created["ended_at"] is None
    assert created["metrics"] == {}

    shown = client.get("/v1/resource/instance/vm-one", headers=ALICE)
    assert shown.status_code == 200
    assert shown.get_json() == created
    by_uuid = client.get(
        f"/v1/resource/generic/{created['id']}", headers=ALICE
    )
    assert by_uuid.get_json()["id"] == created["id"]

    patched = client.patch(
        "/v1/resource/instance/vm-one",
        json={"server_group": None, "ended_at": "2030-01-01T00:00:00Z",
              "vcpus": 8},
        headers=ALICE,
    )  # fmt: skip
    assert patched.status_code == 200, patched.get_json()
    shown = client.get("/v1/resource/instance/vm-one", headers=ALICE)
    body = shown.get_json()
    assert body["server_group"] is None
    assert body["vcpus"] == 8
    assert body["ended_at"] == "2030-01-01T00:00:00+00:00"
    assert body["revision_start"] >= created["revision_start"]

    assert (
        client.delete("/v1/resource/instance/vm-one", headers=ALICE)
        .status_code == 204
    )  # fmt: skip
    gone = client.get("/v1/resource/instance/vm-one", headers=ALICE)
    assert gone.status_code == 404
    assert "vm-one" in fault(gone)


def test_duplicate_resource_is_a_409(client, itype):
    make(client, "vm1")
    again = client.post(
        "/v1/resource/instance", json={"id": "vm1", "host": "x"}, headers=ALICE
    )
    assert again.status_code == 409
    assert "vm1" in fault(again)


@pytest.mark.parametrize(
    ("body", "culprit"),
    [
        ({"host": "h"}, "id"),
        ({"id": "a/b", "host": "h"}, "/"),
        ({"id": "x" * 300, "host": "h"}, "255"),
        ({"id": "vm"}, "host"),
        ({"id": "vm", "host": None}, "host"),
        ({"id": "vm", "host": "h" * 65}, "host"),
        ({"id": "vm", "host": 5}, "host"),
        ({"id": "vm", "host": "h", "flavor_id": "small"}, "flavor_id"),
        ({"id": "vm", "host": "h", "vcpus": "4"}, "vcpus"),
        ({"id": "vm", "host": "h", "vcpus": 0}, "vcpus"),
        ({"id": "vm", "host": "h", "pinned": "no"}, "pinned"),
        ({"id": "vm", "host": "h", "booted_at": "yesterday"}, "booted_at"),
        ({"id": "vm", "host": "h", "colour": "red"}, "colour"),
        ({"id": "vm", "host": "h", "project_id": 7}, "project_id"),
        ({"id": "vm", "host": "h", "started_at": "2026-02-01",
          "ended_at": "2026-01-01"}, "ended_at"),
        ({"id": "vm", "host": "h",
          "metrics": {"cpu": {"archive_policy_name": "nope"}}}, "nope"),
        ({"id": "vm", "host": "h", "metrics": {"cpu": 5}}, "metrics/cpu"),
        ({"id": "vm", "host": "h", "metrics": {"cpu": "not-a-uuid"}},
         "metrics/cpu"),
        ({"id": "vm", "host": "h",
          "metrics": {"cpu": {"archive_policy_name": "low", "x": 1}}},
         "metrics/cpu"),
        ({"id": "vm", "host": "h", "metrics": []}, "metrics"),
    ],
)  # fmt: skip
def test_bad_resource_is_a_400_and_stores_nothing(
    client, itype, body, culprit
):
    response = client.post("/v1/resource/instance", json=body, headers=ALICE)
    assert response.status_code == 400, response.get_json()
    assert culprit in fault(response)
    assert client.get("/v1/resource/generic", headers=ADMIN).get_json() == []
    metrics = client.get("/v1/metric", headers=ADMIN)
    if metrics.status_code == 200:
        assert metrics.get_json() == []


def test_bad_json_and_unknown_type(client, itype):
    response = client.post(
        "/v1/resource/instance",
        data="{not json",
        content_type="application/json",
        headers=ALICE,
    )
    assert response.status_code == 400
    assert "JSON" in fault(response)
    missing = client.post(
        "/v1/resource/volume", json={"id": "v"}, headers=ALICE
    )
    assert missing.status_code == 404
    assert "volume" in fault(missing)
    anonymous = client.get("/v1/resource/generic")
    assert anonymous.status_code == 401
    fault(anonymous)


def test_bad_patch_is_a_400_and_changes_nothing(client, itype):
    before = make(client, "vm1", vcpus=2)
    for body, culprit in [
        ({"id": "other"}, "id"),
        ({"type": "generic"}, "type"),
        ({"vcpus": "many"}, "vcpus"),
        ({"host": None}, "host"),
        ({"started_at": None}, "started_at"),
        ({"ended_at": "1999-01-01T00:00:00Z"}, "ended_at"),
        ({"nope": 1}, "nope"),
    ]:
        response = client.patch(
            "/v1/resource/instance/vm1", json=body, headers=ALICE
        )
        assert response.status_code == 400, body
        assert culprit in fault(response)
    after = client.get("/v1/resource/instance/vm1", headers=ALICE).get_json()
    assert after == before


def test_resources_are_scoped_to_the_project(client, itype):
    make(client, "vm-a", headers=ALICE)
    make(client, "vm-b", headers=BOB)
    make(client, "vm-for-a", headers=ADMIN, project_id="pa")
    assert sorted(ids(client.get("/v1/resource/instance", headers=ALICE))) == [
        "vm-a", "vm-for-a",
    ]  # fmt: skip
    assert ids(client.get("/v1/resource/instance", headers=BOB)) == ["vm-b"]
    assert len(ids(client.get("/v1/resource/generic", headers=ADMIN))) == 3
    vm_b = res.resource_uuid("vm-b", "bob:pb")
    denied = client.get(f"/v1/resource/instance/{vm_b}", headers=ALICE)
    assert denied.status_code == 403
    fault(denied)
    assert (
        client.delete(f"/v1/resource/instance/{vm_b}", headers=ALICE)
        .status_code == 403
    )  # fmt: skip
    assert (
        client.get(f"/v1/resource/instance/{vm_b}", headers=BOB).status_code
        == 200
    )


def test_listing_pages_and_sorts(client, itype):
    for i in range(7):
        make(client, f"vm{i}", started_at=f"2026-01-0{i + 1}T00:00:00Z")
    seen: list[str] = []
    marker = None
    while True:
        url = "/v1/resource/instance?limit=3&sort=started_at:desc"
        if marker:
            url += f"&marker={marker}"
        page = client.get(url, headers=ALICE).get_json()
        if not page:
            break
        seen += [r["original_resource_id"] for r in page]
        marker = page[-1]["id"]
    assert seen == [f"vm{i}" for i in range(6, -1, -1)]
    for query, culprit in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("sort=colour", "colour"),
        ("sort=id:sideways", "sideways"),
        ("marker=nope", "marker"),
    ]:
        response = client.get(f"/v1/resource/instance?{query}", headers=ALICE)
        assert response.status_code == 400, query
        assert culprit in fault(response)


def test_resource_metrics_are_created_listed_and_deleted(client, itype):
    created = make(
        client,
        "vm1",
        metrics={"cpu": {"archive_policy_name": "low", "unit": "%"},
                 "mem": {}},
    )  # fmt: skip
    assert sorted(created["metrics"]) == ["cpu", "mem"]
    cpu = client.get("/v1/resource/instance/vm1/metric/cpu", headers=ALICE)
    assert cpu.status_code == 200, cpu.get_json()
    assert cpu.get_json()["id"] == created["metrics"]["cpu"]
    assert cpu.get_json()["archive_policy_name"] == "low"
    assert cpu.get_json()["unit"] == "%"
    assert cpu.get_json()["resource_id"] == created["id"]

    added = client.post(
        "/v1/resource/instance/vm1/metric",
        json={"disk": {"archive_policy_name": "medium"}},
        headers=ALICE,
    )
    assert added.status_code == 200, added.get_json()
    assert [m["name"] for m in added.get_json()] == ["cpu", "disk", "mem"]
    dup = client.post(
        "/v1/resource/instance/vm1/metric", json={"cpu": {}}, headers=ALICE
    )
    assert dup.status_code == 409
    assert "cpu" in fault(dup)

    assert (
        client.delete("/v1/resource/instance/vm1/metric/disk", headers=ALICE)
        .status_code == 204
    )  # fmt: skip
    missing = client.get(
        "/v1/resource/instance/vm1/metric/disk", headers=ALICE
    )
    assert missing.status_code == 404
    assert "disk" in fault(missing)

    client.delete("/v1/resource/instance/vm1", headers=ALICE)
    metric = client.get(
        f"/v1/metric/{created['metrics']['cpu']}", headers=ADMIN
    )
    assert metric.status_code == 404


def test_batch_delete_by_search(client, itype):
    make(client, "a", server_group="g1")
    make(client, "b", server_group="g1")
    make(client, "c", server_group="g2")
    response = client.delete(
        "/v1/resource/instance", json={"=": {"server_group": "g1"}},
        headers=ALICE,
    )  # fmt: skip
    assert response.status_code == 200
    assert response.get_json() == {"deleted": 2}
    assert ids(client.get("/v1/resource/instance", headers=ALICE)) == ["c"]


def test_listing_sorts_by_typed_attributes_with_paging(client, itype):
    for i, vcpus in enumerate([4, None, 2, 8, 4, None]):
        extra = {} if vcpus is None else {"vcpus": vcpus}
        make(client, f"vm{i}", **extra)
    for direction in ("asc", "desc"):
        seen: list[tuple] = []
        marker = None
        while True:
            url = (
                f"/v1/resource/instance?limit=2&sort=vcpus:{direction}"
                "&sort=original_resource_id:asc"
            )
            if marker:
                url += f"&marker={marker}"
            response = client.get(url, headers=ALICE)
            assert response.status_code == 200, response.get_json()
            page = response.get_json()
            if not page:
                break
            seen += [(r["vcpus"], r["original_resource_id"]) for r in page]
            marker = page[-1]["id"]
        with_value = sorted((v, n) for v, n in seen if v is not None)
        if direction == "desc":
            with_value = sorted(with_value, key=lambda x: (-x[0], x[1]))
        assert seen == [*with_value, (None, "vm1"), (None, "vm5")]
    bad = client.get("/v1/resource/instance?sort=colour", headers=ALICE)
    assert bad.status_code == 400
    assert "colour" in fault(bad) and "vcpus" in fault(bad)


@pytest.mark.parametrize(
    ("headers", "creator"),
    [
        (ALICE, "alice:pa"),
        ({"X-User-Id": "alice", "X-Roles": "member"}, "alice:"),
        ({"X-Project-Id": "pa", "X-Roles": "member"}, ":pa"),
    ],
)
def test_metric_creator_is_gnocchis_on_both_creation_paths(
    client, headers, creator
):
    """``/v1/metric`` and a resource's metrics record the same creator.

    Gnocchi's ``user:project`` of the request, a missing part empty; the
    resource records it too and maps its non-UUID id with it.
    """
    direct = client.post(
        "/v1/metric", json={"archive_policy_name": "low"}, headers=headers
    )
    assert direct.status_code == 201, direct.get_json()
    created = client.post(
        "/v1/resource/generic",
        json={"id": "r1", "metrics": {"cpu": {"archive_policy_name": "low"}}},
        headers=headers,
    )
    assert created.status_code == 201, created.get_json()
    resource = created.get_json()
    assert resource["creator"] == creator
    assert resource["id"] == res.resource_uuid("r1", creator)
    shown = client.get(
        f"/v1/metric/{direct.get_json()['id']}", headers=headers
    ).get_json()
    named = client.get(
        "/v1/resource/generic/r1/metric/cpu", headers=headers
    ).get_json()
    assert shown["id"] == direct.get_json()["id"]
    assert named["id"] == resource["metrics"]["cpu"]
    assert shown["creator"] == named["creator"] == creator


def test_deleting_a_resource_drops_the_series_of_its_metrics(
    client, itype, rt
):
    created = make(client, "vm1", metrics={"cpu": {"archive_policy_name":
                                                   "low"}})  # fmt: skip
    metric_id = created["metrics"]["cpu"]
    stored = client.post(
        "/v1/resource/instance/vm1/metric/cpu/measures",
        json=[{"timestamp": "2024-01-01T00:00:00Z", "value": 1}],
        headers=ALICE,
    )
    assert stored.status_code == 202, stored.get_json()
    assert rt.series.get_measures(metric_id, "mean") != []
    deleted = client.delete("/v1/resource/instance/vm1", headers=ALICE)
    assert deleted.status_code == 204
    assert rt.series.get_measures(metric_id, "mean") == []
