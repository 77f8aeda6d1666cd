"""The pure per-alarm evaluation: definitions and outcomes in, decision out."""

from __future__ import annotations

from typing import Any

from alarmer.alarms import model
from alarmer.evaluator import evaluate, reader
from alarmer.evaluator.decide import NOTHING, REPEAT, TRANSITION, Outcome
from alarmer.evaluator.registry import AlarmDef

RULE = {
    "type": model.BY_METRICS_THRESHOLD,
    "metrics": ["m1"],
    "threshold": 1.0,
    "comparison_operator": "gt",
    "aggregation_method": "mean",
    "granularity": 60,
    "evaluation_periods": 3,
}


def alarm_def(kind: str, rule: dict[str, Any], state: str, **kw) -> AlarmDef:
    subrules = list(model.leaves(rule)) if kind == model.COMPOSITE else [rule]
    return AlarmDef(
        alarm_id="a1",
        type=kind,
        rule=rule,
        version=1,
        seq=0,
        state=state,
        name="n",
        severity="low",
        project_id="p",
        ok_actions=(),
        alarm_actions=(),
        insufficient_data_actions=(),
        repeat_actions=kw.get("repeat", False),
        time_constraints=[],
        targets=[["m1"]] * len(subrules),
        subrules=subrules,  # type: ignore[arg-type]
        plans=[reader.Plan.of(str(s.get("type", kind)), s) for s in subrules],
        slot=0.0,
    )


BREACH = Outcome(model.ALARM, None, (2.0, 2.0, 2.0), 3)
CLEAR = Outcome(model.OK, None, (0.0, 0.0, 0.0), 0)


def test_threshold_alarm_transitions_with_its_periods():
    seen: list[tuple[int, str]] = []

    def assess(index, kind, rule):
        seen.append((index, kind))
        assert rule is RULE
        return BREACH

    alarm = alarm_def(model.BY_METRICS_THRESHOLD, RULE, model.OK)
    decision = evaluate.evaluate(alarm, assess)
    assert decision.action == TRANSITION
    assert decision.state == model.ALARM
    assert seen == [(0, model.BY_METRICS_THRESHOLD)]
    assert decision.reason == (
        "Transition to alarm due to 3 samples outside threshold, "
        "most recent: 2.0"
    )
    assert decision.reason_data["count"] == 3


def test_unchanged_state_is_nothing_or_repeat():
    alarm = alarm_def(model.BY_METRICS_THRESHOLD, RULE, model.ALARM)
    assert evaluate.evaluate(alarm, lambda *a: BREACH).action == NOTHING
    repeating = alarm_def(
        model.BY_METRICS_THRESHOLD, RULE, model.ALARM, repeat=True
    )
    assert evaluate.evaluate(repeating, lambda *a: BREACH).action == REPEAT


def test_composite_assesses_each_leaf_by_its_position():
    second = dict(RULE, metrics=["m2"])
    rule = {"and": [RULE, {"or": [second, dict(RULE, metrics=["m3"])]}]}
    alarm = alarm_def(model.COMPOSITE, rule, model.OK)
    seen: list[int] = []

    def assess(index, kind, sub):
        seen.append(index)
        assert sub is alarm.subrules[index]
        assert kind == model.BY_METRICS_THRESHOLD
        return BREACH if index in (0, 1) else CLEAR

    decision = evaluate.evaluate(alarm, assess)
    assert decision.action == TRANSITION
    assert decision.state == model.ALARM
    # "rule1 and (rule2 or rule3)": rule3 is not needed once rule2 breaches
    assert seen == [0, 1]
    assert decision.reason_data["composition_form"] == (
        "(rule1 and (rule2 or rule3))"
    )
