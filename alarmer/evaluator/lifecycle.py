"""Opt-in lifecycle rules layered on Aodh's decision (pure, no I/O).

Every rule here is off unless the alarm asks for it; with all of them
off the decision is Aodh's, unchanged.

Per threshold rule (applied to its :class:`~decide.Outcome` before the
transition table):

* ``datapoints_to_alarm`` (M of N, as CloudWatch defines it): ``alarm``
  when at least M of the ``evaluation_periods`` points breach, even if
  some of the N are missing; ``ok`` when fewer than M breach and all N
  are present; otherwise the data are insufficient.  There is no mixed
  verdict.
* ``recovery_threshold`` (hysteresis): while the alarm is in ``alarm``,
  points are compared with the recovery threshold instead of the
  threshold, so that the way back to ``ok`` needs them well inside.
* ``missing_data`` = ``ok`` / ``alarm``: insufficient data count as that
  state (``keep_last`` and the default are decided on the alarm, below).

Per alarm (applied to the :class:`~decide.Decision`, with what the
evaluator remembers in a :class:`Memory`):

* ``missing_data`` = ``keep_last``: a move to ``insufficient data`` is
  dropped; the alarm keeps its state.
* ``pending_for`` (Prometheus' ``for``): a move to ``alarm`` happens only
  once the condition has held this many seconds, measured from the first
  evaluation that saw it; any evaluation that does not see it restarts
  the count.
* ``keep_firing_for`` (Prometheus' meaning): a move out of ``alarm``
  happens only once the condition has been clear this many seconds; an
  evaluation that sees it again restarts the count.  While kept, a
  ``repeat_actions`` alarm re-notifies ``alarm``.
* ``repeat_interval``: with ``repeat_actions``, an unchanged state is
  re-notified at most once per this many seconds (Aodh: at every
  evaluation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from alarmer.alarms import model
from alarmer.evaluator import decide
from alarmer.evaluator.decide import Decision, Outcome

OK = model.OK
ALARM = model.ALARM
UNKNOWN = model.INSUFFICIENT_DATA


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The lifecycle options of one alarm (``None``: off)."""

    repeat_interval: float | None = None
    missing_data: str | None = None
    keep_firing_for: float | None = None
    pending_for: float | None = None

    @classmethod
    def of(cls, row: Any) -> Policy:
        """The options of an alarm row (or anything with its columns)."""

        def seconds(name: str) -> float | None:
            value = getattr(row, name, None)
            return None if value is None else float(value)

        missing = getattr(row, "missing_data", None)
        return cls(
            repeat_interval=seconds("repeat_interval"),
            missing_data=None
            if missing in (None, model.MISSING_INSUFFICIENT)
            else str(missing),
            keep_firing_for=seconds("keep_firing_for"),
            pending_for=seconds("pending_for"),
        )


#: Aodh's behaviour.
AODH = Policy()


@dataclasses.dataclass(frozen=True, slots=True)
class Memory:
    """What the evaluator remembers of an alarm between evaluations.

    Times are seconds since the epoch (``None``: not applicable).

    :ivar notified_at: when the current state was last notified.
    :ivar pending_since: since when the condition holds while the alarm
        waits out ``pending_for``.
    :ivar clearing_since: since when the condition is clear while the
        alarm is kept in ``alarm`` by ``keep_firing_for``.
    """

    notified_at: float | None = None
    pending_since: float | None = None
    clearing_since: float | None = None

    @classmethod
    def of(cls, row: Any) -> Memory:
        """The memory stored in an alarm row (aware datetimes)."""

        def stamp(name: str) -> float | None:
            value = getattr(row, name, None)
            return None if value is None else float(value.timestamp())

        return cls(
            stamp("notified_at"),
            stamp("pending_since"),
            stamp("clearing_since"),
        )

    def after_commit(
        self, *, repeat: bool, notified: bool, now: float
    ) -> Memory:
        """The memory once a transition (or a repeat) was committed.

        A transition starts the new state afresh (nothing pending or
        clearing); a repeat keeps the counts running.
        """
        notified_at = now if notified else self.notified_at
        if repeat:
            return dataclasses.replace(self, notified_at=notified_at)
        return Memory(notified_at if notified else None)


#: Nothing remembered.
FORGOTTEN = Memory()


# -- per threshold rule ------------------------------------------------------


def reassess(
    rule: Mapping[str, Any], outcome: Outcome, current_state: str
) -> Outcome:
    """Apply ``datapoints_to_alarm`` and ``recovery_threshold``.

    *outcome* is Aodh's, from the rule's points; without either option it
    is returned as is.  Insufficient data without points stay as they
    are (there is nothing to count).
    """
    m_of_n = rule.get("datapoints_to_alarm")
    recovery = rule.get("recovery_threshold")
    if m_of_n is None and recovery is None:
        return outcome
    if not outcome.values:
        return outcome
    periods = int(rule["evaluation_periods"])
    threshold = float(rule["threshold"])
    if recovery is not None and current_state == ALARM:
        threshold = float(recovery)
    compare = decide.COMPARATORS[rule.get("comparison_operator") or "eq"]
    values = outcome.values[-periods:]
    compared = [compare(v, threshold) for v in values]
    outside = sum(compared)
    complete = len(values) >= periods
    if m_of_n is None:
        if not complete:
            return outcome
        if outside == len(compared):
            return Outcome(ALARM, None, values, outside)
        if outside == 0:
            return Outcome(OK, None, values, outside)
        trending = ALARM if compared[-1] else OK
        return Outcome(None, trending, values, outside)
    if outside >= int(m_of_n):
        return Outcome(ALARM, None, values, outside)
    if complete:
        return Outcome(OK, None, values, outside)
    return outcome


