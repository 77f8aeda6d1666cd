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


def test_resource_alarm_reads_the_resource_of_its_project(group, rt):
    """A non-UUID resource id used by two projects: each alarm reads its own.

    The evaluator resolves ``resource_id`` among the resources of the
    alarm's project, so the name is not ambiguous for it.
    """
    import time

    import numpy as np

    from alarmer.alarms.tables import Alarm
    from alarmer.evaluator.service import EvaluatorService
    from alarmer.metrics.series import store as series_mod

    def add_high(headers):
        body = {
            "id": "vm1",
            "host": "h",
            "server_group": "g1",
            "metrics": {"cpu": {"archive_policy_name": "high"}},
        }
        response = group.post(
            "/v1/resource/instance", json=body, headers=headers
        )  # fmt: skip
        assert response.status_code == 201, response.get_json()
        return response.get_json()["metrics"]["cpu"]

    alice_cpu = add_high(ALICE)
    bob_cpu = add_high(BOB)
    policy = rt.index.get_archive_policy("high")
    now = time.time_ns() // 10**9
    stamps = np.array([(now - k) * 10**9 for k in (2, 1, 0)], dtype=np.int64)
    for metric_id, value in ((alice_cpu, 90.0), (bob_cpu, 10.0)):
        rt.series.add_measures(
            series_mod.MetricRef(metric_id, policy), stamps, np.full(3, value)
        )
    rt.conf.set_override("refresh_interval", 0.05, group="evaluator")
    rt.conf.set_override("evaluation_interval", 3600, group="evaluator")
    service = EvaluatorService(rt)
    service.start()
    alarms = {}

    def states() -> dict[str, tuple[str, str]]:
        with rt.db.read_session() as session:
            rows = {n: session.get(Alarm, a) for n, a in alarms.items()}
            return {n: (r.state, r.state_reason) for n, r in rows.items()}

    try:
        # Created after the start: evaluated at once.
        for name, headers in (("alice", ALICE), ("bob", BOB)):
            response = group.post(
                "/v2/alarms",
                json={
                    "name": f"cpu-{name}",
                    "type": "gnocchi_resources_threshold",
                    "gnocchi_resources_threshold_rule": {
                        "metric": "cpu",
                        "resource_id": "vm1",
                        "resource_type": "instance",
                        "aggregation_method": "mean",
                        "threshold": 50,
                        "comparison_operator": "gt",
                        "granularity": 1,
                        "evaluation_periods": 2,
                    },
                },
                headers=headers,
            )
            assert response.status_code == 201, response.get_json()
            alarms[name] = response.get_json()["alarm_id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            set(service.owned()) < set(alarms.values())
            or service.stats.evaluations < len(alarms)
            or any(s == "insufficient data" for s, _ in states().values())
        ):
            time.sleep(0.05)
    finally:
        service.stop()
    found = states()
    assert found["alice"][0] == "alarm", found
    assert found["bob"][0] == "ok", found
