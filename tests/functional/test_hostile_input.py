"""Hostile input over HTTP: a 4xx naming the field, nothing stored.

Each request below answered 500, or stored a value that later broke an
answer, before the bounded reader (:mod:`alarmer.jsontext`,
``api.params``) and the bounds of ``[api]``.  Every test runs on SQLite
and on PostgreSQL (the ``client`` fixture), since NUL, lone surrogates
and large integers fail differently per database.
"""

from __future__ import annotations

import copy
import json
import time

import pytest
import sqlalchemy as sa

from alarmer.alarms.tables import Alarm
from tests import envelopes
from tests.functional.v2_helpers import (
    ADMIN,
    BY_METRICS_RULE,
    MEMBER,
    RESOURCES_RULE,
    alarm_body,
    count_alarms,
)

DEEP = 1000
T0 = 1_700_000_000 - 1_700_000_000 % 3600


def _strict(text: str):
    """Decode like a strict peer: a bare NaN or Infinity is an error."""

    def refuse(literal: str):
        raise ValueError(f"not strict JSON: {literal}")

    return json.loads(text, parse_constant=refuse)


def fault(response, status: int = 400) -> str:
    """The faultstring of a 4xx answer in the API's envelope."""
    text = response.get_data(as_text=True)
    _strict(text)
    assert status < 500
    return envelopes.message(response, status)


def post_raw(client, path: str, text: str, headers=MEMBER, method="POST"):
    return client.open(
        path,
        method=method,
        data=text.encode("utf-8", "surrogatepass"),
        headers={**headers, "Content-Type": "application/json"},
    )


def deep_list(leaf: str = "1", depth: int = DEEP) -> str:
    return "[" * depth + leaf + "]" * depth


def deep_object(depth: int = DEEP) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def metric_count(client) -> int:
    response = client.get("/v1/metric", headers=ADMIN)
    assert response.status_code == 200
    return len(response.get_json())


def make_metric(client, headers=MEMBER) -> str:
    response = client.post(
        "/v1/metric", json={"archive_policy_name": "low"}, headers=headers
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def create_alarm(client, body=None) -> dict:
    response = client.post(
        "/v2/alarms", json=body or alarm_body(), headers=MEMBER
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


# -------------------------------------------------------------- depth --


@pytest.mark.parametrize(
    ("method", "path", "text", "headers"),
    [
        ("POST", "/v2/alarms", deep_list(), MEMBER),
        ("POST", "/v2/query/alarms", deep_object(), MEMBER),
        ("POST", "/v2/query/alarms/history", deep_object(), MEMBER),
        ("POST", "/v2/quotas", deep_object(), ADMIN),
        ("POST", "/v1/search/resource/generic", deep_object(), MEMBER),
        ("POST", "/v1/resource/generic", deep_object(), MEMBER),
        ("POST", "/v1/metric", deep_object(), MEMBER),
        (
            "POST",
            "/v1/aggregates",
            '{"operations": ' + '["abs", ' * DEEP + '["metric", "m", '
            '"mean"]' + "]" * DEEP + "}",
            MEMBER,
        ),
        ("POST", "/v1/batch/metrics/measures", deep_object(), MEMBER),
    ],
)
def test_deep_json_is_400_not_500(client, method, path, text, headers):
    before = count_alarms(client), metric_count(client)
    message = fault(post_raw(client, path, text, headers, method))
    assert "nested deeper than 32 levels" in message
    assert (count_alarms(client), metric_count(client)) == before


def test_depth_bound_is_the_option(client, rt):
    # A composite body nests 7 deep: body, composite_rule, "or", a node,
    # "and", a leaf, its metrics.
    body = alarm_body("nested", "composite")
    rt.conf.set_override("max_json_depth", 6, group="api")
    assert "nested deeper than 6 levels" in fault(
        client.post("/v2/alarms", json=body, headers=MEMBER)
    )
    assert count_alarms(client) == 0
    rt.conf.set_override("max_json_depth", 7, group="api")
    create_alarm(client, body)


def test_deep_aggregates_expression_is_400(client):
    expression = "(abs " * DEEP + "(metric m mean)" + ")" * DEEP
    message = fault(
        client.post(
            "/v1/aggregates",
            json={"operations": expression},
            headers=MEMBER,
        )
    )
    assert "operations: nested deeper than 32 levels" in message


def test_deep_documents_given_as_text_are_400(client):
    for body in (
        {"filter": deep_object()},
        {"orderby": deep_list()},
    ):
        message = fault(
            client.post("/v2/query/alarms", json=body, headers=MEMBER)
        )
        key = next(iter(body))
        assert f"field/attribute {key}." in message
        assert "nested deeper than 32 levels" in message
    rule = {
        "metric": "cpu",
        "resource_type": "instance",
        "query": deep_object(),
        "aggregation_method": "mean",
        "threshold": 1,
    }
    body = alarm_body("deep", "gnocchi_aggregation_by_resources_threshold") | {
        "gnocchi_aggregation_by_resources_threshold_rule": rule
    }
    message = fault(client.post("/v2/alarms", json=body, headers=MEMBER))
    assert "gnocchi_aggregation_by_resources_threshold_rule.query" in message
    assert "nested deeper than 32 levels" in message
    assert count_alarms(client) == 0


# ------------------------------------------------------------ numbers --


def test_quota_beyond_the_column_is_400(client):
    for limit in (2**63, 2**31, 10**400):
        response = post_raw(
            client,
            "/v2/quotas",
            '{"project_id": "p1", "quotas": [{"resource": "alarms", '
            f'"limit": {limit}}}]}}',
            ADMIN,
        )
        assert "quotas" in fault(response)
    response = client.get("/v2/quotas?project_id=p1", headers=ADMIN)
    assert response.get_json()["quotas"] == [
        {"resource": "alarms", "limit": -1}
    ]
    largest = {"resource": "alarms", "limit": 2**31 - 1}
    response = client.post(
        "/v2/quotas",
        json={"project_id": "p1", "quotas": [largest]},
        headers=ADMIN,
    )
    assert response.status_code == 201
    assert response.get_json()["quotas"] == [largest]


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("9" * 401, "out of range"),
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("1e999", "out of range"),
        ("-1e400", "out of range"),
    ],
)
def test_threshold_must_be_finite(client, literal, reason):
    text = json.dumps(alarm_body()).replace(
        '"threshold": 80', f'"threshold": {literal}'
    )
    message = fault(post_raw(client, "/v2/alarms", text))
    assert "gnocchi_resources_threshold_rule.threshold" in message
    assert reason in message
    assert count_alarms(client) == 0


