"""Roles on every route of both dialects, read from the application's map.

Gnocchi's and Aodh's default policies: ``reader`` reads, ``member`` also
writes (metrics, resources, measures, alarms), ``admin`` also
administers (archive policies and their rules, resource types, quotas,
the status); a request naming no user and no project is a 401.  The
table below gives the least role of every (endpoint, method) of the URL
map; a route missing from it (or an entry without a route) fails, so a
new route cannot be added without saying who may call it.

Each route is called, on a fresh database holding one of everything,
by no identity, an identity without a known role, a reader, a member
and an administrator (all of project ``p1``).  Below the least role the
answer is 401 (no identity) or 403 and nothing in the database or in
the series changed; at or above it the role check passes (the request
may still be refused for another reason, never with a 5xx).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from alarmer import tables  # noqa: F401 - every table in the metadata
from alarmer.db import Base
from api.app import create_app

PUBLIC, READER, MEMBER, ADMIN = "public", "reader", "member", "admin"

#: The least role of every route: ``(endpoint, method) -> role``.
LEAST_ROLE: dict[tuple[str, str], str] = {
    # Discovery documents, no tenant data (as Gnocchi and Aodh).
    ("versions", "GET"): PUBLIC,
    ("healthcheck", "GET"): PUBLIC,
    ("openapi", "GET"): PUBLIC,
    ("static", "GET"): PUBLIC,
    ("v1.version", "GET"): PUBLIC,
    ("v1.capabilities", "GET"): PUBLIC,
    ("v2_capabilities", "GET"): PUBLIC,
    ("v2_capabilities_slash", "GET"): PUBLIC,
    # v1: archive policies and rules.
    ("v1.status", "GET"): ADMIN,
    ("v1.archive_policy_create", "POST"): ADMIN,
    ("v1.archive_policy_list", "GET"): READER,
    ("v1.archive_policy_show", "GET"): READER,
    ("v1.archive_policy_update", "PATCH"): ADMIN,
    ("v1.archive_policy_delete", "DELETE"): ADMIN,
    ("v1.archive_policy_rule_create", "POST"): ADMIN,
    ("v1.archive_policy_rule_list", "GET"): READER,
    ("v1.archive_policy_rule_show", "GET"): READER,
    ("v1.archive_policy_rule_update", "PATCH"): ADMIN,
    ("v1.archive_policy_rule_delete", "DELETE"): ADMIN,
    # v1: metrics and measures.
    ("v1.metric_create", "POST"): MEMBER,
    ("v1.metric_list", "GET"): READER,
    ("v1.metric_show", "GET"): READER,
    ("v1.metric_delete", "DELETE"): MEMBER,
    ("v1.measures_add", "POST"): MEMBER,
    ("v1.measures_get", "GET"): READER,
    ("v1.measures_batch", "POST"): MEMBER,
    ("v1.aggregates", "POST"): READER,
    # v1: resources, their metrics and measures, types, search.
    ("v1_resources.create_resource", "POST"): MEMBER,
    ("v1_resources.list_resources", "GET"): READER,
    ("v1_resources.delete_matching", "DELETE"): MEMBER,
    ("v1_resources.show_resource", "GET"): READER,
    ("v1_resources.update_resource", "PATCH"): MEMBER,
    ("v1_resources.delete_resource", "DELETE"): MEMBER,
    ("v1_resources.list_resource_metrics", "GET"): READER,
    ("v1_resources.add_resource_metrics", "POST"): MEMBER,
    ("v1_resources.show_resource_metric", "GET"): READER,
    ("v1_resources.delete_resource_metric", "DELETE"): MEMBER,
    ("v1_resource_measures.add_named_measures", "POST"): MEMBER,
    ("v1_resource_measures.get_named_measures", "GET"): READER,
    ("v1_resource_measures.add_batch_by_resources", "POST"): MEMBER,
    ("v1_resource_type.list_types", "GET"): READER,
    ("v1_resource_type.show_type", "GET"): READER,
    ("v1_resource_type.create_type", "POST"): ADMIN,
    ("v1_resource_type.patch_type", "PATCH"): ADMIN,
    ("v1_resource_type.delete_type", "DELETE"): ADMIN,
    ("v1_search.search_resources", "POST"): READER,
    # v2: alarms, their state, history and deliveries.
    ("v2_alarms.list_alarms", "GET"): READER,
    ("v2_alarms.create_alarm", "POST"): MEMBER,
    ("v2_alarms.get_alarm", "GET"): READER,
    ("v2_alarms.replace_alarm", "PUT"): MEMBER,
    ("v2_alarms.delete_alarm", "DELETE"): MEMBER,
    ("v2_alarms.get_state", "GET"): READER,
    ("v2_alarms.set_state", "PUT"): MEMBER,
    ("v2_alarms.alarm_history", "GET"): READER,
    ("v2_deliveries.list_deliveries", "GET"): READER,
    ("v2_deliveries.get_delivery", "GET"): READER,
    ("v2_deliveries.redeliver", "POST"): MEMBER,
    ("v2_query.query_alarms", "POST"): READER,
    ("v2_query.query_history", "POST"): READER,
    # v2: quotas (reading one's own is a read).
    ("v2_quotas.get_quotas", "GET"): READER,
    ("v2_quotas.set_quotas", "POST"): ADMIN,
    ("v2_quotas.delete_quotas", "DELETE"): ADMIN,
    # Observability: the Prometheus scrape (counts only, no tenant data),
    # Aodh's evaluation results, Gnocchi's legacy aggregation reads.
    ("metrics", "GET"): PUBLIC,
    ("v2_metrics.get_metrics", "GET"): READER,
    ("v2_silences.list_silences", "GET"): READER,
    ("v2_silences.get_silence", "GET"): READER,
    ("v2_silences.create_silence", "POST"): MEMBER,
    ("v2_silences.expire_silence", "DELETE"): MEMBER,
    ("v1.resource_index", "GET"): READER,
    ("v1.aggregation_metric", "GET"): READER,
    ("v1.aggregation_metric", "POST"): READER,
    ("v1.aggregation_resource", "GET"): READER,
    ("v1.aggregation_resource", "POST"): READER,
    # The dashboard (HTML pages; their buttons call the v2 API).
    ("dashboard.static", "GET"): PUBLIC,
    # Signing in and out of the dashboard (the credential is checked by
    # the sign-in itself; signing out needs the page's CSRF token).
    ("dashboard.login_form", "GET"): PUBLIC,
    ("dashboard.login", "POST"): PUBLIC,
    ("dashboard.logout", "POST"): PUBLIC,
    ("dashboard.alarms", "GET"): READER,
    ("dashboard.token", "GET"): READER,
    ("dashboard.alarm", "GET"): READER,
    ("dashboard.deliveries", "GET"): READER,
    ("dashboard.resources", "GET"): READER,
    ("dashboard.metric", "GET"): READER,
}

RANK = {PUBLIC: -1, READER: 1, MEMBER: 2, ADMIN: 3}

#: Who calls: the headers, and the rank of the best role held.
CALLERS: dict[str, tuple[dict[str, str], int]] = {
    "no identity": ({}, -1),
    "no known role": (
        {"X-User-Id": "u0", "X-Project-Id": "p1", "X-Roles": "observer"},
        0,
    ),
    "reader": (
        {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "reader"},
        1,
    ),
    "member": (
        {"X-User-Id": "u2", "X-Project-Id": "p1", "X-Roles": "member"},
        2,
    ),
    "admin": (
        {"X-User-Id": "u3", "X-Project-Id": "p1", "X-Roles": "admin"},
        3,
    ),
}
SETUP = CALLERS["admin"][0]
OWNER = CALLERS["member"][0]


def _ok(response, status: int = 201) -> Any:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def _measure() -> list[dict[str, Any]]:
    return [{"timestamp": time.time(), "value": 42.0}]


def _world(client) -> dict[str, str]:
    """One of everything, for the routes to act on."""
    _ok(
        client.post(
            "/v1/archive_policy",
            json={
                "name": "pol1",
                "definition": [{"granularity": 60, "points": 5}],
            },
            headers=SETUP,
        )
    )
    _ok(
        client.post(
            "/v1/archive_policy_rule",
            json={
                "name": "rule1",
                "archive_policy_name": "pol1",
                "metric_pattern": "rule1.*",
            },
            headers=SETUP,
        )
    )
    _ok(
        client.post(
            "/v1/resource_type",
            json={"name": "rt1", "attributes": {}},
            headers=SETUP,
        )
    )
    metric = _ok(
        client.post(
            "/v1/metric", json={"archive_policy_name": "low"}, headers=OWNER
        )
    )["id"]
    _ok(
        client.post(
            f"/v1/metric/{metric}/measures", json=_measure(), headers=OWNER
        ),
        202,
    )
    resource = _ok(
        client.post(
            "/v1/resource/generic",
            json={
                "id": "r1",
                "metrics": {"cpu": {"archive_policy_name": "low"}},
            },
            headers=OWNER,
        )
    )
    alarm = _ok(client.post("/v2/alarms", json=_alarm(metric), headers=OWNER))
    return {
        "metric": metric,
        "resource": resource["id"],
        "resource_metric": resource["metrics"]["cpu"],
        "alarm": alarm["alarm_id"],
    }


def _alarm(metric: str) -> dict[str, Any]:
    return {
        "name": "roles",
        "type": "gnocchi_aggregation_by_metrics_threshold",
        "gnocchi_aggregation_by_metrics_threshold_rule": {
            "metrics": [metric],
            "aggregation_method": "mean",
            "threshold": 10,
        },
    }


def _url_values(
    endpoint: str, args: set[str], world: dict[str, str]
) -> dict[str, str]:
    if endpoint.startswith("v1.archive_policy_rule"):
        name = "rule1"
    elif endpoint.startswith("v1.archive_policy"):
        name = "pol1"
    elif endpoint.startswith("v1_resource_type"):
        name = "rt1"
    else:
        name = "cpu"  # a metric of a resource
    known = {
        "name": name,
        "type_name": "generic",
        "resource_id": world["resource"],
        "metric_id": world["metric"],
        "alarm_id": world["alarm"],
        "delivery_id": str(uuid.uuid4()),
        "silence_id": str(uuid.uuid4()),
        "project_id": "p1",
        "filename": "nothing.txt",
    }
    return {arg: known[arg] for arg in args}


def _body(endpoint: str, world: dict[str, str]) -> Any:
    """A body the route would accept (so a missing check shows)."""
    metric, resource = world["metric"], world["resource"]
    return {
        "v1.archive_policy_create": {
            "name": "pol2",
            "definition": [{"granularity": 60, "points": 5}],
        },
        "v1.archive_policy_update": {"back_window": 3},
        "v1.archive_policy_rule_create": {
            "name": "rule2",
            "archive_policy_name": "low",
            "metric_pattern": "rule2.*",
        },
        "v1.archive_policy_rule_update": {"name": "rule3"},
        "v1.metric_create": {"archive_policy_name": "low"},
        "v1.measures_add": _measure(),
        "v1.measures_batch": {metric: _measure()},
        "v1.aggregates": {"operations": ["metric", metric, "mean"]},
        "v1_resources.create_resource": {"id": "r2"},
        "v1_resources.update_resource": {"user_id": "someone"},
        "v1_resources.delete_matching": {"=": {"id": resource}},
        "v1_resources.add_resource_metrics": {
            "mem": {"archive_policy_name": "low"}
        },
        "v1_resource_measures.add_named_measures": _measure(),
        "v1_resource_measures.add_batch_by_resources": {
            resource: {"cpu": _measure()}
        },
        "v1_resource_type.create_type": {"name": "rt2", "attributes": {}},
        "v1_resource_type.patch_type": [
            {
                "op": "add",
                "path": "/attributes/colour",
                "value": {"type": "string", "required": False},
            }
        ],
        "v1_search.search_resources": {},
        "v2_alarms.create_alarm": _alarm(metric),
        "v2_alarms.replace_alarm": {**_alarm(metric), "name": "renamed"},
        "v2_alarms.set_state": "alarm",
        "v2_silences.create_silence": {
            "matchers": [{"field": "name", "op": "=", "value": "roles"}],
            "ends_at": "2999-01-01T00:00:00+00:00",
            "comment": "roles",
        },
        "v2_query.query_alarms": {},
        "v2_query.query_history": {},
        "v2_quotas.set_quotas": {
            "project_id": "p1",
            "quotas": [{"resource": "alarms", "limit": 7}],
        },
    }.get(endpoint)


def _snapshot(rt, world: dict[str, str]) -> Any:
    """Every row of every table, and the stored series."""
    rows: dict[str, list[str]] = {}
    with rt.db.read_session() as session:
        for table in Base.metadata.sorted_tables:
            rows[table.name] = sorted(
                json.dumps([str(v) for v in row])
                for row in session.execute(sa.select(table))
            )
    series = {}
    for key in ("metric", "resource_metric"):
        for found in rt.series.get_measures(world[key], "mean"):
            series[key] = (
                np.asarray(found.timestamps).tolist(),
                np.asarray(found.values).tolist(),
            )
    return rows, series


def test_every_route_has_a_least_role(sqlite_rt):
    app = create_app(sqlite_rt)
    routes = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert routes - set(LEAST_ROLE) == set(), "routes without a role"
    assert set(LEAST_ROLE) - routes == set(), "roles of no route"


@pytest.mark.parametrize(
    ("endpoint", "method"),
    sorted(LEAST_ROLE),
    ids=[f"{e} {m}" for e, m in sorted(LEAST_ROLE)],
)
def test_route_enforces_its_least_role(sqlite_rt, endpoint, method):
    sqlite_rt.conf.set_override("enable_evaluation_results_metrics", True)
    app = create_app(sqlite_rt)
    client = app.test_client()
    world = _world(client)
    rule = next(
        r
        for r in app.url_map.iter_rules()
        if r.endpoint == endpoint and method in (r.methods or ())
    )
    adapter = app.url_map.bind("localhost")
    url = adapter.build(
        endpoint,
        _url_values(endpoint, set(rule.arguments), world),
        method=method,
    )
    body = _body(endpoint, world)
    least = RANK[LEAST_ROLE[(endpoint, method)]]
    for who, (headers, rank) in CALLERS.items():
        before = _snapshot(sqlite_rt, world)
        kwargs: dict[str, Any] = {"headers": headers}
        if endpoint.startswith("dashboard.") and method == "POST":
            # As a browser posts the dashboard's forms.
            kwargs["headers"] = {**headers, "Origin": "http://localhost"}
        if body is not None:
            kwargs["json"] = body
        response = client.open(url, method=method, **kwargs)
        status = response.status_code
        text = response.get_data(as_text=True)
        assert status < 500, (who, status, text)
        if rank >= least:
            assert status not in (401, 403), (who, status, text)
            continue
        expected = {401} if rank < 0 else {401, 403}
        assert status in expected, (who, status, text)
        page = endpoint.startswith("dashboard.")
        assert response.mimetype == (
            "text/html" if page else "application/json"
        ), text
        assert _snapshot(sqlite_rt, world) == before, who


def test_a_reader_api_key_reads_the_metric_api_and_writes_nothing(
    make_conf,
):
    from alarmer import runtime
    from alarmer.identity import apikeys

    rt = runtime.build(make_conf(api={"auth_mode": "apikey"}), migrate=True)
    try:
        client = create_app(rt).test_client()
        member, _ = apikeys.create(
            rt.db, project_id="pk", user_id="uk", roles=["member"]
        )
        reader, _ = apikeys.create(
            rt.db, project_id="pk", user_id="ur", roles=["reader"]
        )
        as_member = {"Authorization": f"Bearer {member}"}
        as_reader = {"X-Auth-Token": reader}
        metric = _ok(
            client.post(
                "/v1/metric",
                json={"archive_policy_name": "low"},
                headers=as_member,
            )
        )["id"]
        world = {"metric": metric, "resource_metric": metric}
        before = _snapshot(rt, world)
        for method, url, body in (
            ("POST", "/v1/metric", {"archive_policy_name": "low"}),
            ("POST", f"/v1/metric/{metric}/measures", _measure()),
            ("DELETE", f"/v1/metric/{metric}", None),
            ("POST", "/v1/resource/generic", {"id": "r9"}),
        ):
            response = client.open(
                url, method=method, json=body, headers=as_reader
            )
            assert response.status_code == 403, response.get_json()
        assert _snapshot(rt, world) == before
        listed = client.get("/v1/metric", headers=as_reader)
        assert [m["id"] for m in _ok(listed, 200)] == [metric]
        # Headers claiming a role are not an API key.
        claimed = client.post(
            "/v1/metric",
            json={"archive_policy_name": "low"},
            headers=CALLERS["admin"][0],
        )
        assert claimed.status_code == 401
        assert _snapshot(rt, world) == before
    finally:
        rt.close()
