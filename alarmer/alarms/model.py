"""The vocabulary of alarms: states, types, severities, the rule tree.

Every other module names a state, a type or a severity through this
module, and walks a composite rule through :func:`leaves` and
:func:`fold`.  Pure data and pure functions (no I/O).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

#: The three alarm states, as Aodh names them.
OK = "ok"
ALARM = "alarm"
INSUFFICIENT_DATA = "insufficient data"
STATES = (OK, ALARM, INSUFFICIENT_DATA)

#: Severities, in their semantic order (``sort=severity`` follows it).
SEVERITIES = ("low", "moderate", "critical")

#: Threshold rule types (usable alone or inside a composite rule).
RESOURCES_THRESHOLD = "gnocchi_resources_threshold"
BY_METRICS_THRESHOLD = "gnocchi_aggregation_by_metrics_threshold"
BY_RESOURCES_THRESHOLD = "gnocchi_aggregation_by_resources_threshold"
THRESHOLD_TYPES = (
    RESOURCES_THRESHOLD,
    BY_METRICS_THRESHOLD,
    BY_RESOURCES_THRESHOLD,
)
#: A tree of threshold rules joined by ``and`` / ``or``.
COMPOSITE = "composite"
#: Every alarm type.
ALARM_TYPES = (*THRESHOLD_TYPES, COMPOSITE)

#: Comparison operators of a threshold rule.
COMPARISON_OPERATORS = ("lt", "le", "eq", "ne", "ge", "gt")

#: The two joins of a composite rule.
JOINS = ("and", "or")

#: What an alarm does when its window holds fewer points than it needs
#: (``missing_data``): Aodh's ``insufficient data`` (the default), take
#: ``ok`` or ``alarm``, or keep the last state.
MISSING_INSUFFICIENT = "insufficient_data"
MISSING_OK = "ok"
MISSING_ALARM = "alarm"
MISSING_KEEP_LAST = "keep_last"
MISSING_DATA_POLICIES = (
    MISSING_INSUFFICIENT,
    MISSING_OK,
    MISSING_ALARM,
    MISSING_KEEP_LAST,
)

T = TypeVar("T")


def is_composition(rule: Any) -> bool:
    """True when *rule* is an ``and``/``or`` node rather than a leaf."""
    return (
        isinstance(rule, Mapping)
        and len(rule) == 1
        and next(iter(rule)) in JOINS
        and isinstance(next(iter(rule.values())), list)
    )


def leaves(rule: Any) -> Iterator[Mapping[str, Any]]:
    """Yield the threshold rules of a (composite) rule, depth first.

    A rule that is not a composition is its own only leaf; anything that
    is not a mapping has none.
    """
    if is_composition(rule):
        (items,) = rule.values()
        for item in items:
            yield from leaves(item)
    elif isinstance(rule, Mapping):
        yield rule


def fold(
    rule: Mapping[str, Any],
    leaf: Callable[[Mapping[str, Any]], T],
    join: Callable[[str, Sequence[T]], T],
) -> T:
    """Reduce a composite rule bottom up.

    *leaf* maps each threshold rule (depth first, left to right) to a
    value; *join* combines the values of one node's children with the
    node's word (``and`` or ``or``).
    """
    if is_composition(rule):
        ((word, items),) = rule.items()
        return join(word, [fold(item, leaf, join) for item in items])
    return leaf(rule)