def test_huge_granularities_are_400(client):
    body = alarm_body()
    body["gnocchi_resources_threshold_rule"]["granularity"] = 10**400
    text = json.dumps(body)
    message = fault(post_raw(client, "/v2/alarms", text))
    assert "gnocchi_resources_threshold_rule.granularity" in message
    assert count_alarms(client) == 0
    policy = (
        '{"name": "huge", "definition": [{"granularity": 1'
        + "0" * 400
        + ', "points": 3}]}'
    )
    message = fault(post_raw(client, "/v1/archive_policy", policy, ADMIN))
    assert "definition[0].granularity" in message
    assert (
        client.get("/v1/archive_policy/huge", headers=ADMIN).status_code == 404
    )
    resample = (
        '{"operations": ["resample", "mean", 1'
        + "0" * 400
        + ', ["metric", "m", "mean"]]}'
    )
    message = fault(post_raw(client, "/v1/aggregates", resample))
    assert "operations[2]" in message


def test_timestamps_out_of_range_in_queries_are_400(client):
    create_alarm(client)
    message = fault(
        client.post(
            "/v2/query/alarms",
            json={"filter": json.dumps({">": {"timestamp": 1e30}})},
            headers=MEMBER,
        )
    )
    assert "timestamp" in message
    message = fault(
        client.get("/v2/alarms?q.field=timestamp&q.value=1e30", headers=MEMBER)
    )
    assert "timestamp" in message


# --------------------------------------------------------------- text --


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("name", "\\ud800", "lone UTF-16 surrogates"),
        ("description", "x\\udfff", "lone UTF-16 surrogates"),
        ("name", "a\\u0000b", "NUL characters"),
        ("description", "\\u0000", "NUL characters"),
    ],
)
def test_surrogates_and_nul_in_alarms_are_400(client, field, value, reason):
    text = json.dumps(alarm_body())[:-1] + f', "{field}": "{value}"}}'
    if field == "name":
        text = json.dumps(alarm_body()).replace('"cpu-high"', f'"{value}"')
    message = fault(post_raw(client, "/v2/alarms", text))
    assert f"field/attribute {field}." in message
    assert reason in message
    assert count_alarms(client) == 0


