"""The real gnocchiclient (library and ``gnocchi`` CLI) against alarmer."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

gnocchiclient = pytest.importorskip("gnocchiclient")

from gnocchiclient import auth as gauth  # noqa: E402
from gnocchiclient import client as gclient  # noqa: E402
from keystoneauth1 import session as ks_session  # noqa: E402

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


def make_client(url, user="alice", project="p-a", roles="member"):
    plugin = gauth.GnocchiNoAuthPlugin(user, project, roles, url)
    return gclient.Client("1", session=ks_session.Session(auth=plugin))


def test_python_client_round_trip(live_api):
    gn = make_client(live_api)
    metric = gn.metric.create(name="cpu.util", unit="%")
    assert metric["archive_policy"]["name"] == "low"
    assert metric["unit"] == "%"
    medium = gn.metric.create(
        name="mem", archive_policy_name="medium", unit="B"
    )
    measures = [
        {
            "timestamp": (T0 + dt.timedelta(seconds=30 * i)).isoformat(),
            "value": float(i),
        }
        for i in range(20)
    ]
    gn.metric.add_measures(medium["id"], measures)
    got = gn.metric.get_measures(medium["id"], granularity=60)
    assert [(ts, g) for ts, g, _ in got] == [
        (T0 + dt.timedelta(minutes=m), 60.0) for m in range(10)
    ]
    assert [v for _, _, v in got] == [2 * m + 0.5 for m in range(10)]
    got = gn.metric.get_measures(
        medium["id"],
        aggregation="max",
        start=T0 + dt.timedelta(minutes=3),
        stop=T0 + dt.timedelta(minutes=5),
        granularity=60,
    )
    assert [v for _, _, v in got] == [7.0, 9.0]
    hourly = gn.metric.get_measures(medium["id"], granularity=3600)
    assert hourly == [(T0, 3600.0, 9.5)]

    mem2 = gn.metric.create(name="mem2", archive_policy_name="medium")
    gn.metric.batch_metrics_measures(
        {
            metric["id"]: [{"timestamp": T0.isoformat(), "value": 4}],
            mem2["id"]: [{"timestamp": T0.isoformat(), "value": 4}],
        }
    )
    assert gn.metric.get_measures(metric["id"]) == [(T0, 300.0, 4.0)]

    agg = gn.aggregates.fetch(
        [
            "aggregate",
            "mean",
            ["metric", medium["id"], "mean"],
            ["metric", mem2["id"], "mean"],
        ],
        granularity=60,
        start=T0,
        stop=T0 + dt.timedelta(hours=1),
        needed_overlap=0,
    )
    points = agg["measures"]["aggregated"]
    assert tuple(points[0]) == (T0, 60.0, 2.25)
    assert [p[2] for p in points[1:]] == [2 * m + 0.5 for m in range(1, 10)]

    ids = {m["id"] for m in gn.metric.list()}
    assert ids == {metric["id"], medium["id"], mem2["id"]}
    caps = gn.capabilities.list()
    assert "rate:mean" in caps["aggregation_methods"]
    assert {p["name"] for p in gn.archive_policy.list()} >= {"low", "bool"}

    gn.metric.delete(metric["id"])
    assert {m["id"] for m in gn.metric.list()} == {medium["id"], mem2["id"]}
    other = make_client(live_api, user="bob", project="p-b")
    with pytest.raises(Exception) as excinfo:
        other.metric.get(medium["id"])
    assert getattr(excinfo.value, "code", None) == 404


def test_gnocchi_cli_round_trip(live_api, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "gnocchi")
    base = [
        cli,
        "--os-auth-type",
        "gnocchi-noauth",
        "--user-id",
        "alice",
        "--project-id",
        "p-a",
        "--roles",
        "member",
        "--endpoint",
        live_api,
    ]
    env = {**os.environ, "HOME": str(tmp_path)}

    def run(*args):
        out = subprocess.run(
            [*base, *args, "-f", "json"]
            if args[-1] != "--"
            else [*base, *args[:-1]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    created = run("metric", "create", "-a", "medium", "--unit", "B", "disk")
    assert created["archive_policy/name"] == "medium"
    mid = created["id"]
    run(
        "measures",
        "add",
        "-m",
        "2024-03-01T12:00:10+00:00@3",
        "-m",
        "2024-03-01T12:00:40+00:00@5",
        "-m",
        "2024-03-01T12:01:10+00:00@11",
        mid,
        "--",
    )
    rows = run("measures", "show", "--granularity", "60", "--utc", mid)
    assert [(r["granularity"], r["value"]) for r in rows] == [
        (60.0, 4.0),
        (60.0, 11.0),
    ]
    assert rows[0]["timestamp"].startswith("2024-03-01T12:00:00")
    shown = run("metric", "show", mid)
    assert shown["unit"] == "B"
    listed = run("metric", "list")
    assert [m["id"] for m in listed] == [mid]
    denied = subprocess.run(
        [*base, "archive-policy", "delete", "low"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert denied.returncode != 0
    assert "403" in denied.stderr or "RBAC" in denied.stderr


def test_gnocchi_cli_archive_policies(live_api, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "gnocchi")
    base = [
        cli,
        "--os-auth-type",
        "gnocchi-noauth",
        "--user-id",
        "root",
        "--project-id",
        "p-admin",
        "--roles",
        "admin",
        "--endpoint",
        live_api,
    ]
    env = {**os.environ, "HOME": str(tmp_path)}

    def run(*args):
        out = subprocess.run(
            [*base, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    created = run(
        "archive-policy",
        "create",
        "five",
        "-d",
        "granularity:1m,points:60",
        "-d",
        "granularity:1h,timespan:1d",
        "-m",
        "mean",
        "-m",
        "max",
        "-b",
        "2",
        "-f",
        "json",
    )
    assert created["back_window"] == 2
    assert created["definition"] == [
        {"granularity": 60, "points": 60, "timespan": 3600},
        {"granularity": 3600, "points": 24, "timespan": 86400},
    ]
    assert created["aggregation_methods"] == ["max", "mean"]
    updated = run(
        "archive-policy",
        "update",
        "five",
        "-d",
        "granularity:1m,points:120",
        "-d",
        "granularity:1h,points:48",
        "-f",
        "json",
    )
    assert [d["points"] for d in updated["definition"]] == [120, 48]
    shown = run("archive-policy", "show", "five", "-f", "json")
    assert shown["definition"] == updated["definition"]
    run(
        "archive-policy-rule",
        "create",
        "r5",
        "-a",
        "five",
        "-m",
        "five.*",
        "-f",
        "json",
    )
    metric = run("metric", "create", "five.x", "-f", "json")
    assert metric["archive_policy/name"] == "five"
    run("metric", "delete", metric["id"])
    run("archive-policy-rule", "delete", "r5")
    run("archive-policy", "delete", "five")
    names = {p["name"] for p in run("archive-policy", "list", "-f", "json")}
    assert names == {"low", "medium", "high", "bool"}


def _gnocchi_error(response, status):
    """The description of a Gnocchi error envelope, checked whole."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "title", "description"}, body
    assert body["code"] == status
    return body["description"]


