"""The opt-in lifecycle rules: M of N, recovery threshold, missing data,
pending, keep firing and repeat interval, each table-tested."""

from __future__ import annotations

import dataclasses
import itertools
import types
from typing import Any

import pytest

from alarmer.alarms import model
from alarmer.evaluator import decide, evaluate, lifecycle, reader
from alarmer.evaluator.decide import NOTHING, REPEAT, TRANSITION, Outcome
from alarmer.evaluator.lifecycle import AODH, Memory, Policy
from alarmer.evaluator.registry import AlarmDef
from alarmer.evaluator.schedule import Schedule

OK, ALARM, UNKNOWN = model.OK, model.ALARM, model.INSUFFICIENT_DATA

RULE: dict[str, Any] = {
    "type": model.BY_METRICS_THRESHOLD,
    "metrics": ["m1"],
    "threshold": 10.0,
    "comparison_operator": "gt",
    "aggregation_method": "mean",
    "granularity": 60,
    "evaluation_periods": 5,
}


def outcome_of(values: tuple[float, ...], rule: dict[str, Any]) -> Outcome:
    return decide.assess(
        values,
        threshold=rule["threshold"],
        comparison_operator=rule["comparison_operator"],
        evaluation_periods=rule["evaluation_periods"],
        granularity=rule["granularity"],
    )


# -- M of N -------------------------------------------------------------------

M_OF_N = [
    # values (oldest first), M, expected state
    ((11, 11, 11, 11, 11), 3, ALARM),
    ((11, 11, 11, 1, 1), 3, ALARM),
    ((11, 1, 11, 1, 11), 3, ALARM),
    ((11, 1, 1, 1, 11), 3, OK),
    ((1, 1, 1, 1, 1), 3, OK),
    ((11, 11, 11, 1, 1), 4, OK),
    ((11, 1, 1, 1, 1), 1, ALARM),
    # Missing points: M breaching is enough, fewer is not known.
    ((11, 11, 11), 3, ALARM),
    ((11, 11, 1), 3, UNKNOWN),
    ((), 3, UNKNOWN),
]


@pytest.mark.parametrize(("values", "m", "expected"), M_OF_N)
def test_datapoints_to_alarm_counts_m_of_n(values, m, expected):
    rule = {**RULE, "datapoints_to_alarm": m}
    raw = outcome_of(tuple(float(v) for v in values), rule)
    got = lifecycle.reassess(rule, raw, OK)
    assert got.state == expected
    assert got.trending is None


def test_without_the_options_the_outcome_is_aodhs():
    for values in ((11.0, 1.0, 11.0, 11.0, 11.0), (11.0,) * 5, (1.0,) * 2):
        raw = outcome_of(values, RULE)
        assert lifecycle.reassess(RULE, raw, ALARM) is raw


def test_m_of_n_equal_to_n_is_aodhs_all_of_n_on_full_windows():
    rule = {**RULE, "datapoints_to_alarm": 5}
    for values in itertools.product((1.0, 11.0), repeat=5):
        raw = outcome_of(values, RULE)
        got = lifecycle.reassess(rule, raw, OK)
        if raw.state in (OK, ALARM):
            assert got.state == raw.state
        else:  # mixed: Aodh has no verdict, M of N says ok
            assert raw.state is None and got.state == OK


# -- recovery threshold -------------------------------------------------------

RECOVERY = [
    # current state, values, expected state (gt 10, recovery 5)
    (ALARM, (8, 8, 8, 8, 8), ALARM),  # below 10 but not below 5
    (ALARM, (4, 4, 4, 4, 4), OK),
    (ALARM, (4, 4, 4, 4, 8), None),  # mixed against 5: no verdict
    (OK, (8, 8, 8, 8, 8), OK),  # out of alarm the threshold decides
    (OK, (11, 11, 11, 11, 11), ALARM),
    (UNKNOWN, (8, 8, 8, 8, 8), OK),
]


@pytest.mark.parametrize(("current", "values", "expected"), RECOVERY)
def test_recovery_threshold_holds_alarm_until_well_inside(
    current, values, expected
):
    rule = {**RULE, "recovery_threshold": 5.0}
    raw = outcome_of(tuple(float(v) for v in values), rule)
    got = lifecycle.reassess(rule, raw, current)
    assert got.state == expected
    decision = decide.transition(
        got,
        current_state=current,
        repeat_actions=False,
        evaluation_periods=5,
    )
    if expected is None or expected == current:
        assert decision.action == NOTHING
    else:
        assert (decision.state, decision.action) == (expected, TRANSITION)