def fill_missing(outcome: Outcome, missing_data: str | None) -> Outcome:
    """Read insufficient data as ``ok`` or ``alarm`` when asked to.

    The outcome keeps its points and its reason for being insufficient
    (:func:`explain` uses it).
    """
    if outcome.state != UNKNOWN or missing_data not in (OK, ALARM):
        return outcome
    outside = len(outcome.values) if missing_data == ALARM else 0
    return Outcome(
        missing_data,
        None,
        outcome.values,
        outside,
        outcome.unknown_reason or "No datapoint",
    )


def explain(decision: Decision, outcome: Outcome) -> Decision:
    """Say in a decision's reason that missing data decided it."""
    if decision.action == decide.NOTHING or outcome.unknown_reason is None:
        return decision
    if outcome.state not in (OK, ALARM):
        return decision
    verb = (
        "Transition to"
        if decision.action == decide.TRANSITION
        else ("Remaining as")
    )
    last = outcome.values[-1] if outcome.values else None
    text = (
        f"{verb} {decision.state}: {outcome.unknown_reason}, missing data "
        f"treated as {decision.state}"
    )
    data = decide.reason_data("missing", len(outcome.values), last)
    return Decision(decision.state, text, data, decision.action)


# -- per alarm ---------------------------------------------------------------


def apply(  # noqa: PLR0917 (each input is one thing the rules need)
    decision: Decision,
    policy: Policy,
    memory: Memory,
    current_state: str,
    now: float,
    repeat_actions: bool = False,
) -> tuple[Decision, Memory]:
    """Apply the per-alarm rules to Aodh's *decision* at *now*.

    :returns: the decision to commit and the memory to keep (equal to
        *memory* when nothing needs remembering).
    """
    if policy == AODH:
        return decision, memory
    moving = decision.action == decide.TRANSITION
    if (
        policy.missing_data == model.MISSING_KEEP_LAST
        and decision.state == UNKNOWN
        and current_state in (OK, ALARM)
    ):
        decision, moving = decide.no_verdict(current_state), False
    if policy.pending_for:
        decision, memory = _pending(
            decision, moving, policy, memory, now, current_state
        )
        moving = decision.action == decide.TRANSITION
    if policy.keep_firing_for and current_state == ALARM:
        decision, memory = _keep_firing(
            decision, moving, policy, memory, now, repeat_actions
        )
    if (
        policy.repeat_interval
        and decision.action == decide.REPEAT
        and memory.notified_at is not None
        and now - memory.notified_at < policy.repeat_interval
    ):
        decision = decide.no_verdict(current_state)
    return decision, memory


def _pending(  # noqa: PLR0917
    decision: Decision,
    moving: bool,
    policy: Policy,
    memory: Memory,
    now: float,
    current_state: str,
) -> tuple[Decision, Memory]:
    assert policy.pending_for
    if not (moving and decision.state == ALARM):
        if memory.pending_since is not None:
            memory = dataclasses.replace(memory, pending_since=None)
        return decision, memory
    since = memory.pending_since
    if since is None:
        since = now
        memory = dataclasses.replace(memory, pending_since=now)
    if now - since >= policy.pending_for:
        return decision, memory
    # Not yet: the alarm stays as it is.
    return decide.no_verdict(current_state), memory


def _keep_firing(  # noqa: PLR0917
    decision: Decision,
    moving: bool,
    policy: Policy,
    memory: Memory,
    now: float,
    repeat_actions: bool,
) -> tuple[Decision, Memory]:
    assert policy.keep_firing_for
    if not moving:
        if memory.clearing_since is not None:
            memory = dataclasses.replace(memory, clearing_since=None)
        return decision, memory
    since = memory.clearing_since
    if since is None:
        since = now
        memory = dataclasses.replace(memory, clearing_since=now)
    if now - since >= policy.keep_firing_for:
        return decision, memory
    if not repeat_actions:
        return decide.no_verdict(ALARM), memory
    text = (
        f"Remaining as alarm: condition clear for {now - since:.0f} s, "
        f"kept firing for {policy.keep_firing_for:.0f} s"
    )
    data = {**decision.reason_data, "keep_firing_for": policy.keep_firing_for}
    return Decision(ALARM, text, data, decide.REPEAT), memory


def when(stamp: float | None) -> dt.datetime | None:
    """The aware UTC datetime of a memory time (``None`` stays)."""
    return None if stamp is None else dt.datetime.fromtimestamp(stamp, dt.UTC)
