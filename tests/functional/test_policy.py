"""oslo.policy: the default rules, their sample, and overrides.

The behaviour of the default policy is checked route by route in
``test_roles.py`` (every route, every role, through these rules); here,
that every route names its rule, that ``etc/policy.yaml.sample`` is
what the rules generate, and that ``policy.yaml`` overrides them in
each dialect.
"""

from __future__ import annotations

import pathlib

import pytest
from oslo_policy import opts as policy_opts

from api import policy
from api.app import create_app
from tests import envelopes
from tests.functional.test_roles import LEAST_ROLE, PUBLIC
from tests.functional.v2_helpers import alarm_body

ROOT = pathlib.Path(__file__).resolve().parents[2]
ADMIN = {"X-User-Id": "admin", "X-Project-Id": "p-adm", "X-Roles": "admin"}
MEMBER = {"X-User-Id": "alice", "X-Project-Id": "p-a", "X-Roles": "member"}
READER = {"X-User-Id": "rita", "X-Project-Id": "p-a", "X-Roles": "reader"}
SERVICE = {"X-User-Id": "ceilo", "X-Project-Id": "svc", "X-Roles": "service"}


def test_every_route_with_an_identity_names_a_rule():
    guarded = {e for (e, _), role in LEAST_ROLE.items() if role != PUBLIC}
    assert set(policy.ROUTES) == guarded
    names = {r.name for r in policy.list_rules()}
    assert set(policy.ROUTES.values()) <= names
    assert set(policy.BY_ROLE.values()) <= names


def test_the_sample_is_what_the_rules_generate():
    sample = (ROOT / "etc" / "policy.yaml.sample").read_text()
    assert sample == policy.sample_text()
    assert '#"telemetry:create_alarm": "rule:project_member or ' in sample


@pytest.mark.parametrize(
    ("roles", "implied"),
    [
        ({"admin"}, ["admin", "member", "reader"]),
        ({"member"}, ["member", "reader"]),
        ({"reader"}, ["reader"]),
        ({"service"}, ["service"]),
        (set(), []),
    ],
)
def test_roles_imply_as_keystone_defaults(roles, implied):
    assert policy.expand_roles(frozenset(roles)) == implied