def test_recovery_with_m_of_n_uses_the_recovery_threshold_in_alarm():
    rule = {**RULE, "recovery_threshold": 5.0, "datapoints_to_alarm": 2}
    raw = outcome_of((8.0, 8.0, 4.0, 4.0, 4.0), rule)
    assert lifecycle.reassess(rule, raw, ALARM).state == ALARM
    raw = outcome_of((8.0, 4.0, 4.0, 4.0, 4.0), rule)
    assert lifecycle.reassess(rule, raw, ALARM).state == OK


# -- missing data -------------------------------------------------------------

NO_DATA = decide.insufficient("No datapoint for granularity 60")
SOME_DATA = decide.insufficient("5 datapoints are unknown", (11.0, 11.0))


@pytest.mark.parametrize("outcome", [NO_DATA, SOME_DATA])
@pytest.mark.parametrize(
    ("policy", "expected"),
    [(None, UNKNOWN), ("ok", OK), ("alarm", ALARM), ("keep_last", UNKNOWN)],
)
def test_fill_missing_reads_insufficient_data_as_asked(
    outcome, policy, expected
):
    filled = lifecycle.fill_missing(outcome, policy)
    assert filled.state == expected
    assert filled.values == outcome.values


def test_fill_missing_leaves_data_alone():
    full = outcome_of((11.0,) * 5, RULE)
    assert lifecycle.fill_missing(full, "ok") is full


def test_missing_data_reason_says_so():
    filled = lifecycle.fill_missing(NO_DATA, "ok")
    decision = decide.transition(
        filled,
        current_state=ALARM,
        repeat_actions=False,
        evaluation_periods=5,
    )
    decision = lifecycle.explain(decision, filled)
    assert decision.state == OK and decision.action == TRANSITION
    assert decision.reason == (
        "Transition to ok: No datapoint for granularity 60, missing data "
        "treated as ok"
    )
    assert decision.reason_data["disposition"] == "missing"


# Every (current state, Aodh decision) under keep_last.
KEEP_LAST = [
    (ALARM, decide.Decision(UNKNOWN, "r", {}, TRANSITION), NOTHING, ALARM),
    (OK, decide.Decision(UNKNOWN, "r", {}, TRANSITION), NOTHING, OK),
    (UNKNOWN, decide.Decision(UNKNOWN, "r", {}, REPEAT), REPEAT, UNKNOWN),
    (UNKNOWN, decide.no_verdict(UNKNOWN), NOTHING, UNKNOWN),
    (OK, decide.Decision(ALARM, "r", {}, TRANSITION), TRANSITION, ALARM),
    (ALARM, decide.Decision(OK, "r", {}, TRANSITION), TRANSITION, OK),
]


@pytest.mark.parametrize(("current", "raw", "action", "state"), KEEP_LAST)
def test_keep_last_keeps_the_state_when_data_go_missing(
    current, raw, action, state
):
    policy = Policy(missing_data="keep_last")
    decision, memory = lifecycle.apply(raw, policy, Memory(), current, 100.0)
    assert decision.action == action
    if action != NOTHING:
        assert decision.state == state
    assert memory == Memory()


# -- the transition table is Aodh's when nothing is set -----------------------

OUTCOMES = {
    "alarm": Outcome(ALARM, None, (11.0,) * 5, 5),
    "ok": Outcome(OK, None, (1.0,) * 5, 0),
    "mixed-alarm": Outcome(None, ALARM, (1.0, 11.0), 1),
    "mixed-ok": Outcome(None, OK, (11.0, 1.0), 1),
    "unknown": NO_DATA,
}


@pytest.mark.parametrize("repeat", [False, True])
@pytest.mark.parametrize("current", [OK, ALARM, UNKNOWN])
@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_every_combination_is_aodhs_without_options(name, current, repeat):
    raw = decide.transition(
        OUTCOMES[name],
        current_state=current,
        repeat_actions=repeat,
        evaluation_periods=5,
    )
    memory = Memory(notified_at=50.0)
    got = lifecycle.apply(raw, AODH, memory, current, 100.0, repeat)
    assert got == (raw, memory)
    # Options that do not apply to the case change nothing either.
    policy = Policy(repeat_interval=10, pending_for=0, keep_firing_for=0)
    assert lifecycle.apply(raw, policy, memory, current, 100.0, repeat) == (
        raw,
        memory,
    )


# -- pending_for --------------------------------------------------------------

