"""Measures through resources, batch by resources, aggregates by search."""

from __future__ import annotations

import pytest

from alarmer.metrics import index as res
from tests.functional.series_helpers import ContendedDriver, Recorder
from tests.functional.test_resources import ADMIN, ALICE, BOB, INSTANCE, fault

POLICY = {
    "name": "p60",
    "back_window": 0,
    "definition": [{"granularity": 60, "points": 1440}],
    "aggregation_methods": ["mean", "max", "count"],
}
T0 = "2026-03-01T10:00:00+00:00"


def point(minute: int, value: float, second: int = 10) -> dict:
    return {
        "timestamp": f"2026-03-01T10:{minute:02d}:{second:02d}Z",
        "value": value,
    }


@pytest.fixture
def group(client):
    assert (
        client.post("/v1/archive_policy", json=POLICY, headers=ADMIN)
        .status_code == 201
    )  # fmt: skip
    assert (
        client.post("/v1/resource_type", json=INSTANCE, headers=ADMIN)
        .status_code == 201
    )  # fmt: skip
    for rid, sg, headers in [
        ("vm1", "g1", ALICE),
        ("vm2", "g1", ALICE),
        ("vm3", "g2", ALICE),
        ("vm9", "g1", BOB),
    ]:
        response = client.post(
            "/v1/resource/instance",
            json={"id": rid, "host": "h", "server_group": sg,
                  "metrics": {"cpu": {"archive_policy_name": "p60"}}},
            headers=headers,
        )  # fmt: skip
        assert response.status_code == 201, response.get_json()
    return client


def push(client, rid, values, headers=ALICE):
    response = client.post(
        f"/v1/resource/instance/{rid}/metric/cpu/measures",
        json=[point(*item) for item in values],
        headers=headers,
    )
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def aggregate(client, query, headers=ALICE, method="mean", **params):
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return client.post(
        f"/v1/aggregates?{qs}",
        json={
            "operations": ["aggregate", method, ["metric", "cpu", "mean"]],
            "resource_type": "instance",
            "search": query,
        },
        headers=headers,
    )


def test_named_metric_measures_round_trip(group):
    assert push(group, "vm1", [(0, 10), (0, 20, 20), (1, 5)]) == {
        "measures_stored": 3, "measures_refused": 0,
    }  # fmt: skip
    got = group.get(
        "/v1/resource/instance/vm1/metric/cpu/measures?granularity=60",
        headers=ALICE,
    )
    assert got.status_code == 200, got.get_json()
    assert got.get_json() == [
        [T0, 60.0, 15.0],
        ["2026-03-01T10:01:00+00:00", 60.0, 5.0],
    ]
    maxed = group.get(
        "/v1/resource/instance/vm1/metric/cpu/measures?aggregation=max",
        headers=ALICE,
    ).get_json()
    assert maxed[0] == [T0, 60.0, 20.0]


def test_named_metric_measures_errors_store_nothing(group):
    bad = group.post(
        "/v1/resource/instance/vm1/metric/cpu/measures",
        json=[point(0, 1), {"timestamp": "x", "value": 1}],
        headers=ALICE,
    )
    assert bad.status_code == 400
    assert "measures[1]" in fault(bad)
    missing = group.post(
        "/v1/resource/instance/vm1/metric/mem/measures",
        json=[point(0, 1)],
        headers=ALICE,
    )
    assert missing.status_code == 404
    assert "mem" in fault(missing)
    method = group.get(
        "/v1/resource/instance/vm1/metric/cpu/measures?aggregation=median",
        headers=ALICE,
    )
    assert method.status_code == 404
    assert "median" in fault(method)
    other = group.post(
        "/v1/resource/instance/vm1/metric/cpu/measures",
        json=[point(0, 1)],
        headers=BOB,
    )
    assert other.status_code in (403, 404)
    stored = group.get(
        "/v1/resource/instance/vm1/metric/cpu/measures", headers=ALICE
    ).get_json()
    assert stored == []


