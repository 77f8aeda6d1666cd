"""Which resources an alarm of a project may reference (alarms.scoping)."""

from __future__ import annotations

import json

import pytest

from alarmer.alarms import scoping
from alarmer.alarms.errors import RuleError

QUERY = '{"=": {"user_id": "u1"}}'


def _rule(query: str = QUERY, resource_type: str = "generic") -> dict:
    return {
        "metric": "cpu",
        "resource_type": resource_type,
        "query": query,
        "aggregation_method": "mean",
    }


def _alarm(rule: dict, **extra: object) -> dict:
    return {"type": scoping.BY_RESOURCES, "rule": rule, **extra}


def _project_filter(project: str) -> dict:
    return {
        "or": [
            {"=": {"created_by_project_id": project}},
            {"=": {"project_id": project}},
        ]
    }


def _scoped(project: str, query: str = QUERY) -> dict:
    return {"and": [_project_filter(project), json.loads(query)]}


def test_a_member_alarm_counts_only_its_project(rt):
    values = _alarm(_rule())
    scoping.scope_alarm(rt.db, values, project_id="p1", is_admin=False)
    assert json.loads(values["rule"]["query"]) == _scoped("p1")


def test_an_admin_alarm_for_its_own_project_keeps_the_query(rt):
    values = _alarm(_rule())
    scoping.scope_alarm(rt.db, values, project_id="p1", is_admin=True)
    assert values["rule"]["query"] == QUERY


def test_an_admin_alarm_for_another_project_counts_that_project(rt):
    values = _alarm(_rule(), project_id="p2")
    scoping.scope_alarm(rt.db, values, project_id="p1", is_admin=True)
    assert json.loads(values["rule"]["query"]) == _scoped("p2")


def test_composite_members_are_scoped_and_others_left_alone(rt):
    threshold = {"type": "threshold", "meter_name": "cpu", "threshold": 1}
    member = {"type": scoping.BY_RESOURCES, **_rule()}
    values = {
        "type": "composite",
        "rule": {"or": [threshold, {"and": [member, dict(threshold)]}]},
    }
    scoping.scope_alarm(rt.db, values, project_id="p1", is_admin=False)
    inner = values["rule"]["or"][1]["and"][0]
    assert json.loads(inner["query"]) == _scoped("p1")
    assert values["rule"]["or"][0] == threshold
    assert "query" not in values["rule"]["or"][1]["and"][1]


def test_other_rule_types_are_not_touched(rt):
    values = {"type": "threshold", "rule": {"query": QUERY}}
    scoping.scope_alarm(rt.db, values, project_id="p1", is_admin=False)
    assert values["rule"]["query"] == QUERY


def test_an_undeclared_resource_type_is_accepted(rt):
    values = _alarm(_rule(resource_type="not_declared_yet"))
    scoping.scope_alarm(rt.db, values, project_id="p1", is_admin=False)
    assert json.loads(values["rule"]["query"]) == _scoped("p1")


@pytest.mark.parametrize("query", ["{bad", '{"=": {"no_such_attribute": 1}}'])
def test_a_query_that_does_not_compile_is_a_rule_error(rt, query):
    values = _alarm(_rule(query))
    with pytest.raises(RuleError) as excinfo:
        scoping.scope_alarm(rt.db, values, project_id="p1", is_admin=False)
    assert excinfo.value.status == 400
    assert excinfo.value.field == "query"
    assert excinfo.value.message.startswith(
        f"Invalid input for field/attribute query. Value: '{query}'. "
    )
    assert values["rule"]["query"] == query
