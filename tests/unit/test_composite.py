"""Composite alarms: Aodh's trees, short-circuit, reasons."""

from __future__ import annotations

import pytest

from alarmer.evaluator import composite
from alarmer.evaluator.decide import ALARM, OK, UNKNOWN, Outcome, insufficient


def sub(name):
    return {
        "type": "gnocchi_resources_threshold",
        "metric": name,
        "threshold": 1,
    }


def outcome(kind):
    if kind == "alarm":
        return Outcome(ALARM, None, (2.0, 2.0, 2.0), 3)
    if kind == "ok":
        return Outcome(OK, None, (0.0, 0.0, 0.0), 0)
    if kind == "up":  # mixed, trending to alarm
        return Outcome(None, ALARM, (0.0, 0.0, 2.0), 1)
    if kind == "down":  # mixed, trending to ok
        return Outcome(None, OK, (2.0, 2.0, 0.0), 2)
    return insufficient("3 datapoints are unknown")


class Data:
    """Sub-rule outcomes by metric name, recording what was read."""

    def __init__(self, **kinds):
        self.kinds = kinds
        self.read = []

    def __call__(self, rule):
        self.read.append(rule["metric"])
        return outcome(self.kinds[rule["metric"]])


def run(rule, current, repeat=False, **kinds):
    data = Data(**kinds)
    return composite.evaluate(rule, data, current, repeat_actions=repeat), data


AND = {"and": [sub("a"), sub("b")]}
OR = {"or": [sub("a"), sub("b")]}

# Aodh's net truth table (from ok/alarm and from insufficient data).
TRUTH = [
    (AND, "alarm", "alarm", ALARM, ALARM),
    (AND, "alarm", "ok", ALARM, OK),
    (AND, "unknown", "alarm", OK, UNKNOWN),
    (AND, "unknown", "ok", ALARM, OK),
    (OR, "unknown", "ok", ALARM, UNKNOWN),
    (OR, "unknown", "alarm", OK, ALARM),
    (OR, "ok", "ok", ALARM, OK),
    (OR, "unknown", "unknown", UNKNOWN, UNKNOWN),
]


@pytest.mark.parametrize(("rule", "a", "b", "current", "state"), TRUTH)
def test_truth_table(rule, a, b, current, state):
    got, _ = run(rule, current, a=a, b=b)
    if state == current:
        assert got.action == "nothing"
    else:
        assert (got.action, got.state) == ("transition", state)


def test_reason_and_data():
    rule = {"or": [sub("a"), {"and": [sub("b"), sub("c")]}]}
    got, _ = run(rule, OK, a="ok", b="alarm", c="alarm")
    assert got.state == ALARM
    assert got.reason == (
        "Composite rule alarm with composition form: "
        "(rule1 or (rule2 and rule3)) transition to alarm, due to rules: "
        "rule2, rule3 outside their threshold."
    )
    assert got.reason_data == {
        "type": "composite",
        "composition_form": "(rule1 or (rule2 and rule3))",
        "causative_rules": {"rule2": sub("b"), "rule3": sub("c")},
    }


def test_ok_reason_and_repeat():
    got, _ = run(AND, ALARM, a="ok", b="ok")
    assert got.reason.endswith(
        "(rule1 and rule2) transition to ok, due to rules: rule1 "
        "inside their threshold."
    )  # rule2 was never read
    got, _ = run(AND, OK, repeat=True, a="ok", b="ok")
    assert got.action == "repeat"
    assert " remaining as ok, due to" in got.reason


def test_unknown_reason_never_repeated():
    got, _ = run(AND, ALARM, a="unknown", b="alarm")
    assert got.state == UNKNOWN
    assert got.reason == (
        "Composite rule alarm with composition form: (rule1 and rule2) "
        "transition to insufficient data, due to rules: rule1 state "
        "evaluated to unknown."
    )
    got, _ = run(AND, UNKNOWN, repeat=True, a="unknown", b="alarm")
    assert got.action == "nothing"


def test_short_circuit_reads_only_what_is_needed():
    rule = {"or": [sub("a"), sub("b"), sub("c")]}
    got, data = run(rule, OK, a="alarm", b="ok", c="ok")
    assert got.state == ALARM
    assert data.read == ["a"]
    rule = {"and": [sub("a"), sub("b"), sub("c")]}
    got, data = run(rule, ALARM, a="ok", b="alarm", c="alarm")
    # alarm tree stops at rule1; the ok tree ("any ok") too.
    assert got.state == OK
    assert data.read == ["a"]


def test_each_sub_rule_read_once():
    rule = {"and": [sub("a"), sub("b")]}
    _, data = run(rule, OK, a="alarm", b="down")
    assert sorted(data.read) == ["a", "b"]


def test_trending_from_unknown_takes_trending_state():
    got, _ = run(AND, UNKNOWN, a="up", b="alarm")
    assert (got.action, got.state) == ("transition", ALARM)


def test_trending_quirk_opposite_state_when_known():
    # From ok: a sub-rule trending to alarm counts as ok (Aodh's quirk).
    got, _ = run(AND, OK, a="up", b="alarm")
    assert got.action == "nothing"
    # From alarm: trending to ok counts as alarm.
    got, _ = run(AND, ALARM, a="down", b="alarm")
    assert got.action == "nothing"
    got, _ = run(OR, ALARM, a="down", b="ok")
    assert got.action == "nothing"


def test_sub_rules_depth_first():
    rule = {"or": [sub("a"), {"and": [sub("b"), {"or": [sub("c")]}]}]}
    assert [r["metric"] for r in composite.sub_rules(rule)] == ["a", "b", "c"]
