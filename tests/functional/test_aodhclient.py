"""The real aodhclient CLI drives a running alarmer API end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import requests

pytestmark = pytest.mark.slow

AODH = os.path.join(os.path.dirname(sys.executable), "aodh")
METRIC_ID = "5f8d7b8e-2f44-4d0a-9bd6-2f2f4b7fb001"


@pytest.fixture
def aodh(live_api):
    if not os.path.exists(AODH) and shutil.which("aodh") is None:
        pytest.skip("aodhclient is not installed (pip install '.[test]')")
    exe = AODH if os.path.exists(AODH) else shutil.which("aodh")

    def run(*args: str, project: str = "p1", roles: str = "admin") -> str:
        command = [
            exe,
            "--os-auth-type",
            "aodh-noauth",
            "--user-id",
            "u1",
            "--project-id",
            project,
            "--roles",
            roles,
            "--aodh-endpoint",
            live_api,
            *args,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done.stdout

    def run_json(*args: str, **kwargs: str):
        return json.loads(run(*args, "-f", "json", **kwargs))

    run.json = run_json  # type: ignore[attr-defined]
    return run


def test_aodhclient_end_to_end(aodh, live_api):
    j = aodh.json
    created = j(
        "alarm",
        "create",
        "--type",
        "gnocchi_resources_threshold",
        "--name",
        "cpu-high",
        "--metric",
        "cpu",
        "--resource-id",
        "r1",
        "--resource-type",
        "instance",
        "--aggregation-method",
        "mean",
        "--threshold",
        "80",
        "--comparison-operator",
        "gt",
        "--granularity",
        "300",
        "--evaluation-periods",
        "2",
        "--severity",
        "critical",
        "--alarm-action",
        "http://example.org/hook",
        "--time-constraint",
        "name=office;start=0 9 * * 1-5;duration=32400;timezone=Europe/Paris",
    )
    assert created["name"] == "cpu-high"
    assert created["severity"] == "critical"
    assert created["granularity"] == 300
    assert created["comparison_operator"] == "gt"
    cpu_id = created["alarm_id"]

    by_metrics = j(
        "alarm",
        "create",
        "--type",
        "gnocchi_aggregation_by_metrics_threshold",
        "--name",
        "metrics-max",
        "--metric",
        METRIC_ID,
        "--aggregation-method",
        "max",
        "--threshold",
        "5",
    )
    assert by_metrics["metrics"] == [METRIC_ID]
    by_resources = j(
        "alarm",
        "create",
        "--type",
        "gnocchi_aggregation_by_resources_threshold",
        "--name",
        "group-rate",
        "--metric",
        "cpu",
        "--resource-type",
        "instance",
        "--query",
        '{"=": {"server_group": "g1"}}',
        "--aggregation-method",
        "rate:mean",
        "--threshold",
        "10",
        "--severity",
        "moderate",
    )
    assert by_resources["query"] == '{"=": {"server_group": "g1"}}'
    composite_rule = {
        "or": [
            {
                "type": "gnocchi_resources_threshold",
                "metric": "cpu",
                "resource_id": "r1",
                "resource_type": "instance",
                "aggregation_method": "last",
                "threshold": 0.8,
            },
            {
                "type": "gnocchi_aggregation_by_metrics_threshold",
                "metrics": [METRIC_ID],
                "aggregation_method": "mean",
                "threshold": 1,
            },
        ]
    }
    composite = j(
        "alarm",
        "create",
        "--type",
        "composite",
        "--name",
        "combined",
        "--composite-rule",
        json.dumps(composite_rule),
    )
    assert composite["type"] == "composite"

    # List with a filter and a sort.
    listed = j("alarm", "list", "--filter", "severity=critical")
    assert [a["name"] for a in listed] == ["cpu-high"]
    ordered = j("alarm", "list", "--sort", "name:asc")
    assert [a["name"] for a in ordered] == [
        "combined",
        "cpu-high",
        "group-rate",
        "metrics-max",
    ]
    by_query = j("alarm", "list", "--query", "severity=moderate")
    assert [a["name"] for a in by_query] == ["group-rate"]

    # Show by name (complex query lookup) and by id.
    shown = j("alarm", "show", "--name", "cpu-high")
    assert shown["alarm_id"] == cpu_id
    assert j("alarm", "show", cpu_id)["name"] == "cpu-high"

    # Update: aodhclient GETs, merges and PUTs the whole document back.
    j("alarm", "update", "--name", "cpu-high", "--threshold", "95")
    updated = j("alarm", "show", cpu_id)
    assert updated["threshold"] == 95.0
    assert updated["severity"] == "critical"
    assert updated["evaluate_timestamp"] == created["evaluate_timestamp"]

    # State get and set.
    assert j("alarm", "state", "get", cpu_id)["state"] == "insufficient data"
    assert (
        j("alarm", "state", "set", "--state", "alarm", cpu_id)["state"]
        == "alarm"
    )
    assert j("alarm", "state", "get", cpu_id)["state"] == "alarm"

    # History show and search.
    history = j("alarm-history", "show", cpu_id)
    assert [h["type"] for h in history] == [
        "state transition",
        "rule change",
        "creation",
    ]
    found = j("alarm-history", "search", "--query", f"alarm_id={cpu_id}")
    assert len(found) == 3
    assert j("alarm-history", "search")

    capabilities = j("capabilities", "list")
    assert "alarm_storage" in capabilities

    # Quotas over plain HTTP (the CLI has no quota verb).
    admin = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "admin"}
    response = requests.post(
        f"{live_api}/v2/quotas",
        json={
            "project_id": "p1",
            "quotas": [{"resource": "alarms", "limit": 4}],
        },
        headers=admin,
        timeout=10,
    )
    assert response.status_code == 201
    response = requests.post(
        f"{live_api}/v2/alarms",
        json={
            "name": "one-too-many",
            "type": "gnocchi_aggregation_by_metrics_threshold",
            "gnocchi_aggregation_by_metrics_threshold_rule": {
                "metrics": [METRIC_ID],
                "aggregation_method": "mean",
                "threshold": 1,
            },
        },
        headers=admin,
        timeout=10,
    )
    assert response.status_code == 403
    assert "quota" in response.json()["error_message"]["faultstring"]

    # Delete, by id and by name.
    aodh("alarm", "delete", cpu_id)
    aodh("alarm", "delete", "--name", "combined")
    remaining = j("alarm", "list")
    assert sorted(a["name"] for a in remaining) == [
        "group-rate",
        "metrics-max",
    ]
    # History outlives the alarm.
    history = j("alarm-history", "show", cpu_id)
    assert history[0]["type"] == "deletion"


def test_aodhclient_reports_errors(aodh, live_api):
    command = [
        AODH,
        "--os-auth-type",
        "aodh-noauth",
        "--user-id",
        "u1",
        "--project-id",
        "p1",
        "--roles",
        "member",
        "--aodh-endpoint",
        live_api,
        "alarm",
        "create",
        "--type",
        "gnocchi_aggregation_by_metrics_threshold",
        "--name",
        "bad",
        "--metric",
        METRIC_ID,
        "--aggregation-method",
        "bogus",
        "--threshold",
        "1",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    assert "aggregation_method" in done.stderr
    assert "bogus" in done.stderr
    assert json.loads(aodh("alarm", "list", "-f", "json")) == []


def test_aodhclient_keeps_the_lifecycle_options(aodh, live_api):
    headers = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "admin"}
    options = {
        "repeat_interval": 300,
        "missing_data": "ok",
        "keep_firing_for": 60,
        "pending_for": 30,
        "evaluation_interval": 20,
    }
    rule = {
        "metrics": [METRIC_ID],
        "aggregation_method": "mean",
        "threshold": 5.0,
        "comparison_operator": "gt",
        "evaluation_periods": 3,
        "datapoints_to_alarm": 2,
        "recovery_threshold": 4.0,
    }
    r = requests.post(
        f"{live_api}/v2/alarms",
        json={
            "name": "kept",
            "type": "gnocchi_aggregation_by_metrics_threshold",
            "gnocchi_aggregation_by_metrics_threshold_rule": rule,
            **options,
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    alarm_id = r.json()["alarm_id"]
    shown = aodh.json("alarm", "show", alarm_id)
    for key, value in options.items():
        assert str(shown[key]) == str(value), key
    aodh("alarm", "update", alarm_id, "--name", "renamed", "--threshold", "6")
    got = requests.get(f"{live_api}/v2/alarms/{alarm_id}", headers=headers)
    doc = got.json()
    assert doc["name"] == "renamed"
    assert {k: doc[k] for k in options} == options
    stored = doc["gnocchi_aggregation_by_metrics_threshold_rule"]
    assert stored["threshold"] == 6.0
    assert stored["datapoints_to_alarm"] == 2
    assert stored["recovery_threshold"] == 4.0