TO_ALARM = decide.Decision(ALARM, "breach", {}, TRANSITION)
STAY = decide.no_verdict(OK)
TO_OK = decide.Decision(OK, "clear", {}, TRANSITION)


def run(policy, state, steps, repeat=False):
    """Feed (time, Aodh decision) steps; return the committed moves."""
    memory = Memory()
    moves = []
    for now, raw in steps:
        if raw.action == TRANSITION and raw.state == state:
            raw = decide.Decision(raw.state, raw.reason, {}, REPEAT)
        decision, memory = lifecycle.apply(
            raw, policy, memory, state, now, repeat
        )
        if decision.action != NOTHING:
            moves.append((now, decision.state, decision.action))
            memory = memory.after_commit(
                repeat=decision.action == REPEAT, notified=True, now=now
            )
            state = decision.state
    return moves, memory


def test_pending_for_waits_for_the_condition_to_hold():
    policy = Policy(pending_for=120)
    steps = [(t, TO_ALARM) for t in (0, 60, 119)] + [(120, TO_ALARM)]
    moves, _ = run(policy, OK, steps)
    assert moves == [(120, ALARM, TRANSITION)]


def test_pending_for_restarts_when_the_condition_breaks():
    policy = Policy(pending_for=120)
    steps = [(0, TO_ALARM), (60, STAY), (120, TO_ALARM), (180, TO_ALARM)]
    moves, memory = run(policy, OK, steps)
    assert moves == []
    assert memory.pending_since == 120
    moves, _ = run(policy, OK, [*steps, (240, TO_ALARM)])
    assert moves == [(240, ALARM, TRANSITION)]


def test_pending_for_does_not_delay_the_way_out():
    moves, _ = run(Policy(pending_for=600), ALARM, [(0, TO_OK)])
    assert moves == [(0, OK, TRANSITION)]


# -- keep_firing_for ----------------------------------------------------------


def test_keep_firing_for_holds_alarm_after_the_condition_clears():
    policy = Policy(keep_firing_for=300)
    steps = [(0, TO_OK), (100, TO_OK), (299, TO_OK), (300, TO_OK)]
    moves, memory = run(policy, ALARM, steps)
    assert moves == [(300, OK, TRANSITION)]
    assert memory == Memory(notified_at=300)


def test_keep_firing_for_restarts_when_the_condition_returns():
    policy = Policy(keep_firing_for=300)
    again = decide.no_verdict(ALARM)
    steps = [(0, TO_OK), (200, again), (300, TO_OK), (599, TO_OK)]
    moves, memory = run(policy, ALARM, steps)
    assert moves == []
    assert memory.clearing_since == 300


def test_keep_firing_for_repeats_alarm_with_repeat_actions():
    policy = Policy(keep_firing_for=120)
    moves, _ = run(
        policy, ALARM, [(0, TO_OK), (60, TO_OK), (120, TO_OK)], True
    )
    assert moves == [
        (0, ALARM, REPEAT),
        (60, ALARM, REPEAT),
        (120, OK, TRANSITION),
    ]


def test_keep_firing_for_also_holds_alarm_through_missing_data():
    to_unknown = decide.Decision(UNKNOWN, "No datapoint", {}, TRANSITION)
    moves, _ = run(Policy(keep_firing_for=60), ALARM, [(0, to_unknown)])
    assert moves == []


# -- repeat_interval ----------------------------------------------------------


def test_repeat_interval_limits_repeats():
    policy = Policy(repeat_interval=300)
    steps = [(t, TO_ALARM) for t in range(0, 1000, 60)]
    moves, _ = run(policy, OK, steps, repeat=True)
    assert moves == [
        (0, ALARM, TRANSITION),
        (300, ALARM, REPEAT),
        (600, ALARM, REPEAT),
        (900, ALARM, REPEAT),
    ]


def test_without_repeat_interval_every_evaluation_repeats():
    steps = [(t, TO_ALARM) for t in range(0, 300, 60)]
    moves, _ = run(Policy(pending_for=0), OK, steps, repeat=True)
    assert [m[2] for m in moves] == [TRANSITION, *[REPEAT] * 4]


def test_repeat_interval_never_holds_a_transition():
    policy = Policy(repeat_interval=3600)
    steps = [(0, TO_ALARM), (10, TO_OK), (20, TO_ALARM)]
    moves, _ = run(policy, OK, steps, repeat=True)
    assert [m[1:] for m in moves] == [
        (ALARM, TRANSITION),
        (OK, TRANSITION),
        (ALARM, TRANSITION),
    ]


