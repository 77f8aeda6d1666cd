"""The calls of Grafana's Gnocchi datasource, replayed against alarmer.

Each request below is one the datasource makes (test connection,
suggestions, the four query modes and the templating queries), with
its parameters as it sends them (``start``, ``end`` and ``stop``
together), over HTTP against a running server.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import requests

pytestmark = pytest.mark.slow

# The headers of the datasource's "noauth" mode.
H = {
    "X-Project-Id": "p1",
    "X-User-Id": "grafana",
    "X-Domain-Id": "default",
    "X-Roles": "admin",
    "Content-Type": "application/json",
}
BASE = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def iso(minutes: int) -> str:
    return (BASE + dt.timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def data(live_api):
    """Two resources with a ``cpu`` metric each, five minutes of points."""
    resources = []
    for i, project in enumerate(("p1", "p2")):
        rid = str(uuid.uuid4())
        r = requests.post(
            f"{live_api}/v1/resource/generic",
            json={
                "id": rid,
                "project_id": project,
                "user_id": "u1",
                "metrics": {"cpu": {"archive_policy_name": "medium"}},
            },
            headers=H,
        )
        assert r.status_code == 201, r.text
        metric_id = r.json()["metrics"]["cpu"]
        points = [
            {"timestamp": iso(m), "value": 10.0 * (i + 1) + m}
            for m in range(5)
        ]
        r = requests.post(
            f"{live_api}/v1/metric/{metric_id}/measures",
            json=points,
            headers=H,
        )
        assert r.status_code == 202, r.text
        resources.append((rid, metric_id, project))
    return resources


def window() -> dict[str, str]:
    # What the datasource sends: start, and the same instant as end and stop.
    return {"start": iso(0), "end": iso(10), "stop": iso(10)}


def minute_points(answer):
    return {(ts, g): v for ts, g, v in answer if g == 60.0}


def test_test_connection_and_suggestions(live_api, data):
    (rid, metric_id, _), _other = data
    index = requests.get(f"{live_api}/v1/resource", headers=H)
    assert index.status_code == 200
    assert index.json()["generic"] == f"{live_api}/v1/resource/generic"
    metrics = requests.get(f"{live_api}/v1/metric", headers=H).json()
    assert metric_id in [m["id"] for m in metrics]
    resources = requests.get(
        f"{live_api}/v1/resource/generic", headers=H
    ).json()
    assert rid in [r["id"] for r in resources]
    one = requests.get(f"{live_api}/v1/resource/generic/{rid}", headers=H)
    assert list(one.json()["metrics"]) == ["cpu"]
    # metricFindQuery "resources(generic, id, {...})".
    found = requests.post(
        f"{live_api}/v1/search/resource/generic",
        json={"=": {"project_id": "p1"}},
        headers=H,
    ).json()
    assert [r["id"] for r in found] == [rid]


def test_metric_and_resource_modes(live_api, data):
    (rid, metric_id, _), _other = data
    by_metric = requests.get(
        f"{live_api}/v1/metric/{metric_id}/measures",
        params={"aggregation": "mean", **window()},
        headers=H,
    )
    assert by_metric.status_code == 200, by_metric.text
    assert minute_points(by_metric.json()) == {
        (iso(m).replace("+00:00", "+00:00"), 60.0): 10.0 + m for m in range(5)
    }
    by_resource = requests.get(
        f"{live_api}/v1/resource/generic/{rid}/metric/cpu/measures",
        params={"aggregation": "mean", **window()},
        headers=H,
    )
    assert by_resource.status_code == 200, by_resource.text
    assert by_resource.json() == by_metric.json()


def test_resource_aggregation_mode(live_api, data):
    r = requests.post(
        f"{live_api}/v1/aggregation/resource/generic/metric/cpu",
        params={"aggregation": "mean", **window()},
        json={"like": {"user_id": "u%"}},
        headers=H,
    )
    assert r.status_code == 200, r.text
    # Mean across the two resources: (10 + m + 20 + m) / 2.
    assert minute_points(r.json()) == {
        (iso(m), 60.0): 15.0 + m for m in range(5)
    }
    # Re-aggregated with another method.
    r = requests.post(
        f"{live_api}/v1/aggregation/resource/generic/metric/cpu",
        params={"aggregation": "mean", "reaggregation": "max", **window()},
        json={},
        headers=H,
    )
    assert minute_points(r.json()) == {
        (iso(m), 60.0): 20.0 + m for m in range(5)
    }
    # One matching resource: its stored points, unaggregated.
    r = requests.post(
        f"{live_api}/v1/aggregation/resource/generic/metric/cpu",
        params={"aggregation": "max", **window()},
        json={"=": {"project_id": "p2"}},
        headers=H,
    )
    assert minute_points(r.json()) == {
        (iso(m), 60.0): 20.0 + m for m in range(5)
    }


def test_resource_aggregation_grouped(live_api, data):
    r = requests.post(
        f"{live_api}/v1/aggregation/resource/generic/metric/cpu",
        params={"aggregation": "mean", "groupby": "project_id", **window()},
        json={},
        headers=H,
    )
    assert r.status_code == 200, r.text
    groups = r.json()
    assert [g["group"] for g in groups] == [
        {"project_id": "p1"},
        {"project_id": "p2"},
    ]
    assert minute_points(groups[0]["measures"]) == {
        (iso(m), 60.0): 10.0 + m for m in range(5)
    }
    assert minute_points(groups[1]["measures"]) == {
        (iso(m), 60.0): 20.0 + m for m in range(5)
    }


def test_legacy_cross_metric_aggregation(live_api, data):
    (_, first, _), (_, second, _) = data
    r = requests.get(
        f"{live_api}/v1/aggregation/metric",
        params={
            "metric": [first, second],
            "aggregation": "mean",
            "reaggregation": "sum",
            **window(),
        },
        headers=H,
    )
    assert r.status_code == 200, r.text
    assert minute_points(r.json()) == {
        (iso(m), 60.0): 30.0 + 2 * m for m in range(5)
    }
    # POST with the ids in the body answers the same.
    r2 = requests.post(
        f"{live_api}/v1/aggregation/metric",
        params={"aggregation": "mean", "reaggregation": "sum", **window()},
        json=[first, second],
        headers=H,
    )
    assert r2.json() == r.json()
    # Resampled to 5 minutes: one bucket, the sum of both means.
    r3 = requests.get(
        f"{live_api}/v1/aggregation/metric",
        params={
            "metric": [first, second],
            "aggregation": "mean",
            "reaggregation": "sum",
            "granularity": "60",
            "resample": "300",
            **window(),
        },
        headers=H,
    )
    assert r3.status_code == 200, r3.text
    assert r3.json() == [[iso(0), 300.0, 12.0 + 22.0]]


def test_bad_input_is_a_gnocchi_400(live_api, data):
    (_, first, _), _other = data
    r = requests.get(
        f"{live_api}/v1/aggregation/metric",
        params={"aggregation": "mean"},
        headers=H,
    )
    assert r.status_code == 400
    assert "metric" in r.text
    r = requests.get(
        f"{live_api}/v1/aggregation/metric",
        params={"metric": first, "aggregation": "nope"},
        headers=H,
    )
    assert r.status_code in (400, 404)
    missing = str(uuid.uuid4())
    r = requests.get(
        f"{live_api}/v1/aggregation/metric",
        params={"metric": [first, missing]},
        headers=H,
    )
    assert r.status_code == 404
    assert missing in r.text
    r = requests.post(
        f"{live_api}/v1/aggregation/resource/generic/metric/cpu",
        json={"bogus-op": {"id": "x"}},
        headers=H,
    )
    assert r.status_code == 400


def test_another_project_reads_nothing_of_p1(live_api, data):
    (_, first, _), _other = data
    other = {**H, "X-Project-Id": "p9", "X-Roles": "member"}
    r = requests.get(
        f"{live_api}/v1/aggregation/metric",
        params={"metric": first},
        headers=other,
    )
    assert r.status_code == 404
