"""Alarm definitions: schemas, defaults, composite rules, time constraints."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from alarmer.alarms import time_constraints as tc
from alarmer.alarms import validation as rules

UTC = dt.UTC

RULE = {
    "metric": "cpu",
    "resource_id": "r1",
    "resource_type": "instance",
    "aggregation_method": "mean",
    "threshold": 80,
}


def body(**extra):
    base = {
        "name": "a",
        "type": "gnocchi_resources_threshold",
        "gnocchi_resources_threshold_rule": copy.deepcopy(RULE),
    }
    base.update(extra)
    return base


def test_defaults_are_filled():
    alarm = rules.validate_alarm(body())
    assert alarm["rule"] == {
        **RULE,
        "threshold": 80.0,
        "comparison_operator": "eq",
        "granularity": 60,
        "evaluation_periods": 1,
    }
    assert alarm["description"] == "gnocchi_resources_threshold alarm rule"
    assert alarm["enabled"] is True
    assert alarm["severity"] == "low"
    assert alarm["repeat_actions"] is False
    assert alarm["time_constraints"] == []
    assert "state" not in alarm and "project_id" not in alarm


def test_read_only_fields_are_accepted_and_dropped():
    alarm = rules.validate_alarm(
        body(
            alarm_id="x",
            timestamp="2026-01-01T00:00:00",
            state_timestamp=None,
            evaluate_timestamp="2026-01-01T00:00:00+00:00",
            state_reason="whatever",
        )
    )
    for key in rules.schema.READ_ONLY:
        assert key not in alarm


def test_actions_keep_order_without_duplicates():
    checked = []
    alarm = rules.validate_alarm(
        body(alarm_actions=["http://b", "http://a", "http://b"]),
        check_action=lambda field, url: checked.append((field, url)),
    )
    assert alarm["alarm_actions"] == ["http://b", "http://a"]
    assert checked == [
        ("alarm_actions[0]", "http://b"),
        ("alarm_actions[1]", "http://a"),
    ]


def test_check_action_can_reject():
    def refuse(field, url):
        raise rules.RuleError(f"Unsupported action {url}", field)

    with pytest.raises(rules.RuleError, match="Unsupported action spam://"):
        rules.validate_alarm(
            body(ok_actions=["spam://x"]), check_action=refuse
        )


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"threshold": True}, "threshold", "boolean"),
        ({"threshold": None}, "threshold", "Mandatory"),
        ({"granularity": 5.5}, "granularity", "integer"),
        ({"granularity": 31536001}, "granularity", "lower or equal"),
        ({"evaluation_periods": 0}, "evaluation_periods", "greater or equal"),
        ({"aggregation_method": "avg"}, "aggregation_method", "avg"),
        ({"comparison_operator": "=="}, "comparison_operator", "=="),
        ({"metric": ""}, "metric", "empty"),
    ],
)
def test_rule_errors_name_the_field(change, field, words):
    bad = body()
    bad["gnocchi_resources_threshold_rule"].update(change)
    with pytest.raises(rules.RuleError) as info:
        rules.validate_alarm(bad)
    assert info.value.field == f"gnocchi_resources_threshold_rule.{field}"
    assert field in info.value.message and words in info.value.message


def test_text_integers_from_aodhclient_are_read():
    ok = body(
        time_constraints=[
            {"name": "t", "start": "0 1 * * *", "duration": "60"}
        ]
    )
    ok["gnocchi_resources_threshold_rule"]["granularity"] = "300"
    alarm = rules.validate_alarm(ok)
    assert alarm["rule"]["granularity"] == 300
    assert alarm["time_constraints"][0]["duration"] == 60
    bad = body()
    bad["gnocchi_resources_threshold_rule"]["granularity"] = "5 minutes"
    with pytest.raises(rules.RuleError, match="granularity"):
        rules.validate_alarm(bad)


def test_percentile_and_rate_methods_are_valid():
    for method in ("95pct", "rate:mean", "rate:99pct", "std"):
        ok = body()
        ok["gnocchi_resources_threshold_rule"]["aggregation_method"] = method
        assert rules.validate_alarm(ok)["rule"]["aggregation_method"] == method


def test_composite_rule_is_validated_recursively():
    leaf = {"type": "gnocchi_resources_threshold", **RULE}
    rule = {"and": [leaf, {"or": [leaf, {**leaf, "threshold": 1}]}]}
    alarm = rules.validate_alarm(
        {"name": "c", "type": "composite", "composite_rule": rule}
    )
    leaves = list(rules.threshold_rules(alarm["rule"]))
    assert len(leaves) == 3
    assert all(r["granularity"] == 60 for r in leaves)
    assert (
        rules.composition_form(alarm["rule"]) == "(rule1 and (rule2 or rule3))"
    )
    bad = copy.deepcopy(rule)
    bad["and"][1]["or"][1]["threshold"] = "x"
    with pytest.raises(rules.RuleError) as info:
        rules.validate_alarm(
            {"name": "c", "type": "composite", "composite_rule": bad}
        )
    assert info.value.field == "composite_rule.and[1].or[1].threshold"
    with pytest.raises(rules.RuleError, match="and"):
        rules.validate_alarm(
            {
                "name": "c",
                "type": "composite",
                "composite_rule": {"and": [], "or": []},
            }
        )


def test_by_resources_query_must_be_a_json_object():
    rule = {
        "metric": "cpu",
        "resource_type": "instance",
        "aggregation_method": "mean",
        "threshold": 1,
        "query": "[1, 2]",
    }
    with pytest.raises(rules.RuleError, match="query"):
        rules.validate_alarm(
            {
                "name": "q",
                "type": "gnocchi_aggregation_by_resources_threshold",
                "gnocchi_aggregation_by_resources_threshold_rule": rule,
            }
        )


@pytest.mark.parametrize(
    "expression",
    ["0 11 * * *", "*/5 * * * *", "0 9 * * 1-5", "3-57/2 3-12/2 * * *"],
)
def test_documented_cron_expressions_are_valid(expression):
    tc.check_cron(expression)


@pytest.mark.parametrize(
    "expression", ["bad", "61 * * * *", "* * * * * *", "0 25 * * *"]
)
def test_bad_cron_expressions_are_refused(expression):
    with pytest.raises(rules.RuleError):
        tc.check_cron(expression)


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        # Europe/Paris, 11:00 local for one hour; CET then CEST.
        (dt.datetime(2026, 3, 28, 9, 30, tzinfo=UTC), False),
        (dt.datetime(2026, 3, 28, 10, 30, tzinfo=UTC), True),
        (dt.datetime(2026, 3, 29, 9, 0, tzinfo=UTC), True),  # exact start
        (dt.datetime(2026, 3, 29, 9, 30, tzinfo=UTC), True),
        (dt.datetime(2026, 3, 29, 10, 30, tzinfo=UTC), False),
        (dt.datetime(2026, 10, 25, 9, 30, tzinfo=UTC), False),
        (dt.datetime(2026, 10, 25, 10, 30, tzinfo=UTC), True),
    ],
)
def test_window_follows_the_zone_across_dst(now, inside):
    constraint = {
        "start": "0 11 * * *",
        "duration": 3600,
        "timezone": "Europe/Paris",
    }
    assert tc.within(constraint, now) is inside


def test_window_spanning_the_spring_gap_is_one_hour_of_real_time():
    constraint = {
        "start": "30 1 * * *",
        "duration": 3600,
        "timezone": "Europe/Paris",
    }
    # 01:30 CET = 00:30 UTC; one hour later is 01:30 UTC (03:30 CEST).
    assert tc.within(constraint, dt.datetime(2026, 3, 29, 1, 15, tzinfo=UTC))
    assert not tc.within(
        constraint, dt.datetime(2026, 3, 29, 1, 45, tzinfo=UTC)
    )


def test_within_any_and_utc_default():
    now = dt.datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    assert tc.within_any([], now)
    noon = {"start": "0 12 * * *", "duration": 900, "timezone": ""}
    night = {"start": "0 0 * * *", "duration": 60, "timezone": None}
    assert tc.within_any([night, noon], now)
    assert not tc.within_any([night], now)


def test_time_constraint_defaults_and_unique_names():
    out = tc.normalize([{"name": "t", "start": "0 1 * * *", "duration": 10}])
    assert out == [
        {
            "name": "t",
            "description": "Time constraint at 0 1 * * * lasting for "
            "10 seconds",
            "start": "0 1 * * *",
            "duration": 10,
            "timezone": "",
        }
    ]
    with pytest.raises(rules.RuleError, match="unique"):
        tc.normalize(
            [
                {"name": "t", "start": "0 1 * * *", "duration": 10},
                {"name": "t", "start": "0 2 * * *", "duration": 10},
            ]
        )


def test_threshold_must_be_finite_even_when_called_directly():
    for value in (float("nan"), float("inf"), -float("inf"), 10**400):
        bad = body()
        bad["gnocchi_resources_threshold_rule"]["threshold"] = value
        with pytest.raises(rules.RuleError) as excinfo:
            rules.validate_alarm(bad)
        assert excinfo.value.field == (
            "gnocchi_resources_threshold_rule.threshold"
        )


def test_limits_bound_the_definition():
    limits = rules.Limits(
        max_description=5,
        max_actions_per_state=2,
        max_actions=3,
        max_metrics=2,
        max_composite_depth=2,
        max_composite_rules=3,
        max_query_depth=3,
    )
    leaf = {"type": "gnocchi_resources_threshold", **RULE}
    cases = [
        (body(description="x" * 6), "description"),
        (body(ok_actions=["log://a", "log://b", "log://c"]), "ok_actions"),
        (
            body(
                ok_actions=["log://a", "log://b"],
                alarm_actions=["log://c", "log://d"],
            ),
            "actions",
        ),
        (
            {
                "name": "m",
                "type": "gnocchi_aggregation_by_metrics_threshold",
                "gnocchi_aggregation_by_metrics_threshold_rule": {
                    "metrics": ["a", "b", "c"],
                    "aggregation_method": "mean",
                    "threshold": 1,
                },
            },
            "gnocchi_aggregation_by_metrics_threshold_rule.metrics",
        ),
        (
            {
                "name": "c",
                "type": "composite",
                "composite_rule": {"or": [{"and": [{"or": [leaf]}]}]},
            },
            "composite_rule.or[0].and[0].or",
        ),
        (
            {
                "name": "c",
                "type": "composite",
                "composite_rule": {"or": [leaf] * 4},
            },
            "composite_rule",
        ),
        (
            {
                "name": "q",
                "type": "gnocchi_aggregation_by_resources_threshold",
                "gnocchi_aggregation_by_resources_threshold_rule": {
                    "metric": "cpu",
                    "resource_type": "instance",
                    "query": '{"and": [{"or": [{"=": {"a": 1}}]}]}',
                    "aggregation_method": "mean",
                    "threshold": 1,
                },
            },
            "gnocchi_aggregation_by_resources_threshold_rule.query",
        ),
    ]
    for bad, field in cases:
        with pytest.raises(rules.RuleError) as excinfo:
            rules.validate_alarm(bad, limits=limits)
        assert excinfo.value.field == field, excinfo.value.message
    ok = {
        "name": "c",
        "type": "composite",
        "composite_rule": {"or": [{"and": [leaf, leaf]}, leaf]},
    }
    assert rules.validate_alarm(ok, limits=limits)["rule"]["or"][1] == {
        **leaf,
        "threshold": 80.0,
        "comparison_operator": "eq",
        "granularity": 60,
        "evaluation_periods": 1,
    }
