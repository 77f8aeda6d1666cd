"""gnocchiclient's resource, resource type and search calls against us."""

from __future__ import annotations

import datetime as dt

import pytest

gnocchiclient = pytest.importorskip("gnocchiclient")

from gnocchiclient import exceptions as gexc  # noqa: E402

from tests.functional.test_gnocchiclient import make_client  # noqa: E402

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_resources_through_gnocchiclient(live_api):
    admin = make_client(live_api, "admin", "adm", "admin")
    alice = make_client(live_api)
    created_type = admin.resource_type.create(
        {
            "name": "instance",
            "attributes": {
                "server_group": {"type": "string", "required": False},
                "host": {"type": "string", "required": True},
            },
        }
    )
    assert created_type["attributes"]["host"]["required"] is True
    names = [t["name"] for t in alice.resource_type.list()]
    assert names == ["generic", "instance"]

    vm1 = alice.resource.create(
        "instance",
        {"id": "vm1", "host": "n1", "server_group": "g1",
         "metrics": {"cpu": {"archive_policy_name": "medium"}}},
    )  # fmt: skip
    alice.resource.create(
        "instance", {"id": "vm2", "host": "n2", "server_group": "g2"}
    )
    assert vm1["original_resource_id"] == "vm1"
    assert alice.resource.get("instance", "vm1")["id"] == vm1["id"]

    found = alice.resource.search(
        resource_type="instance", query={"=": {"server_group": "g1"}}
    )
    assert [r["original_resource_id"] for r in found] == ["vm1"]
    listed = alice.resource.list("instance", sorts=["host:desc"])
    assert [r["host"] for r in listed] == ["n2", "n1"]

    updated = alice.resource.update("instance", "vm2", {"server_group": "g1"})
    assert updated["server_group"] == "g1"
    found = alice.resource.search(
        resource_type="instance",
        query={"and": [{"=": {"server_group": "g1"}},
                       {"=": {"ended_at": None}}]},
    )  # fmt: skip
    assert sorted(r["original_resource_id"] for r in found) == ["vm1", "vm2"]

    alice.metric.add_measures(
        "cpu",
        [{"timestamp": T0.isoformat(), "value": 42.0}],
        resource_id="vm1",
    )
    got = alice.metric.get_measures("cpu", resource_id="vm1", granularity=60)
    assert got == [(T0, 60.0, 42.0)]

    with pytest.raises(gexc.ClientException) as info:
        alice.resource.search(
            resource_type="instance", query={"=": {"colour": "red"}}
        )
    assert info.value.code == 400
    assert "colour" in str(info.value)

    alice.resource.delete("vm2")
    with pytest.raises(gexc.ClientException) as info:
        alice.resource.get("instance", "vm2")
    assert info.value.code == 404