def test_named_metric_of_a_resource_from_the_client(live_api):
    """``metric.create(name=..., resource_id=...)`` and ``POST /v1/metric``
    with a resource, as Gnocchi 4.7.1 answers them."""
    import requests
    from gnocchiclient import exceptions as gexc

    gn = make_client(live_api)
    vm = gn.resource.create("generic", {"id": "vm-named"})
    # The client posts {"cpu": {"name": "cpu", ...}} to the resource.
    cpu = gn.metric.create(
        name="cpu", resource_id="vm-named", archive_policy_name="medium"
    )
    assert (cpu["name"], cpu["resource_id"]) == ("cpu", vm["id"])
    assert cpu["archive_policy"]["name"] == "medium"
    gn.metric.add_measures(
        "cpu", [{"timestamp": T0.isoformat(), "value": 3.5}], "vm-named"
    )
    got = gn.metric.get_measures("cpu", resource_id="vm-named", granularity=60)
    assert got == [(T0, 60.0, 3.5)]
    assert gn.resource.get("generic", "vm-named")["metrics"] == {
        "cpu": cpu["id"]
    }
    with pytest.raises(gexc.NamedMetricAlreadyExists):
        gn.metric.create(name="cpu", resource_id="vm-named")
    with pytest.raises(gexc.ResourceNotFound):
        gn.metric.create(name="cpu", resource_id="no-such-vm")

    # POST /v1/metric with a resource: the same attachment.
    headers = {"X-User-Id": "alice", "X-Project-Id": "p-a",
               "X-Roles": "member"}  # fmt: skip
    url = f"{live_api}/v1/metric"
    made = requests.post(
        url, json={"name": "mem", "resource_id": "vm-named"},
        headers=headers, timeout=30,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["resource_id"] == vm["id"]
    assert (
        gn.metric.get("mem", resource_id="vm-named")["id"]
        == (made.json()["id"])
    )
    # Taken name: Gnocchi's 400 with its structured description.
    again = requests.post(
        url, json={"name": "mem", "resource_id": vm["id"]},
        headers=headers, timeout=30,
    )  # fmt: skip
    assert _gnocchi_error(again, 400) == {
        "cause": "Named metric already exists",
        "detail": "mem",
    }
    # Unknown resource: 404 naming it, nothing stored.
    before = {m["id"] for m in gn.metric.list()}
    missing = requests.post(
        url, json={"name": "disk", "resource_id": "no-such-vm"},
        headers=headers, timeout=30,
    )  # fmt: skip
    assert "does not exist" in _gnocchi_error(missing, 404)
    # A resource without a name for the metric: Gnocchi's 400.
    nameless = requests.post(
        url, json={"resource_id": vm["id"]}, headers=headers, timeout=30
    )
    assert _gnocchi_error(nameless, 400)["detail"] == "name"
    # Another project's resource is out of sight.
    bob = {"X-User-Id": "bob", "X-Project-Id": "p-b", "X-Roles": "member"}
    foreign = requests.post(
        url, json={"name": "x", "resource_id": vm["id"]},
        headers=bob, timeout=30,
    )  # fmt: skip
    assert foreign.status_code in (403, 404), foreign.text
    assert {m["id"] for m in gn.metric.list()} == before
    assert sorted(gn.resource.get("generic", "vm-named")["metrics"]) == [
        "cpu",
        "mem",
    ]


def test_the_cli_creates_a_metric_on_a_resource(live_api, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "gnocchi")
    base = [cli, "--os-auth-type", "gnocchi-noauth", "--user-id", "alice",
            "--project-id", "p-a", "--roles", "member",
            "--endpoint", live_api]  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path)}
    gn = make_client(live_api)
    vm = gn.resource.create("generic", {"id": "vm-cli"})
    out = subprocess.run(
        [*base, "metric", "create", "--resource-id", "vm-cli",
         "-a", "low", "disk", "-f", "json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert (created["name"], created["resource_id"]) == ("disk", vm["id"])
    assert gn.resource.get("generic", vm["id"])["metrics"] == {
        "disk": created["id"]
    }
    again = subprocess.run(
        [*base, "metric", "create", "--resource-id", "vm-cli", "disk"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert again.returncode != 0
    assert "already exists" in again.stderr


@pytest.mark.parametrize(
    ("body", "field", "path"),
    [
        ({"name": 5}, "name", ["name"]),
        ({"nome": "cpu"}, "nome", ["nome"]),
        ({"unit": "u" * 40}, "unit", ["unit"]),
        ({"archive_policy_name": ""}, "archive_policy_name",
         ["archive_policy_name"]),
    ],
)  # fmt: skip
def test_invalid_input_is_described_as_gnocchi_does(
    live_api, body, field, path
):
    """Schema errors: ``{"cause": "Invalid input", "reason", "detail"}``,
    the client's ``BadRequest`` carrying it, nothing stored."""
    import requests
    from gnocchiclient import exceptions as gexc

    gn = make_client(live_api)
    headers = {"X-User-Id": "alice", "X-Project-Id": "p-a",
               "X-Roles": "member"}  # fmt: skip
    refused = requests.post(
        f"{live_api}/v1/metric", json=body, headers=headers, timeout=30
    )
    description = _gnocchi_error(refused, 400)
    assert set(description) == {"cause", "reason", "detail"}
    assert description["cause"] == "Invalid input"
    assert description["detail"] == path
    assert field in description["reason"]
    with pytest.raises(gexc.BadRequest) as info:
        gn.metric.create(body)
    assert info.value.code == 400
    assert info.value.message == description
    assert gn.metric.list() == []


def test_invalid_input_in_a_nested_body(live_api):
    """The path reaches into lists: an archive policy rule's patch and
    an aggregates body."""
    import requests

    admin = {"X-User-Id": "root", "X-Project-Id": "p-admin",
             "X-Roles": "admin"}  # fmt: skip
    refused = requests.post(
        f"{live_api}/v1/aggregates",
        json={"operations": "(metric x mean)", "search": 5},
        headers=admin, timeout=30,
    )  # fmt: skip
    description = _gnocchi_error(refused, 400)
    assert description["cause"] == "Invalid input"
    assert description["detail"] and description["detail"][0] in (
        "search", "operations",
    )  # fmt: skip
    assert description["detail"][0] in description["reason"]