# -- the pure evaluation of an alarm definition -------------------------------


def alarm_def(rule: dict[str, Any], state: str, **kw: Any) -> AlarmDef:
    return AlarmDef(
        alarm_id="a1",
        type=model.BY_METRICS_THRESHOLD,
        rule=rule,
        version=1,
        seq=0,
        state=state,
        name="n",
        severity="low",
        project_id="p",
        ok_actions=(),
        alarm_actions=("log://",),
        insufficient_data_actions=(),
        repeat_actions=kw.pop("repeat", False),
        time_constraints=[],
        targets=[["m1"]],
        subrules=[rule],
        plans=[reader.Plan.of(model.BY_METRICS_THRESHOLD, rule)],
        slot=0.0,
        **kw,
    )


def test_evaluate_at_combines_the_rule_and_alarm_options():
    rule = {**RULE, "datapoints_to_alarm": 2}
    alarm = alarm_def(rule, OK, policy=Policy(pending_for=60))
    two_of_five = outcome_of((1.0, 11.0, 1.0, 11.0, 1.0), RULE)
    decision, memory = evaluate.evaluate_at(
        alarm, lambda *_: two_of_five, 1000.0
    )
    assert decision.action == NOTHING
    assert memory.pending_since == 1000.0
    alarm.memory = memory
    decision, memory = evaluate.evaluate_at(
        alarm, lambda *_: two_of_five, 1060.0
    )
    assert (decision.state, decision.action) == (ALARM, TRANSITION)


def test_evaluate_at_missing_data_in_a_composite_rule():
    sub = {**RULE}
    rule = {"or": [sub]}
    alarm = dataclasses.replace(
        alarm_def(sub, ALARM, policy=Policy(missing_data="ok")),
        type=model.COMPOSITE,
        rule=rule,
    )
    decision, _ = evaluate.evaluate_at(alarm, lambda *_: NO_DATA, 0.0)
    assert (decision.state, decision.action) == (OK, TRANSITION)


def test_policy_and_memory_from_a_row():
    row = types.SimpleNamespace(
        repeat_interval=60,
        missing_data="insufficient_data",
        keep_firing_for=None,
        pending_for=0,
        notified_at=None,
        pending_since=lifecycle.when(5.0),
        clearing_since=None,
    )
    assert Policy.of(row) == Policy(repeat_interval=60.0, pending_for=0.0)
    assert Memory.of(row) == Memory(pending_since=5.0)
    assert Policy.of(object()) == AODH


def test_the_schedule_follows_an_alarms_own_interval():
    schedule = Schedule(60.0)
    own = types.SimpleNamespace(alarm_id="a", slot=2.0, token=0, interval=5.0)
    shared = types.SimpleNamespace(
        alarm_id="b", slot=2.0, token=0, interval=0.0
    )
    assert schedule.next_slot(own, 100.0) == 102.0
    assert schedule.next_slot(shared, 100.0) == 122.0
    alarms = {"a": own, "b": shared}
    schedule.add(own, 102.0)
    schedule.add(shared, 122.0)
    seen = sorted(
        (alarm.alarm_id, due)
        for now in range(100, 125)
        for alarm, due in schedule.pop_due(float(now), alarms.get, 10)
    )
    assert seen == [
        ("a", 102.0),
        ("a", 107.0),
        ("a", 112.0),
        ("a", 117.0),
        ("a", 122.0),
        ("b", 122.0),
    ]
    # A missed slot is skipped by the alarm's own interval.
    assert schedule.pop_due(140.0, alarms.get, 10) == [(own, 137.0)]


def test_a_silenced_alarm_never_repeats():
    breach = outcome_of((11.0,) * 5, RULE)
    clear = outcome_of((1.0,) * 5, RULE)
    alarm = alarm_def(
        {**RULE}, ALARM, repeat=True, policy=Policy(keep_firing_for=60)
    )

    def step(outcome, now):
        decision, alarm.memory = evaluate.evaluate_at(
            alarm, lambda *_: outcome, now
        )
        return decision

    assert step(breach, 0.0).action == REPEAT
    assert step(clear, 0.0).action == REPEAT  # kept firing
    alarm.silenced = ("s1",)
    assert step(clear, 10.0).action == NOTHING
    assert step(breach, 20.0).action == NOTHING
    assert step(clear, 30.0).action == NOTHING  # clearing again from 30
    decision = step(clear, 90.0)
    assert (decision.state, decision.action) == (OK, TRANSITION)
