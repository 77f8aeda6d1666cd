"""The threshold decision, table-driven against Aodh's semantics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from alarmer.evaluator import decide
from alarmer.evaluator.decide import ALARM, OK, UNKNOWN

NOW = dt.datetime(2026, 11, 26, 12, 0, 30, tzinfo=dt.UTC)
RULE = {
    "threshold": 80,
    "comparison_operator": "gt",
    "evaluation_periods": 3,
    "granularity": 60,
    "aggregation_method": "mean",
}


def points(values, *, end=NOW, granularity=60):
    """Gnocchi-like triples: the last one is the current partial bucket."""
    base = int(end.timestamp()) // granularity * granularity
    start = base - granularity * (len(values) - 1)
    return [
        (
            dt.datetime.fromtimestamp(start + i * granularity, dt.UTC),
            granularity,
            v,
        )
        for i, v in enumerate(values)
    ]


def _reason(verb, state, count, disposition, last):
    return (
        f"{verb} {state} due to {count} samples {disposition} "
        f"threshold, most recent: {last}"
    )


# (values, current state, repeat_actions) -> (action, state, reason)
TABLE = [
    # unequivocal, different state -> transition
    (
        [90, 91, 92],
        OK,
        False,
        "transition",
        ALARM,
        _reason("Transition to", ALARM, 3, "outside", 92.0),
    ),
    (
        [90, 91, 92],
        UNKNOWN,
        False,
        "transition",
        ALARM,
        _reason("Transition to", ALARM, 3, "outside", 92.0),
    ),
    (
        [10, 20, 30],
        ALARM,
        False,
        "transition",
        OK,
        _reason("Transition to", OK, 3, "inside", 30.0),
    ),
    (
        [10, 20, 30],
        UNKNOWN,
        True,
        "transition",
        OK,
        _reason("Transition to", OK, 3, "inside", 30.0),
    ),
    # unequivocal, same state -> nothing, or repeat
    ([90, 91, 92], ALARM, False, "nothing", ALARM, ""),
    (
        [90, 91, 92],
        ALARM,
        True,
        "repeat",
        ALARM,
        _reason("Remaining as", ALARM, 3, "outside", 92.0),
    ),
    (
        [10, 20, 30],
        OK,
        True,
        "repeat",
        OK,
        _reason("Remaining as", OK, 3, "inside", 30.0),
    ),
    # mixed from insufficient data -> the trending state (last point)
    (
        [10, 91, 92],
        UNKNOWN,
        False,
        "transition",
        ALARM,
        _reason("Transition to", ALARM, 2, "outside", 92.0),
    ),
    (
        [90, 91, 30],
        UNKNOWN,
        False,
        "transition",
        OK,
        _reason("Transition to", OK, 1, "inside", 30.0),
    ),
    # mixed from ok/alarm -> hysteresis: stay, or repeat the current state
    ([90, 91, 70], ALARM, False, "nothing", ALARM, ""),
    ([10, 20, 95], OK, False, "nothing", OK, ""),
    (
        [10, 20, 95],
        OK,
        True,
        "repeat",
        OK,
        _reason("Remaining as", OK, 2, "inside", 95.0),
    ),
    (
        [90, 91, 70],
        ALARM,
        True,
        "repeat",
        ALARM,
        _reason("Remaining as", ALARM, 2, "outside", 70.0),
    ),
    # too few points
    ([90, 91], OK, False, "transition", UNKNOWN, "3 datapoints are unknown"),
    (
        [],
        ALARM,
        False,
        "transition",
        UNKNOWN,
        "No datapoint for granularity 60",
    ),
    ([90, 91], UNKNOWN, False, "nothing", UNKNOWN, ""),
    # Aodh's odd repeat of insufficient data
    (
        [],
        UNKNOWN,
        True,
        "repeat",
        UNKNOWN,
        "Remaining as insufficient data due to 0 samples outside threshold, "
        "most recent: None",
    ),
]


@pytest.mark.parametrize(
    ("values", "current", "repeat", "action", "state", "reason"), TABLE
)
def test_transition_table(values, current, repeat, action, state, reason):
    got = decide.evaluate(
        RULE, points(values), current, NOW, repeat_actions=repeat
    )
    assert (got.action, got.state, got.reason) == (action, state, reason)


def test_reason_data_shapes():
    got = decide.evaluate(RULE, points([90, 91, 92]), OK, NOW)
    assert got.reason_data == {
        "type": "threshold",
        "disposition": "outside",
        "count": 3,
        "most_recent": 92.0,
    }
    got = decide.evaluate(RULE, points([10, 91, 30]), UNKNOWN, NOW)
    assert got.reason_data == {
        "type": "threshold",
        "disposition": "inside",
        "count": 2,
        "most_recent": 30.0,
    }
    got = decide.evaluate(RULE, points([90, 91]), OK, NOW)
    assert got.reason_data == {
        "type": "threshold",
        "disposition": "unknown",
        "count": 3,
        "most_recent": 91.0,
    }
    got = decide.evaluate(RULE, points([]), OK, NOW)
    assert got.reason_data["most_recent"] is None


def test_only_the_last_evaluation_periods_count():
    # Four points in the window (start rounded down): the oldest is dropped.
    got = decide.evaluate(RULE, points([10, 90, 91, 92]), OK, NOW)
    assert (got.state, got.reason_data["count"]) == (ALARM, 3)


def test_window_excludes_old_points_and_future():
    # granularity 60, N=3: window 240 s before 12:00:30, start rounded
    # down to 11:56:00; 'now' itself is excluded (stop is exclusive).
    ts = [
        dt.datetime(2026, 11, 26, 11, m, tzinfo=dt.UTC) for m in (55, 56, 57)
    ]
    triples = [(t, 60, 90.0) for t in ts]
    got = decide.evaluate(RULE, triples, OK, NOW)
    assert got.reason == "3 datapoints are unknown"
    later = dt.datetime(2026, 11, 26, 12, 1, tzinfo=dt.UTC)
    triples.append((later, 60, 90.0))
    got = decide.evaluate(RULE, triples, OK, NOW)
    assert got.reason == "3 datapoints are unknown"


def test_window_bounds_in_ns():
    gran = 60 * decide.NS
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    now_ns = int(now.timestamp()) * decide.NS
    ts = np.arange(now_ns - 10 * gran, now_ns + gran, gran, dtype=np.int64)
    vals = np.arange(ts.size, dtype=np.float64)
    got = decide.window_values(
        ts, vals, granularity=60, evaluation_periods=3, now=now
    )
    # The bucket at 'now' is excluded; the last three before it remain.
    assert got == [7.0, 8.0, 9.0]
    # With a lag the window grows but only N values are kept.
    got = decide.window_values(
        ts, vals, granularity=60, evaluation_periods=5, now=now, lag=42
    )
    assert got == [5.0, 6.0, 7.0, 8.0, 9.0]
    got = decide.window_values(
        ts, vals, granularity=60, evaluation_periods=8, now=now
    )
    # window = 9 * 60 s: buckets from now - 540 s (rounded) -> 9 buckets.
    assert got == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]


def test_nan_buckets_are_missing_points():
    now = dt.datetime(2026, 11, 26, 12, 0, 30, tzinfo=dt.UTC)
    base = int(now.timestamp()) // 60 * 60 * decide.NS
    ts = np.array([base - 120 * decide.NS, base - 60 * decide.NS, base])
    vals = np.array([90.0, np.nan, 92.0])
    got = decide.window_values(
        ts, vals, granularity=60, evaluation_periods=3, now=now
    )
    assert got == [90.0, 92.0]


def test_points_of_another_granularity_are_ignored():
    triples = points([90, 91, 92]) + points([1, 2, 3], granularity=300)
    got = decide.evaluate(RULE, triples, OK, NOW)
    assert got.state == ALARM


@pytest.mark.parametrize(
    ("op", "value", "breach"),
    [
        ("gt", 80, False),
        ("gt", 80.5, True),
        ("ge", 80, True),
        ("lt", 80, False),
        ("lt", 79, True),
        ("le", 80, True),
        ("eq", 80, True),
        ("eq", 81, False),
        ("ne", 80, False),
        ("ne", 81, True),
    ],
)
def test_comparison_operators(op, value, breach):
    rule = dict(RULE, comparison_operator=op)
    got = decide.evaluate(rule, points([value] * 3), UNKNOWN, NOW)
    assert got.state == (ALARM if breach else OK)


def test_default_operator_is_eq():
    rule = {k: v for k, v in RULE.items() if k != "comparison_operator"}
    assert decide.evaluate(rule, points([80] * 3), OK, NOW).state == ALARM


def test_insufficient_outcome_from_read_error():
    outcome = decide.insufficient("metric cpu for resource r1 does not exists")
    got = decide.evaluate(RULE, outcome, ALARM, NOW)
    assert got == decide.Decision(
        UNKNOWN,
        "metric cpu for resource r1 does not exists",
        {
            "type": "threshold",
            "disposition": "unknown",
            "count": 3,
            "most_recent": None,
        },
        "transition",
    )
    assert decide.evaluate(RULE, outcome, UNKNOWN, NOW).action == "nothing"


def test_epoch_ns_timestamps_accepted():
    triples = [
        (int(t.timestamp()) * decide.NS, g, v)
        for t, g, v in points([90, 91, 92])
    ]
    assert decide.evaluate(RULE, triples, OK, NOW).state == ALARM
