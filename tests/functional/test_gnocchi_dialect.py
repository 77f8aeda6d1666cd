"""The v1 error dialect, ``build`` and resource type evolution, as
gnocchiclient and Ceilometer read them."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

gnocchiclient = pytest.importorskip("gnocchiclient")

from gnocchiclient import exceptions as gexc  # noqa: E402

from alarmer import runtime  # noqa: E402
from alarmer.metrics.index import schema  # noqa: E402
from tests import envelopes  # noqa: E402
from tests.conftest import _empty_database  # noqa: E402
from tests.functional.test_gnocchiclient import make_client  # noqa: E402

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "adm", "X-Roles": "admin"}
ALICE = {"X-User-Id": "alice", "X-Project-Id": "p-a", "X-Roles": "member"}
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_gnocchiclient_raises_its_typed_exceptions(live_api):
    admin = make_client(live_api, "admin", "adm", "admin")
    alice = make_client(live_api)
    policy = {"name": "p1", "definition": [{"granularity": 60, "points": 5}]}
    admin.archive_policy.create(policy)
    with pytest.raises(gexc.ArchivePolicyAlreadyExists):
        admin.archive_policy.create(policy)
    with pytest.raises(gexc.ArchivePolicyNotFound):
        admin.archive_policy.get("nope")
    rule = {
        "name": "r1",
        "metric_pattern": "r1.*",
        "archive_policy_name": "p1",
    }
    admin.archive_policy_rule.create(rule)
    # gnocchiclient's patterns try "Archive policy .* already exists"
    # first: against Gnocchi too, this one comes out as a policy conflict.
    with pytest.raises(gexc.ArchivePolicyAlreadyExists) as conflict:
        admin.archive_policy_rule.create(rule)
    assert conflict.value.message == "Archive policy rule r1 already exists"
    with pytest.raises(gexc.ArchivePolicyRuleNotFound):
        admin.archive_policy_rule.get("nope")
    with pytest.raises(gexc.MetricNotFound):
        alice.metric.get("0f0e0d0c-0b0a-4909-8807-060504030201")
    rtype = {"name": "box", "attributes": {"host": {"type": "string"}}}
    admin.resource_type.create(rtype)
    with pytest.raises(gexc.ResourceTypeAlreadyExists):
        admin.resource_type.create(rtype)
    with pytest.raises(gexc.ResourceTypeNotFound):
        admin.resource_type.get("nope")
    with pytest.raises(gexc.ResourceTypeNotFound):
        alice.resource.create("nope", {"id": "x"})
    alice.resource.create(
        "box", {"id": "b1", "host": "h", "metrics": {"cpu": {}}}
    )
    with pytest.raises(gexc.ResourceAlreadyExists):
        alice.resource.create("box", {"id": "b1", "host": "h"})
    with pytest.raises(gexc.ResourceNotFound):
        alice.resource.get("box", "b2")
    with pytest.raises(gexc.NamedMetricAlreadyExists):
        alice.resource.update("box", "b1", {"metrics": {"cpu": {}}})
    with pytest.raises(gexc.Forbidden) as info:
        alice.archive_policy.delete("p1")
    assert info.value.code == 403


def test_build_is_a_gnocchi_release_ceilometer_accepts(live_api):
    from packaging import version

    build = make_client(live_api).build.get()
    assert version.parse(build) >= version.parse("4.2.0")


def test_unknown_resources_are_described_for_ceilometer(live_api):
    alice = make_client(live_api)
    alice.resource.create("generic", {"id": "known", "metrics": {}})
    measures = {
        name: {"cpu": [{"timestamp": T0.isoformat(), "value": 1.0}]}
        for name in ("known", "gone-1")
    }
    with pytest.raises(gexc.BadRequest) as info:
        alice.metric.batch_resources_metrics_measures(
            measures, create_metrics=True
        )
    description = info.value.message
    assert isinstance(description, dict), description
    assert description["cause"] == "Unknown resources"
    [unknown] = description["detail"]
    assert unknown["original_resource_id"] == "gone-1"
    assert (
        unknown["resource_id"]
        == alice.resource.create("generic", {"id": "gone-1"})["id"]
    )
    # Nothing was stored for the resource that exists.
    assert alice.resource.get("generic", "known")["metrics"] == {}


def test_errors_under_v1_speak_gnocchi_and_under_v2_aodh(client):
    missing = client.get("/v1/metric/nope", headers=ALICE)
    assert envelopes.gnocchi(missing.get_json(), 404) == (
        "Metric nope does not exist"
    )
    unrouted = client.get("/v1/nothing-here", headers=ALICE)
    assert unrouted.get_json()["code"] == 404
    assert unrouted.get_json()["title"] == "Not Found"
    bad_json = client.post(
        "/v1/archive_policy",
        data=b"{",
        headers={**ALICE, "Content-Type": "application/json"},
    )
    assert envelopes.gnocchi(bad_json.get_json(), bad_json.status_code)
    alarm = client.get("/v2/alarms/nope", headers=ALICE)
    assert "not found" in envelopes.aodh(alarm.get_json(), 404)


# --------------------------------------------- resource type evolution --


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def any_client(request, make_conf, tmp_path):
    """A test client on SQLite, the real PostgreSQL and MariaDB."""
    from api.app import create_app

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'evolve.sqlite'}"
    else:
        url = request.getfixturevalue(f"{request.param}_server_url")
        _empty_database(url)
    built = runtime.build(
        make_conf(database={"connection": url}), migrate=True
    )
    try:
        yield create_app(built).test_client(), built
    finally:
        built.close()


def _patch(client, name, operations, status=200):
    response = client.patch(
        f"/v1/resource_type/{name}",
        json=operations,
        headers={**ADMIN, "Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _resource(client, rid):
    response = client.get(f"/v1/resource/instance/{rid}", headers=ALICE)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_a_populated_type_evolves_as_in_gnocchi(any_client):
    client, built = any_client
    created = client.post(
        "/v1/resource_type",
        json={
            "name": "instance",
            "attributes": {
                "host": {"type": "string", "required": False},
                "vcpus": {"type": "number", "required": False},
            },
        },
        headers=ADMIN,
    )
    assert created.status_code == 201
    for rid, host in (("vm1", "n1"), ("vm2", None)):
        body = {"id": rid, "vcpus": 2}
        if host:
            body["host"] = host
        made = client.post("/v1/resource/instance", json=body, headers=ALICE)
        assert made.status_code == 201, made.get_json()

    # A required attribute needs a fill; with one, every resource gets it.
    refused = _patch(
        client,
        "instance",
        [{"op": "add", "path": "/attributes/flavor",
          "value": {"type": "string", "required": True}}],
        400,
    )  # fmt: skip
    assert "fill" in refused["description"]
    patched = _patch(
        client,
        "instance",
        [{"op": "add", "path": "/attributes/flavor",
          "value": {"type": "string", "required": True,
                    "options": {"fill": "m1.small"}}},
         {"op": "add", "path": "/attributes/pinned",
          "value": {"type": "bool", "required": False,
                    "options": {"fill": True}}}],
    )  # fmt: skip
    assert patched["attributes"]["flavor"] == {
        "type": "string", "required": True, "min_length": 0,
        "max_length": 255,
    }  # fmt: skip
    for rid in ("vm1", "vm2"):
        shown = _resource(client, rid)
        assert (shown["flavor"], shown["pinned"]) == ("m1.small", True)
    found = client.post(
        "/v1/search/resource/instance",
        json={"=": {"flavor": "m1.small"}},
        headers=ALICE,
    )
    assert len(found.get_json()) == 2

    # add of an attribute exactly as it is: accepted, nothing changes
    # (ceilometer-upgrade sends this for host).
    same = _patch(
        client,
        "instance",
        [{"op": "add", "path": "/attributes/host",
          "value": {"type": "string", "min_length": 0, "max_length": 255,
                    "required": False}}],
    )  # fmt: skip
    assert same == patched

    # replace: host becomes required; the resource without one is filled.
    replaced = _patch(
        client,
        "instance",
        [{"op": "replace", "path": "/attributes/host",
          "value": {"type": "string", "required": True, "max_length": 64,
                    "options": {"fill": "unknown-host"}}}],
    )  # fmt: skip
    assert replaced["attributes"]["host"]["required"] is True
    assert replaced["attributes"]["host"]["max_length"] == 64
    assert _resource(client, "vm1")["host"] == "n1"
    assert _resource(client, "vm2")["host"] == "unknown-host"
    missing_host = client.post(
        "/v1/resource/instance",
        json={"id": "vm3", "flavor": "x"},
        headers=ALICE,
    )
    assert missing_host.status_code == 400
    assert "host" in envelopes.message(missing_host)

    # A type change is refused; a bound stored values break is refused;
    # neither changes anything.
    before = client.get("/v1/resource_type/instance", headers=ADMIN)
    _patch(
        client,
        "instance",
        [{"op": "replace", "path": "/attributes/vcpus",
          "value": {"type": "string", "required": False}}],
        400,
    )  # fmt: skip
    too_short = _patch(
        client,
        "instance",
        [{"op": "replace", "path": "/attributes/host",
          "value": {"type": "string", "required": True, "max_length": 3,
                    "options": {"fill": "x"}}},
         {"op": "remove", "path": "/attributes/vcpus"}],
        400,
    )  # fmt: skip
    assert "host" in too_short["description"]
    after = client.get("/v1/resource_type/instance", headers=ADMIN)
    assert after.get_json() == before.get_json()
    assert _resource(client, "vm1")["vcpus"] == 2

    # remove drops the attribute and its values.
    removed = _patch(
        client, "instance", [{"op": "remove", "path": "/attributes/pinned"}]
    )
    assert "pinned" not in removed["attributes"]
    assert "pinned" not in _resource(client, "vm1")
    with built.db.read_session() as session:
        values = session.scalar(
            sa.select(sa.func.count()).select_from(
                schema.ResourceAttributeModel
            )
        )
    # vm1: host, vcpus, flavor; vm2: host, vcpus, flavor.
    assert values == 6

    # A path that does not exist names the operation.
    bad = _patch(
        client, "instance", [{"op": "remove", "path": "/attributes/nope"}], 400
    )
    assert "patch[0]" in bad["description"]