def test_gnocchi_grants_the_service_role_its_writes(client):
    created = client.post(
        "/v1/resource_type",
        json={"name": "svc_type", "attributes": {}},
        headers=SERVICE,
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    made = client.post(
        "/v1/resource/svc_type", json={"id": "r1"}, headers=SERVICE
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    refused = client.delete("/v1/resource_type/svc_type", headers=SERVICE)
    assert envelopes.message(refused, 403)


def _app_with_policy(rt, tmp_path, text):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    policy_opts.set_defaults(rt.conf)
    rt.conf.set_override("policy_file", str(path), group="oslo_policy")
    return create_app(rt).test_client()


def test_policy_yaml_overrides_the_defaults(sqlite_rt, tmp_path):
    client = _app_with_policy(
        sqlite_rt,
        tmp_path,
        '"telemetry:create_alarm": "role:admin"\n'
        '"list archive policy": "!"\n'
        '"get archive policy": ""\n',
    )
    alarm = alarm_body()
    refused = client.post("/v2/alarms", json=alarm, headers=MEMBER)
    assert envelopes.message(refused, 403) == "RBAC Authorization Failed"
    listed = client.get("/v2/alarms", headers=ADMIN)
    assert listed.get_json() == []
    created = client.post("/v2/alarms", json=alarm, headers=ADMIN)
    assert created.status_code == 201, created.get_data(as_text=True)

    nobody = client.get("/v1/archive_policy", headers=ADMIN)
    assert envelopes.message(nobody, 403)
    assert nobody.get_json()["title"] == "Forbidden"
    anyone = client.get(
        "/v1/archive_policy/low",
        headers={"X-User-Id": "u", "X-Project-Id": "p", "X-Roles": "x"},
    )
    assert anyone.status_code == 200, anyone.get_data(as_text=True)
    # Rules the file does not name keep their defaults.
    assert client.get("/v2/alarms", headers=READER).status_code == 200
    quota = client.post(
        "/v2/quotas",
        json={"project_id": "p-a", "quotas": [
            {"resource": "alarms", "limit": 3}]},
        headers=MEMBER,
    )  # fmt: skip
    assert envelopes.message(quota, 403)


def test_listing_every_project_is_its_own_rule(sqlite_rt, tmp_path):
    client = _app_with_policy(
        sqlite_rt,
        tmp_path,
        '"telemetry:get_alarms:all_projects": "role:reader"\n',
    )
    other = {"X-User-Id": "bob", "X-Project-Id": "p-b", "X-Roles": "member"}
    for headers in (MEMBER, other):
        created = client.post("/v2/alarms", json=alarm_body(), headers=headers)
        assert created.status_code == 201, created.get_data(as_text=True)
    every = "/v2/alarms?q.field=all_projects&q.op=eq&q.value=true"
    listed = client.get(every, headers=READER)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert sorted(a["project_id"] for a in listed.get_json()) == [
        "p-a",
        "p-b",
    ]
    own = client.get("/v2/alarms", headers=READER).get_json()
    assert [a["project_id"] for a in own] == ["p-a"]
    refused = client.get(
        every, headers={"X-User-Id": "x", "X-Project-Id": "p-a",
                        "X-Roles": "observer"}
    )  # fmt: skip
    assert refused.status_code == 403


# ------------------------------------------------ Gnocchi's owner rules

ALICE2 = {"X-User-Id": "alan", "X-Project-Id": "p-a", "X-Roles": "member"}
BOB = {"X-User-Id": "bob", "X-Project-Id": "p-b", "X-Roles": "member"}
T0 = "2024-03-01T12:00:00+00:00"


@pytest.fixture
def v1(sqlite_rt):
    return create_app(sqlite_rt).test_client()


def _measures(client, metric_id, headers):
    return client.get(
        f"/v1/metric/{metric_id}/measures?granularity=300", headers=headers
    )


def test_owner_rules_in_the_sample():
    sample = (ROOT / "etc" / "policy.yaml.sample").read_text()
    for line in (
        '#"creator": "user:%(creator)s or '
        'project_id:%(created_by_project_id)s"',
        '#"admin_or_creator": "role:admin or user:%(creator)s or '
        'project_id:%(created_by_project_id)s"',
        '#"resource_owner": "project_id:%(project_id)s"',
        '#"metric_owner": "project_id:%(resource.project_id)s"',
    ):
        assert line in sample


def test_a_metric_belongs_to_its_creators_project(v1):
    """The creator reads, feeds and deletes its metric; another project
    does none of it (404: out of sight) and changes nothing."""
    made = v1.post("/v1/metric", json={"name": "cpu"}, headers=MEMBER)
    assert made.status_code == 201, made.get_data(as_text=True)
    mid = made.get_json()["id"]
    point = [{"timestamp": T0, "value": 4.0}]
    for method, path, body in (
        ("get", f"/v1/metric/{mid}", None),
        ("get", f"/v1/metric/{mid}/measures", None),
        ("post", f"/v1/metric/{mid}/measures", point),
        ("delete", f"/v1/metric/{mid}", None),
    ):
        refused = getattr(v1, method)(path, json=body, headers=BOB)
        assert envelopes.message(refused, 404) == (
            f"Metric {mid} does not exist"
        )
    assert _measures(v1, mid, MEMBER).get_json() == []
    assert v1.get("/v1/metric", headers=BOB).get_json() == []
    # Another user of the creating project: the project is the creator.
    pushed = v1.post(f"/v1/metric/{mid}/measures", json=point, headers=ALICE2)
    assert pushed.status_code == 202, pushed.get_data(as_text=True)
    assert _measures(v1, mid, MEMBER).get_json() == [[
        "2024-03-01T12:00:00+00:00", 300.0, 4.0]]  # fmt: skip
    assert v1.get(f"/v1/metric/{mid}", headers=READER).status_code == 200
    gone = v1.delete(f"/v1/metric/{mid}", headers=MEMBER)
    assert gone.status_code == 204
    assert v1.get(f"/v1/metric/{mid}", headers=MEMBER).status_code == 404


def test_a_metric_of_a_projects_resource_made_by_a_service(v1):
    """Gnocchi's ``metric_owner``: the project a resource is for reads
    the metrics a service created on it, but neither feeds nor deletes
    them (``post measures`` and ``delete metric`` are the creator's)."""
    made = v1.post(
        "/v1/resource/generic",
        json={"id": "vm1", "project_id": "p-a", "user_id": "alice",
              "metrics": {"cpu": {"archive_policy_name": "low"}}},
        headers=SERVICE,
    )  # fmt: skip
    assert made.status_code == 201, made.get_data(as_text=True)
    rid, mid = made.get_json()["id"], made.get_json()["metrics"]["cpu"]
    point = [{"timestamp": T0, "value": 7.0}]
    fed = v1.post(f"/v1/metric/{mid}/measures", json=point, headers=SERVICE)
    assert fed.status_code == 202, fed.get_data(as_text=True)

    shown = v1.get(f"/v1/metric/{mid}", headers=MEMBER)
    assert shown.status_code == 200, shown.get_data(as_text=True)
    assert shown.get_json()["created_by_project_id"] == "svc"
    assert _measures(v1, mid, READER).get_json() == [[
        "2024-03-01T12:00:00+00:00", 300.0, 7.0]]  # fmt: skip
    refused = v1.post(
        f"/v1/metric/{mid}/measures",
        json=[{"timestamp": T0, "value": 99.0}],
        headers=MEMBER,
    )
    assert envelopes.message(refused, 403)
    assert envelopes.message(
        v1.delete(f"/v1/metric/{mid}", headers=MEMBER), 403
    )
    assert _measures(v1, mid, MEMBER).get_json()[0][2] == 7.0
    # The resource: read by its project, changed only by its creator.
    assert v1.get(f"/v1/resource/generic/{rid}", headers=MEMBER).status_code
    patched = v1.patch(
        f"/v1/resource/generic/{rid}", json={"user_id": "x"}, headers=MEMBER
    )
    assert envelopes.message(patched, 403)
    deleted = v1.delete(f"/v1/resource/generic/{rid}", headers=MEMBER)
    assert envelopes.message(deleted, 403)
    shown = v1.get(f"/v1/resource/generic/{rid}", headers=SERVICE)
    assert shown.get_json()["user_id"] == "alice"
    # Another project may use neither (Gnocchi's 403 for the resource).
    assert v1.get(f"/v1/metric/{mid}", headers=BOB).status_code == 404
    foreign = v1.get(f"/v1/resource/generic/{rid}", headers=BOB)
    assert envelopes.message(foreign, 403)
    # The creator may.
    ok = v1.patch(
        f"/v1/resource/generic/{rid}", json={"user_id": "x"}, headers=SERVICE
    )
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert v1.delete(f"/v1/metric/{mid}", headers=SERVICE).status_code == 204


def test_owner_rules_are_overridable(sqlite_rt, tmp_path):
    """With ``user:%(creator)s`` alone, only the creating user (not its
    project) acts on a metric: the target is the metric's own."""
    client = _app_with_policy(
        sqlite_rt,
        tmp_path,
        '"delete metric": "user:%(creator)s"\n'
        '"get metric": "role:admin or user:%(creator)s"\n',
    )
    made = client.post("/v1/metric", json={"name": "cpu"}, headers=MEMBER)
    mid = made.get_json()["id"]
    assert client.get(f"/v1/metric/{mid}", headers=ALICE2).status_code == 404
    assert client.delete(f"/v1/metric/{mid}", headers=ALICE2).status_code == (
        404
    )
    assert client.get(f"/v1/metric/{mid}", headers=MEMBER).status_code == 200
    assert client.get(f"/v1/metric/{mid}", headers=ADMIN).status_code == 200
    # The admin reads it but is not its creator: 403.
    refused = client.delete(f"/v1/metric/{mid}", headers=ADMIN)
    assert envelopes.message(refused, 403)
    assert client.delete(f"/v1/metric/{mid}", headers=MEMBER).status_code == (
        204
    )
