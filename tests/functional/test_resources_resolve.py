"""Group resolution for by-resources rules, with and without the cache."""

from __future__ import annotations

import json

import pytest

from alarmer.metrics import index
from tests.functional.test_resources import ADMIN, ALICE, BOB, INSTANCE

QUERY = json.dumps(
    {"and": [{"=": {"server_group": "g1"}}, {"=": {"ended_at": None}}]}
)


@pytest.fixture
def group(client):
    assert (
        client.post("/v1/resource_type", json=INSTANCE, headers=ADMIN)
        .status_code == 201
    )  # fmt: skip
    return client


def add(client, rid, headers=ALICE, sg="g1", metrics=True) -> dict:
    body = {"id": rid, "host": "h", "server_group": sg}
    if metrics:
        body["metrics"] = {"cpu": {"archive_policy_name": "low"}}
    response = client.post("/v1/resource/instance", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def resolve(rt, cache, project=None) -> list[str]:
    with rt.db.read_session() as session:
        return sorted(
            rt.index.resolve_group(
                session, "instance", QUERY, "cpu", project, cache=cache
            )
        )


@pytest.mark.parametrize("cached", [False, True])
def test_group_follows_changes_at_once(group, rt, cached):
    cache = index.ResolutionCache() if cached else None
    vm1 = add(group, "vm1")
    vm2 = add(group, "vm2")
    add(group, "other", sg="g2")
    assert resolve(rt, cache) == sorted(
        [vm1["metrics"]["cpu"], vm2["metrics"]["cpu"]]
    )
    assert resolve(rt, cache) == sorted(
        [vm1["metrics"]["cpu"], vm2["metrics"]["cpu"]]
    )
    if cached:
        assert cache.hits == 1

    vm3 = add(group, "vm3")
    assert vm3["metrics"]["cpu"] in resolve(rt, cache)

    group.patch(
        "/v1/resource/instance/vm1",
        json={"ended_at": "2099-01-01T00:00:00Z"},
        headers=ALICE,
    )
    assert vm1["metrics"]["cpu"] not in resolve(rt, cache)

    group.delete("/v1/resource/instance/vm2", headers=ALICE)
    assert resolve(rt, cache) == [vm3["metrics"]["cpu"]]

    # A metric attached through /v1/metric counts too.
    add(group, "vm4", metrics=False)
    created = group.post(
        "/v1/metric",
        json={"archive_policy_name": "low", "name": "cpu",
              "resource_id": index.resource_uuid("vm4", "alice:pa")},
        headers=ALICE,
    )  # fmt: skip
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["id"] in resolve(rt, cache)

    group.patch(
        "/v1/resource/instance/vm3", json={"server_group": "g2"}, headers=ALICE
    )
    assert vm3["metrics"]["cpu"] not in resolve(rt, cache)


def test_group_is_scoped_to_a_project(group, rt):
    mine = add(group, "vm1")
    add(group, "vm2", headers=BOB)
    for_me = add(group, "vm3", headers=ADMIN | {"X-Project-Id": "adm"})
    group.patch(
        f"/v1/resource/instance/{for_me['id']}",
        json={"project_id": "pa"},
        headers=ADMIN,
    )
    with rt.db.read_session() as session:
        ids = rt.index.resolve_group(session, "instance", QUERY, "cpu", "pa")
        scoped = rt.index.resolve_group(
            session, "instance", index.scope_query(QUERY, "pa"), "cpu"
        )
    expected = sorted([mine["metrics"]["cpu"], for_me["metrics"]["cpu"]])
    assert sorted(ids) == expected
    assert sorted(scoped) == expected


def test_resolution_errors(group, rt):
    with rt.db.read_session() as session:
        with pytest.raises(index.NoSuchResourceType):
            rt.index.resolve_group(session, "volume", "{}", "cpu")
        with pytest.raises(index.QueryError) as info:
            rt.index.resolve_group(session, "instance", "{nope", "cpu")
        assert "JSON" in str(info.value)
        with pytest.raises(index.QueryError) as info:
            rt.index.resolve_group(
                session, "instance", '{"=": {"colour": 1}}', "cpu"
            )
        assert "colour" in str(info.value)


def test_metric_of_resource(group, rt):
    vm1 = add(group, "vm1")
    add(group, "vm1", headers=BOB)
    with rt.db.read_session() as session:
        by_uuid = rt.index.metric_of_resource(session, vm1["id"], "cpu")
        by_name = rt.index.metric_of_resource(
            session, "vm1", "cpu", creator="alice:pa"
        )
        scoped = rt.index.metric_of_resource(
            session, "vm1", "cpu", project_id="pa"
        )
        missing = rt.index.metric_of_resource(session, vm1["id"], "mem")
    assert by_uuid == by_name == scoped == vm1["metrics"]["cpu"]
    assert missing is None
    with rt.db.read_session() as session:
        assert (
            rt.index.metric_of_resource(session, "vm1", "cpu") is None
        )  # ambiguous


def test_cache_is_bounded():
    cache = index.ResolutionCache(max_entries=2)
    for i in range(3):
        cache.put(("t", str(i), "cpu", None), 0, (str(i),))
    assert cache.get(("t", "0", "cpu", None), 0) is None
    assert cache.get(("t", "2", "cpu", None), 0) == ("2",)
    assert cache.get(("t", "2", "cpu", None), 1) is None


def test_evaluator_resolves_resource_metrics_unambiguously(group, rt):
    from alarmer.evaluator import reader as data

    vm1 = add(group, "vm1")
    with rt.db.read_session() as session:
        assert (
            data.resolve_resource_metric(rt.index, session, "vm1", "cpu")
            == (vm1["metrics"]["cpu"])
        )
        assert (
            data.resolve_resource_metric(rt.index, session, vm1["id"], "cpu")
            == (vm1["metrics"]["cpu"])
        )
    add(group, "vm1", headers=BOB)
    with rt.db.read_session() as session:
        with pytest.raises(data.Unresolved) as info:
            data.resolve_resource_metric(rt.index, session, "vm1", "cpu")
    assert "metric cpu for resource vm1 does not exists" in str(info.value)
