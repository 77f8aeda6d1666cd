"""The decision: an alarm's next state from its rule, points and state.

Pure functions, no I/O, reproducing Aodh's threshold evaluator exactly:

* the look-back window is ``granularity * (evaluation_periods + 1) +
  additional_ingestion_lag`` seconds before *now*; its start is rounded
  down to the granularity and *now* is excluded (Gnocchi's ``start`` /
  ``stop``), so the current partial bucket takes part;
* of the points of exactly the rule's granularity in that window the last
  ``evaluation_periods`` are kept (none: ``No datapoint for granularity
  <g>``; fewer: ``<N> datapoints are unknown``);
* all points breach -> ``alarm``, none -> ``ok``; mixed -> no verdict but
  a *trending* state (the last point's);
* :func:`transition` applies Aodh's transition table (hysteresis,
  ``repeat_actions``, the ``insufficient data`` special cases) and builds
  Aodh's reason strings and ``reason_data``.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from alarmer.alarms import model

OK = model.OK
ALARM = model.ALARM
UNKNOWN = model.INSUFFICIENT_DATA

#: ``comparison_operator`` -> comparison of a value against the threshold.
COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "lt": operator.lt,
    "ge": operator.ge,
    "le": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}

NS = 1_000_000_000

# What :class:`Decision.action` asks the caller to do.
NOTHING = "nothing"
TRANSITION = "transition"
REPEAT = "repeat"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What the points of one threshold rule say, before the transition.

    :ivar state: ``alarm`` / ``ok`` when unequivocal, ``insufficient
        data`` when the data are missing, ``None`` when mixed.
    :ivar trending: for a mixed verdict, the state of the last point.
    :ivar values: the points considered (oldest first).
    :ivar outside: how many of them breach the threshold.
    :ivar unknown_reason: Aodh's text when the data are insufficient.
    """

    state: str | None
    trending: str | None
    values: tuple[float, ...]
    outside: int = 0
    unknown_reason: str | None = None


class Decision(NamedTuple):
    """The result of an evaluation.

    ``action`` is :data:`TRANSITION` (commit *state* with *reason*),
    :data:`REPEAT` (re-notify the unchanged state, ``repeat_actions``) or
    :data:`NOTHING` (then *state* is the current state and *reason* is
    empty).
    """

    state: str
    reason: str
    reason_data: dict[str, Any]
    action: str = NOTHING


def insufficient(reason: str, values: Sequence[float] = ()) -> Outcome:
    """Outcome of a rule whose data are missing or unreadable."""
    return Outcome(UNKNOWN, None, tuple(values), 0, reason)


def no_verdict(state: str) -> Decision:
    """A decision that changes and sends nothing."""
    return Decision(state, "", {}, NOTHING)


def select_window(
    timestamps_ns: np.ndarray | Sequence[int],
    values: np.ndarray | Sequence[float],
    *,
    gran_ns: int,
    periods: int,
    now_ns: int,
    lag_ns: int = 0,
) -> list[float]:
    """:func:`window_values` with everything in integer nanoseconds."""
    start_ns = (now_ns - gran_ns * (periods + 1) - lag_ns) // gran_ns * gran_ns
    ts = (
        timestamps_ns.tolist()
        if isinstance(timestamps_ns, np.ndarray)
        else (list(timestamps_ns))
    )
    vals = values.tolist() if isinstance(values, np.ndarray) else list(values)
    lo = bisect.bisect_left(ts, start_ns)
    hi = bisect.bisect_left(ts, now_ns, lo)
    # NaN (a bucket without data) is not a point: NaN != NaN.
    selected = [v for v in vals[lo:hi] if v == v]  # noqa: PLR0124
    return selected[-periods:] if selected else []


def window_values(
    timestamps_ns: np.ndarray | Sequence[int],
    values: np.ndarray | Sequence[float],
    *,
    granularity: float,
    evaluation_periods: int,
    now: dt.datetime,
    lag: float = 0,
) -> list[float]:
    """Select the values Aodh would read for a threshold rule.

    *timestamps_ns* are the bucket starts (ns since the epoch, ascending)
    of *values*, all of the rule's *granularity* (seconds).  Keeps the
    buckets in ``[floor(now - window), now)`` and returns the last
    *evaluation_periods* of them.  NaN values (buckets without data) are
    dropped, as Gnocchi does not return them.
    """
    return select_window(
        timestamps_ns,
        values,
        gran_ns=round(granularity * NS),
        periods=evaluation_periods,
        now_ns=to_ns(now),
        lag_ns=round(lag * NS),
    )


def assess(
    values: Sequence[float],
    *,
    threshold: float,
    comparison_operator: str,
    evaluation_periods: int,
    granularity: float,
) -> Outcome:
    """Compare the selected *values* with the threshold (Aodh's logic).

    *values* are those returned by :func:`window_values` (at most
    *evaluation_periods*, oldest first).
    """
    if not values:
        return insufficient(
            f"No datapoint for granularity {_number(granularity)}"
        )
    values = tuple(values[-evaluation_periods:])
    if len(values) < evaluation_periods:
        return insufficient(
            f"{evaluation_periods} datapoints are unknown", values
        )
    compare = COMPARATORS[comparison_operator]
    compared = [compare(v, threshold) for v in values]
    outside = sum(compared)
    if outside == len(compared):
        return Outcome(ALARM, None, values, outside)
    if outside == 0:
        return Outcome(OK, None, values, outside)
    trending = ALARM if compared[-1] else OK
    return Outcome(None, trending, values, outside)