def test_surrogates_and_nul_elsewhere_are_400(client):
    before = metric_count(client)
    for path, text, field, headers in (
        ("/v1/metric", '{"name": "\\ud800", "archive_policy_name": "low"}',
         "name", MEMBER),
        ("/v1/metric", '{"name": "a\\u0000", "archive_policy_name": "low"}',
         "name", MEMBER),
        ("/v1/resource/generic", '{"id": "r\\u0000"}', "id", MEMBER),
        ("/v1/resource/generic", '{"id": "r\\udbff"}', "id", MEMBER),
        ("/v1/archive_policy", '{"name": "\\ud800", "definition": '
         '[{"granularity": 1, "points": 2}]}', "name", ADMIN),
        ("/v1/search/resource/generic", '{"=": {"id": "\\u0000"}}',
         "=.id", MEMBER),
        ("/v2/query/alarms", json.dumps(
            {"filter": json.dumps({"=": {"name": "a\u0000"}})}),
         "filter.=.name", MEMBER),
    ):  # fmt: skip
        message = fault(post_raw(client, path, text, headers))
        assert field in message, (path, message)
    assert metric_count(client) == before
    assert client.get("/v1/resource/generic", headers=MEMBER).get_json() == []
    assert client.get("/v1/archive_policy", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v2/alarms/%00", MEMBER),
        ("/v2/alarms?q.field=name&q.value=%00", MEMBER),
        ("/v2/alarms?marker=a%00", MEMBER),
        ("/v2/quotas?project_id=%00", ADMIN),
        ("/v1/metric/%00", MEMBER),
        ("/v1/metric?name=%00", MEMBER),
        ("/v1/archive_policy/%00", MEMBER),
        ("/v1/resource_type/%00", MEMBER),
        ("/v1/resource/%00", MEMBER),
        ("/v2/alarms", {**MEMBER, "X-Project-Id": "p\x00"}),
    ],
)
def test_nul_in_the_url_or_identity_is_400(client, path, headers):
    message = fault(client.get(path, headers=headers))
    assert "NUL" in message


def test_unparsable_action_url_is_400(client):
    for urls, field in (
        (["http://[::1"], "alarm_actions[0]"),
        (["http://example.com/", "http://a..b/"], "alarm_actions[1]"),
        (["http://exa mple.com/"], "alarm_actions[0]"),
    ):
        body = alarm_body(alarm_actions=urls)
        message = fault(client.post("/v2/alarms", json=body, headers=MEMBER))
        assert field in message and "Unable to parse action" in message
    assert count_alarms(client) == 0


# ------------------------------------------------------------- bounds --


def test_alarm_bounds(client, rt):
    rt.conf.set_override("alarm_max_description_length", 100, group="api")
    cases = [
        (alarm_body(description="d" * 101), "description", 400),
        (alarm_body(description="d" * 2 * 1024 * 1024), "", 413),
        (
            alarm_body(
                alarm_actions=[f"http://192.0.2.{i}/" for i in range(11)]
            ),
            "alarm_actions",
            400,
        ),
        (
            alarm_body(
                ok_actions=[f"http://192.0.2.{i}/" for i in range(8)],
                alarm_actions=[f"http://198.51.100.{i}/" for i in range(8)],
                insufficient_data_actions=[
                    f"http://203.0.113.{i}/" for i in range(5)
                ],
            ),
            "actions",
            400,
        ),
        (
            alarm_body(
                time_constraints=[
                    {"name": f"t{i}", "start": "0 1 * * *", "duration": 1}
                    for i in range(33)
                ]
            ),
            "time_constraints",
            400,
        ),
    ]
    many = alarm_body("many", "gnocchi_aggregation_by_metrics_threshold")
    many["gnocchi_aggregation_by_metrics_threshold_rule"]["metrics"] = [
        f"00000000-0000-0000-0000-{i:012d}" for i in range(101)
    ]
    cases.append((many, "metrics", 400))
    leaf = {"type": "gnocchi_resources_threshold", **RESOURCES_RULE}
    wide = alarm_body("wide", "composite")
    wide["composite_rule"] = {"or": [copy.deepcopy(leaf) for _ in range(33)]}
    cases.append((wide, "composite_rule", 400))
    deep: dict = copy.deepcopy(leaf)
    for _ in range(11):
        deep = {"and": [deep]}
    tall = alarm_body("tall", "composite") | {"composite_rule": deep}
    cases.append((tall, "composite_rule", 400))
    for body, field, status in cases:
        message = fault(
            client.post("/v2/alarms", json=body, headers=MEMBER), status
        )
        assert field in message
    assert count_alarms(client) == 0
    # At the bounds: accepted.
    body = alarm_body(
        description="d" * 100,
        alarm_actions=[f"http://8.8.8.{i}/" for i in range(10)],
    )
    assert create_alarm(client, body)["description"] == "d" * 100