def test_batch_by_resources_creates_metrics(group):
    body = {
        "vm1": {"cpu": [point(0, 1)],
                "mem": {"archive_policy_name": "p60",
                        "measures": [point(0, 512)]}},
        "vm2": {"cpu": [point(0, 3)]},
    }  # fmt: skip
    refused = group.post(
        "/v1/batch/resources/metrics/measures", json=body, headers=ALICE
    )
    assert refused.status_code == 400
    assert "mem" in fault(refused)
    assert (
        group.get(
            "/v1/resource/instance/vm1/metric/cpu/measures", headers=ALICE
        ).get_json()
        == []
    )
    done = group.post(
        "/v1/batch/resources/metrics/measures?create_metrics=true",
        json=body,
        headers=ALICE,
    )
    assert done.status_code == 202, done.get_json()
    assert done.get_json()["measures_stored"] == 3
    mem = group.get(
        "/v1/resource/instance/vm1/metric/mem/measures", headers=ALICE
    ).get_json()
    assert mem == [[T0, 60.0, 512.0]]
    unknown = group.post(
        "/v1/batch/resources/metrics/measures",
        json={"nope": {"cpu": [point(0, 1)]}},
        headers=ALICE,
    )
    assert fault(unknown) == "Unknown resources"
    [detail] = unknown.get_json()["description"]["detail"]
    assert detail["original_resource_id"] == "nope"
    assert detail["resource_id"] == res.resource_uuid("nope", "alice:pa")


def test_aggregates_by_search_follow_the_group(group):
    push(group, "vm1", [(0, 10), (1, 20)])
    push(group, "vm2", [(0, 30), (1, 40)])
    push(group, "vm3", [(0, 1000), (1, 1000)])
    push(group, "vm9", [(0, 5000), (1, 5000)], headers=BOB)
    query = {"and": [{"=": {"server_group": "g1"}}, {"=": {"ended_at": None}}]}
    response = aggregate(group, query, granularity=60, needed_overlap=0)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["measures"]["aggregated"] == [
        [T0, 60.0, 20.0],
        ["2026-03-01T10:01:00+00:00", 60.0, 30.0],
    ]
    # A new member counts from its first measure...
    created = group.post(
        "/v1/resource/instance",
        json={"id": "vm4", "host": "h", "server_group": "g1",
              "metrics": {"cpu": {"archive_policy_name": "p60"}}},
        headers=ALICE,
    )  # fmt: skip
    assert created.status_code == 201
    push(group, "vm4", [(1, 60)])
    response = aggregate(group, query, granularity=60, needed_overlap=0)
    assert response.get_json()["measures"]["aggregated"][-1][2] == 40.0
    # ...an ended one stops counting at once, a deleted one too.
    group.patch(
        "/v1/resource/instance/vm2",
        json={"ended_at": "2026-12-31T00:00:00Z"},
        headers=ALICE,
    )
    group.delete("/v1/resource/instance/vm4", headers=ALICE)
    response = aggregate(group, query, granularity=60, needed_overlap=0)
    assert response.get_json()["measures"]["aggregated"] == [
        [T0, 60.0, 10.0],
        ["2026-03-01T10:01:00+00:00", 60.0, 20.0],
    ]
    # An admin sees every project's resources.
    admin = aggregate(group, query, headers=ADMIN, method="max",
                      granularity=60, needed_overlap=0)  # fmt: skip
    assert admin.get_json()["measures"]["aggregated"][0][2] == 5000.0


def test_aggregates_by_search_per_resource_output(group):
    push(group, "vm1", [(0, 10)])
    push(group, "vm2", [(0, 30)])
    response = group.post(
        "/v1/aggregates?granularity=60",
        json={"operations": ["metric", "cp*", "mean"],
              "resource_type": "instance",
              "search": {"=": {"server_group": "g1"}}},
        headers=ALICE,
    )  # fmt: skip
    assert response.status_code == 200, response.get_json()
    measures = response.get_json()["measures"]
    vm1 = res.resource_uuid("vm1", "alice:pa")
    vm2 = res.resource_uuid("vm2", "alice:pa")
    assert measures == {
        vm1: {"cpu": {"mean": [[T0, 60.0, 10.0]]}},
        vm2: {"cpu": {"mean": [[T0, 60.0, 30.0]]}},
    }


