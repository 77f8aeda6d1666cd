"""One alarm's decision from its definition and its sub-rules' outcomes.

:func:`evaluate` is pure: the caller hands it *assess*, which reads the
data of one threshold (sub-)rule and returns its
:class:`~alarmer.evaluator.decide.Outcome`; the result says whether the
alarm transitions, repeats its notification or stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from alarmer.alarms import model
from alarmer.evaluator import composite, decide, lifecycle, reader
from alarmer.evaluator.decide import Decision, Outcome
from alarmer.evaluator.registry import AlarmDef

#: ``assess(index, rule type, rule)`` -> outcome of threshold rule *index*.
Assess = Callable[[int, str, Mapping[str, Any]], Outcome]


def evaluate(alarm: AlarmDef, assess: Assess) -> Decision:
    """The decision for *alarm* given how each of its rules assesses.

    Aodh's decision, with the per-rule options of
    :mod:`alarmer.evaluator.lifecycle` (M of N, recovery threshold,
    missing data read as ``ok`` or ``alarm``) when the alarm sets them.
    """
    missing = alarm.policy.missing_data

    def adjusted(rule: Mapping[str, Any], outcome: Outcome) -> Outcome:
        outcome = lifecycle.reassess(rule, outcome, alarm.state)
        return lifecycle.fill_missing(outcome, missing)

    if alarm.type == model.COMPOSITE:
        positions = {id(s): i for i, s in enumerate(alarm.subrules)}

        def assess_sub(sub: Mapping[str, Any]) -> Outcome:
            outcome = assess(positions[id(sub)], str(sub.get("type")), sub)
            return adjusted(sub, outcome)

        return composite.evaluate(
            alarm.rule,
            assess_sub,
            alarm.state,
            repeat_actions=alarm.repeat_actions,
        )
    outcome = adjusted(alarm.rule, assess(0, alarm.type, alarm.rule))
    plan = alarm.plans[0] if alarm.plans else None
    periods = plan.periods if isinstance(plan, reader.Plan) else 0
    decision = decide.transition(
        outcome,
        current_state=alarm.state,
        repeat_actions=alarm.repeat_actions,
        evaluation_periods=periods,
    )
    return lifecycle.explain(decision, outcome)


def evaluate_at(
    alarm: AlarmDef, assess: Assess, now: float
) -> tuple[Decision, lifecycle.Memory]:
    """:func:`evaluate`, then the per-alarm lifecycle rules at *now*.

    :param now: evaluation time, seconds since the epoch.
    :returns: the decision to commit and what to remember of the alarm
        (``alarm.memory`` itself when nothing changed).
    """
    decision, memory = lifecycle.apply(
        evaluate(alarm, assess),
        alarm.policy,
        alarm.memory,
        alarm.state,
        now,
        alarm.repeat_actions,
    )
    if alarm.silenced and decision.action == decide.REPEAT:
        # A silence holds re-notifications; its end notifies once.
        decision = decide.no_verdict(alarm.state)
    return decision, memory