def test_metrics_per_rule_bound_is_the_option(client, rt):
    rt.conf.set_override("alarm_max_rule_metrics", 2, group="api")
    rule = dict(BY_METRICS_RULE, metrics=["a", "b", "c"])
    body = alarm_body("m", "gnocchi_aggregation_by_metrics_threshold")
    body["gnocchi_aggregation_by_metrics_threshold_rule"] = rule
    message = fault(client.post("/v2/alarms", json=body, headers=MEMBER))
    assert "metrics" in message and "At most 2" in message


def test_body_size_bounds(client, rt):
    rt.conf.set_override("max_body_size", 4096, group="api")
    rt.conf.set_override("max_measures_body_size", 8192, group="api")
    body = alarm_body(description="d" * 5000)
    assert "longer than 4096 bytes" in fault(
        client.post("/v2/alarms", json=body, headers=MEMBER), 413
    )
    mid = make_metric(client)
    measures = [{"timestamp": T0 + i, "value": i} for i in range(300)]
    assert "longer than 8192 bytes" in fault(
        client.post(
            f"/v1/metric/{mid}/measures", json=measures, headers=MEMBER
        ),
        413,
    )
    # A measure push may be larger than another body.
    response = client.post(
        f"/v1/metric/{mid}/measures", json=measures[:100], headers=MEMBER
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    assert count_alarms(client) == 0


# ---------------------------------------------------- measure stamps --


def test_measures_far_in_the_future_are_refused(client, rt):
    mid = make_metric(client)
    now = int(time.time())
    in_2038 = 2_147_483_000
    body = [
        {"timestamp": now - 60, "value": 1.0},
        {"timestamp": in_2038, "value": 2.0},
    ]
    message = fault(
        client.post(f"/v1/metric/{mid}/measures", json=body, headers=MEMBER)
    )
    assert "measures[1].timestamp" in message
    assert "ahead of the server's clock" in message
    message = fault(
        client.post(
            "/v1/batch/metrics/measures", json={mid: body}, headers=MEMBER
        )
    )
    assert f"measures[{mid}][1].timestamp" in message
    got = client.get(f"/v1/metric/{mid}/measures", headers=MEMBER)
    assert got.get_json() == []
    # The metric still takes present-day measures.
    response = client.post(
        f"/v1/metric/{mid}/measures", json=body[:1], headers=MEMBER
    )
    assert response.get_json() == {
        "measures_stored": 1,
        "measures_refused": 0,
    }
    # Up to a day ahead by default; the option moves the bound.
    soon = [{"timestamp": now + 3600, "value": 3.0}]
    response = client.post(
        f"/v1/metric/{mid}/measures", json=soon, headers=MEMBER
    )
    assert response.status_code == 202
    rt.conf.set_override("measure_max_future", 60, group="api")
    later = [{"timestamp": now + 7200, "value": 4.0}]
    assert "measures[0].timestamp" in fault(
        client.post(f"/v1/metric/{mid}/measures", json=later, headers=MEMBER)
    )


# ------------------------------------------------------------- output --


def test_rows_stored_with_nan_are_rendered_null(client, rt):
    if rt.conf.database.connection.startswith("postgresql"):
        pytest.skip("PostgreSQL's JSON type cannot hold NaN: no such row")
    created = create_alarm(client)
    with rt.db.session() as session, session.begin():
        row = session.get(Alarm, created["alarm_id"])
        rule = dict(row.rule)
        rule["threshold"] = float("nan")
        session.execute(
            sa.update(Alarm)
            .where(Alarm.alarm_id == created["alarm_id"])
            .values(rule=rule)
        )
    for path in ("/v2/alarms", f"/v2/alarms/{created['alarm_id']}"):
        response = client.get(path, headers=MEMBER)
        assert response.status_code == 200
        document = _strict(response.get_data(as_text=True))
        if isinstance(document, list):
            document = document[0]
        rule = document["gnocchi_resources_threshold_rule"]
        assert rule["threshold"] is None
    response = client.post("/v2/query/alarms", json={}, headers=MEMBER)
    assert response.status_code == 200
    _strict(response.get_data(as_text=True))