@pytest.mark.parametrize(
    ("body", "status", "culprit"),
    [
        ({"resource_type": "volume", "search": {}}, 404, "volume"),
        ({"resource_type": "instance", "search": {"=": {"colour": "x"}}},
         400, "colour"),
        ({"resource_type": "instance", "search": "host = 'x'"}, 400,
         "search"),
        ({"resource_type": "instance", "search": {"=": {"host": "none"}}},
         400, "Metrics not found"),
        ({"resource_type": 5, "search": {}}, 400, "resource_type"),
    ],
)  # fmt: skip
def test_aggregates_by_search_errors(group, body, status, culprit):
    response = group.post(
        "/v1/aggregates?granularity=60",
        json={"operations": ["aggregate", "mean", ["metric", "cpu", "mean"]],
              **body},
        headers=ALICE,
    )  # fmt: skip
    assert response.status_code == status, response.get_json()
    assert culprit in fault(response)


def test_a_member_that_stops_reporting_drops_out_after_its_last_bucket(
    group,
):
    push(group, "vm1", [(0, 10), (1, 20), (2, 30)])
    push(group, "vm2", [(0, 50)])
    query = {"=": {"server_group": "g1"}}
    # Aodh's request: a bounded window and needed_overlap=0.
    response = aggregate(
        group,
        query,
        granularity=60,
        needed_overlap=0,
        start="2026-03-01T10:00:00Z",
        stop="2026-03-01T10:03:00Z",
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["measures"]["aggregated"] == [
        [T0, 60.0, 30.0],
        ["2026-03-01T10:01:00+00:00", 60.0, 20.0],
        ["2026-03-01T10:02:00+00:00", 60.0, 30.0],
    ]


def test_resource_writes_answer_503_on_write_conflict(group, rt, monkeypatch):
    """A write lost to concurrent writers is a 503, never a 500.

    Another writer always wins on vm2's cpu (its driver reports a
    version conflict on every conditional write): the named-metric view
    and the batch by resources answer 503 with ``Retry-After`` and
    report nothing as stored; vm2 holds nothing, and the points of vm1
    written before the conflict are announced on the metric channel.
    """
    ids = {
        rid: group.get(f"/v1/resource/instance/{rid}", headers=ALICE)
        .get_json()["metrics"]["cpu"]
        for rid in ("vm1", "vm2")
    }  # fmt: skip
    monkeypatch.setattr(
        rt.series, "driver", ContendedDriver(rt.series.driver, {ids["vm2"]})
    )
    heard = Recorder()
    rt.channel.subscribe(heard)
    named = group.post(
        "/v1/resource/instance/vm2/metric/cpu/measures",
        json=[point(0, 1)],
        headers=ALICE,
    )
    assert named.status_code == 503, named.get_json()
    assert named.headers["Retry-After"] == "1"
    assert ids["vm2"] in fault(named)
    assert "retry the request" in fault(named)
    assert "measures_stored" not in named.get_data(as_text=True)
    assert heard.ids == []
    batch = group.post(
        "/v1/batch/resources/metrics/measures",
        json={"vm1": {"cpu": [point(0, 7)]}, "vm2": {"cpu": [point(0, 2)]}},
        headers=ALICE,
    )
    assert batch.status_code == 503, batch.get_json()
    assert batch.headers["Retry-After"] == "1"
    assert ids["vm2"] in fault(batch)
    assert "measures_stored" not in batch.get_data(as_text=True)
    assert set(heard.ids) == {ids["vm1"], ids["vm2"]}
    read = "/v1/resource/instance/{}/metric/cpu/measures?granularity=60"
    assert group.get(read.format("vm2"), headers=ALICE).get_json() == []
    assert group.get(read.format("vm1"), headers=ALICE).get_json() == [
        [T0, 60.0, 7.0]
    ]
    # contention over: the same requests are stored and reported
    monkeypatch.undo()
    assert push(group, "vm2", [(0, 1)]) == {
        "measures_stored": 1, "measures_refused": 0,
    }  # fmt: skip
    assert group.get(read.format("vm2"), headers=ALICE).get_json() == [
        [T0, 60.0, 1.0]
    ]
