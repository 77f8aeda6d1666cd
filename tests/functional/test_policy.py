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
