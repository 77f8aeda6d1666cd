"""Composite alarms: Aodh's alarm tree and ok tree, evaluated lazily.

A composite rule is ``{"and": [...]}`` or ``{"or": [...]}`` whose items
are threshold sub-rules (with their ``type``) or nested compositions.
Sub-rules are named ``rule1``, ``rule2``... in depth-first order.  Two
boolean trees are built: the *alarm tree* (``and``: every sub-rule in
alarm, ``or``: any) and its dual *ok tree* (``and``: any sub-rule ok,
``or``: every one).  A sub-rule's data are read only when a tree needs
it (short-circuit), through the *assess* callback.

Passes, as Aodh:

1. alarm tree true -> ``alarm``; else ok tree true -> ``ok``;
2. otherwise every sub-rule is evaluated; a sub-rule with a mixed
   (trending) verdict takes its trending state when the composite is in
   ``insufficient data``, else the *opposite* of its trending state (an
   Aodh quirk kept for compatibility); both trees are checked again;
3. still nothing -> ``insufficient data`` (only when not already there;
   never repeated).

Pure: no I/O besides what *assess* does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alarmer.alarms import model
from alarmer.evaluator import decide
from alarmer.evaluator.decide import ALARM, OK, UNKNOWN, Decision, Outcome

#: Suffix of the reason per resulting state.
STATE_CHANGE = {
    ALARM: "outside their threshold.",
    OK: "inside their threshold.",
    UNKNOWN: "state evaluated to unknown.",
}

Assess = Callable[[Mapping[str, Any]], Outcome]


class _Target:
    """One sub-rule; evaluated at most once, on first need."""

    __slots__ = ("assess", "evaluated", "name", "rule", "state", "trending")

    def __init__(self, rule: Mapping[str, Any], name: str, assess: Assess):
        self.rule = rule
        self.name = name
        self.assess = assess
        self.state: str | None = None
        self.trending: str | None = None
        self.evaluated = False

    def evaluate(self) -> None:
        if not self.evaluated:
            outcome = self.assess(self.rule)
            self.state = outcome.state
            self.trending = outcome.trending
            self.evaluated = True


class _Leaf:
    __slots__ = ("target", "wanted")

    def __init__(self, target: _Target, wanted: str):
        self.target = target
        self.wanted = wanted

    def __bool__(self) -> bool:
        self.target.evaluate()
        return self.target.state == self.wanted

    def __str__(self) -> str:
        return self.target.name


class _Op:
    __slots__ = ("items", "word")

    def __init__(self, word: str, items: tuple[Any, ...]):
        self.word = word
        self.items = items

    def __bool__(self) -> bool:
        if self.word == "and":
            return all(self.items)
        return any(self.items)

    def __str__(self) -> str:
        return "(" + f" {self.word} ".join(str(i) for i in self.items) + ")"


is_composition = model.is_composition


def _parse(
    rule: Mapping[str, Any], assess: Assess, targets: list[_Target]
) -> tuple[Any, Any]:
    def leaf(sub: Mapping[str, Any]) -> tuple[Any, Any]:
        target = _Target(sub, f"rule{len(targets) + 1}", assess)
        targets.append(target)
        return _Leaf(target, ALARM), _Leaf(target, OK)

    def join(word: str, parsed: Sequence[tuple[Any, Any]]) -> tuple[Any, Any]:
        alarms = tuple(p[0] for p in parsed)
        oks = tuple(p[1] for p in parsed)
        dual = "or" if word == "and" else "and"
        return _Op(word, alarms), _Op(dual, oks)

    return model.fold(rule, leaf, join)


def sub_rules(rule: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The threshold sub-rules of a composite rule, depth first."""
    return list(model.leaves(rule))


def _reason(
    current_state: str, state: str, tree: Any, targets: list[_Target]
) -> tuple[str, dict[str, Any]]:
    causes = {t.name: dict(t.rule) for t in targets if t.state == state}
    form = str(tree)
    verb = "transition to" if current_state != state else "remaining as"
    text = (
        f"Composite rule alarm with composition form: {form} {verb} "
        f"{state}, due to rules: {', '.join(sorted(causes))} "
        f"{STATE_CHANGE[state]}"
    )
    data = {
        "type": "composite",
        "composition_form": form,
        "causative_rules": causes,
    }
    return text, data


def evaluate(
    rule: Mapping[str, Any],
    assess: Assess,
    current_state: str,
    *,
    repeat_actions: bool = False,
) -> Decision:
    """Decide the next state of a composite alarm.

    :param assess: returns the :class:`Outcome` of a threshold sub-rule
        (reading its data); called at most once per sub-rule and only when
        needed.
    """
    targets: list[_Target] = []
    alarm_tree, ok_tree = _parse(rule, assess, targets)

    def conclude() -> Decision | None:
        for target in targets:
            if target.trending is not None:
                if current_state == UNKNOWN:
                    target.state = target.trending
                elif target.trending == ALARM:
                    target.state = OK
                else:
                    target.state = ALARM
        for state, tree in ((ALARM, alarm_tree), (OK, ok_tree)):
            if bool(tree):
                if state == current_state and not repeat_actions:
                    return decide.no_verdict(current_state)
                text, data = _reason(current_state, state, alarm_tree, targets)
                action = (
                    decide.TRANSITION
                    if state != current_state
                    else decide.REPEAT
                )
                return Decision(state, text, data, action)
        return None

    decision = conclude()
    if decision is None:
        for target in targets:
            target.evaluate()
        decision = conclude()
    if decision is not None:
        return decision
    if current_state != UNKNOWN:
        text, data = _reason(current_state, UNKNOWN, alarm_tree, targets)
        return Decision(UNKNOWN, text, data, decide.TRANSITION)
    return decide.no_verdict(current_state)