def reason_data(
    disposition: str, count: int, most_recent: float | None
) -> dict[str, Any]:
    """Aodh's ``reason_data`` of a threshold rule."""
    return {
        "type": "threshold",
        "disposition": disposition,
        "count": count,
        "most_recent": most_recent,
    }


def _reason(
    current_state: str, outcome: Outcome, state: str
) -> tuple[str, dict[str, Any]]:
    if state == OK:
        disposition = "inside"
        count = len(outcome.values) - outcome.outside
    else:
        disposition = "outside"
        count = outcome.outside
    last = outcome.values[-1] if outcome.values else None
    data = reason_data(disposition, count, last)
    verb = "Transition to" if current_state != state else "Remaining as"
    text = (
        f"{verb} {state} due to {count} samples {disposition} threshold, "
        f"most recent: {last}"
    )
    return text, data


def transition(
    outcome: Outcome,
    *,
    current_state: str,
    repeat_actions: bool,
    evaluation_periods: int,
) -> Decision:
    """Apply Aodh's transition table to an :class:`Outcome`.

    ============== ================= ======== ============================
    outcome        current           repeat   decision
    ============== ================= ======== ============================
    alarm/ok       other             any      transition
    alarm/ok       same              no       nothing
    alarm/ok       same              yes      repeat ("Remaining as")
    mixed          insufficient data any      transition to trending
    mixed          ok/alarm          no       nothing (hysteresis)
    mixed          ok/alarm          yes      repeat current state
    insufficient   ok/alarm          any      transition (Aodh's reason)
    insufficient   insufficient data no       nothing
    insufficient   insufficient data yes      repeat ("Remaining as")
    ============== ================= ======== ============================
    """
    unknown = current_state == UNKNOWN
    state = outcome.state
    if outcome.trending is not None:
        if unknown or repeat_actions:
            target = outcome.trending if unknown else current_state
            text, data = _reason(current_state, outcome, target)
            return _decided(current_state, target, text, data)
        return no_verdict(current_state)
    if state == UNKNOWN and not unknown:
        last = outcome.values[-1] if outcome.values else None
        data = reason_data("unknown", evaluation_periods, last)
        return Decision(
            UNKNOWN, outcome.unknown_reason or "", data, TRANSITION
        )
    if state is not None and (current_state != state or repeat_actions):
        text, data = _reason(current_state, outcome, state)
        return _decided(current_state, state, text, data)
    return no_verdict(current_state)


def _decided(
    current_state: str, state: str, text: str, data: dict[str, Any]
) -> Decision:
    action = TRANSITION if state != current_state else REPEAT
    return Decision(state, text, data, action)


def assess_rule(
    rule: Mapping[str, Any],
    timestamps_ns: np.ndarray | Sequence[int],
    values: np.ndarray | Sequence[float],
    now: dt.datetime,
    *,
    lag: float = 0,
) -> Outcome:
    """Outcome of a threshold *rule* on one aggregated series."""
    periods = int(rule["evaluation_periods"])
    granularity = float(rule["granularity"])
    selected = window_values(
        timestamps_ns,
        values,
        granularity=granularity,
        evaluation_periods=periods,
        now=now,
        lag=lag,
    )
    return assess(
        selected,
        threshold=float(rule["threshold"]),
        comparison_operator=rule.get("comparison_operator") or "eq",
        evaluation_periods=periods,
        granularity=granularity,
    )


def evaluate(
    rule: Mapping[str, Any],
    points: Iterable[tuple[Any, float, float]] | Outcome,
    current_state: str,
    now: dt.datetime,
    *,
    repeat_actions: bool = False,
    lag: float = 0,
) -> Decision:
    """Decide the next state of a threshold alarm.

    :param rule: the alarm's rule (``threshold``, ``comparison_operator``,
        ``evaluation_periods``, ``granularity`` in seconds).
    :param points: ``(timestamp, granularity, value)`` triples as Gnocchi
        returns them (timestamp: aware datetime or ns since the epoch),
        or an already computed :class:`Outcome` (e.g. from
        :func:`insufficient` when the data could not be read).
    :param current_state: the alarm's state before this evaluation.
    :param now: aware evaluation time.
    :param repeat_actions: the alarm's ``repeat_actions``.
    :param lag: ``[DEFAULT] additional_ingestion_lag`` in seconds.
    """
    periods = int(rule["evaluation_periods"])
    if isinstance(points, Outcome):
        outcome = points
    else:
        granularity = float(rule["granularity"])
        kept = sorted(
            (to_ns(ts), float(value))
            for ts, gran, value in points
            if math.isclose(float(gran), granularity)
        )
        outcome = assess_rule(
            rule,
            [ts for ts, _ in kept],
            [value for _, value in kept],
            now,
            lag=lag,
        )
    return transition(
        outcome,
        current_state=current_state,
        repeat_actions=repeat_actions,
        evaluation_periods=periods,
    )


def to_ns(value: Any) -> int:
    """Nanoseconds since the epoch of a datetime (naive = UTC) or int."""
    if isinstance(value, dt.datetime):
        when = value
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86400 + delta.seconds) * NS + (
            delta.microseconds * 1000
        )
    return int(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
