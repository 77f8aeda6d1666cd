"""Archive policies and their rules in the index.

The value types (:class:`Rule`, the stored shape of an
:class:`~alarmer.metrics.policy.ArchivePolicy`), the matching of a
metric name against the rules in Gnocchi's order, and the statements on
the ``archive_policy`` and ``archive_policy_rule`` tables, run in the
caller's transaction.  :class:`alarmer.metrics.index.indexer.Indexer`
is what the rest of alarmer calls (it also caches the policies).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer.metrics import policy as ap
from alarmer.metrics.index.errors import (
    ArchivePolicyAlreadyExists,
    ArchivePolicyInUse,
    ArchivePolicyRuleAlreadyExists,
    NoArchivePolicyForMetric,
    NoSuchArchivePolicy,
    NoSuchArchivePolicyRule,
    UnsupportedArchivePolicyChange,
)
from alarmer.metrics.index.schema import (
    ArchivePolicyRow,
    ArchivePolicyRule,
    Metric,
)

NS = ap.NS


@dataclasses.dataclass(frozen=True)
class Rule:
    """An archive policy rule."""

    name: str
    archive_policy_name: str
    metric_pattern: str

    def to_dict(self) -> dict[str, str]:
        """Gnocchi's JSON shape of a rule."""
        return {
            "name": self.name,
            "archive_policy_name": self.archive_policy_name,
            "metric_pattern": self.metric_pattern,
        }


def policy_to_row(policy: ap.ArchivePolicy) -> dict[str, Any]:
    """Column values storing *policy*."""
    return {
        "name": policy.name,
        "back_window": policy.back_window,
        "definition": [item.to_dict() for item in policy.definition],
        "aggregation_methods": sorted(policy.aggregation_methods),
    }


def policy_from_row(
    name: str,
    back_window: int,
    definition: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
) -> ap.ArchivePolicy:
    """Rebuild an :class:`ArchivePolicy` from its stored columns."""
    items = tuple(
        ap.PolicyItem(
            granularity=round(float(item["granularity"]) * NS),
            points=(
                None if item.get("points") is None else int(item["points"])
            ),
        )
        for item in definition
    )
    return ap.ArchivePolicy(
        name=name,
        definition=items,
        aggregation_methods=tuple(methods),
        back_window=int(back_window),
    )


def match_rule(rules: Iterable[Rule], metric_name: str | None) -> Rule | None:
    """The first rule matching *metric_name* in Gnocchi's order.

    Rules are tried by ``metric_pattern`` descending then ``name``
    ascending, with :func:`fnmatch.fnmatch`; a metric without a name is
    matched as the empty string.
    """
    ordered = sorted(rules, key=lambda r: r.name)
    ordered.sort(key=lambda r: r.metric_pattern, reverse=True)
    name = metric_name or ""
    for rule in ordered:
        if fnmatch.fnmatch(name, rule.metric_pattern):
            return rule
    return None


def choose(
    session: orm.Session, metric_name: str | None, given: str | None
) -> str:
    """Name of the policy of a new metric: *given*, or the rules' choice.

    A *given* name is returned unchecked (the insert checks it).

    :raises NoArchivePolicyForMetric: none given and no rule matches.
    """
    if given is not None:
        return given
    rule = match_rule(select_rules(session), metric_name)
    if rule is None:
        raise NoArchivePolicyForMetric(metric_name)
    return rule.archive_policy_name


def _rule_order(rules: list[Rule]) -> list[Rule]:
    ordered = sorted(rules, key=lambda r: r.name)
    ordered.sort(key=lambda r: r.metric_pattern, reverse=True)
    return ordered


def policy_of_row(row: ArchivePolicyRow) -> ap.ArchivePolicy:
    """The :class:`ArchivePolicy` a row stores."""
    return policy_from_row(
        row.name, row.back_window, row.definition, row.aggregation_methods
    )


class PolicyCache:
    """A small bounded mapping whose entries expire (thread-safe).

    Keeps the archive policies by name; an entry is trusted *ttl*
    seconds, at most *maxsize* are kept (least recently used out).
    """

    def __init__(self, maxsize: int, ttl: float) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._data: OrderedDict[str, tuple[float, ap.ArchivePolicy]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> ap.ArchivePolicy | None:
        """The policy cached under *key* if still fresh, else None."""
        now = time.monotonic()
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry[0] < now:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: ap.ArchivePolicy) -> None:
        """Cache *value* under *key* for the next *ttl* seconds."""
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def discard(self, key: str) -> None:
        """Forget *key*."""
        with self._lock:
            self._data.pop(key, None)


# ------------------------------------------------------------ policies --


def insert_policy(session: orm.Session, policy: ap.ArchivePolicy) -> None:
    """Add *policy* (flushed, not committed).

    :raises ArchivePolicyAlreadyExists: when the name is taken.
    """
    if session.get(ArchivePolicyRow, policy.name) is not None:
        raise ArchivePolicyAlreadyExists(policy.name)
    session.add(ArchivePolicyRow(**policy_to_row(policy)))
    session.flush()


def select_policies(session: orm.Session) -> list[ap.ArchivePolicy]:
    """Every policy, by name."""
    rows = session.scalars(
        sa.select(ArchivePolicyRow).order_by(ArchivePolicyRow.name)
    ).all()
    return [policy_of_row(row) for row in rows]


def select_policy(session: orm.Session, name: str) -> ap.ArchivePolicy | None:
    """The policy called *name*, or None."""
    row = session.get(ArchivePolicyRow, name)
    return None if row is None else policy_of_row(row)


def update_policy(
    session: orm.Session,
    name: str,
    definition: Sequence[ap.PolicyItem] | None = None,
    back_window: int | None = None,
) -> ap.ArchivePolicy:
    """Change the points/timespan of a policy's items or its back window.

    Granularities cannot be added, removed or changed.

    :raises NoSuchArchivePolicy: unknown *name*.
    :raises UnsupportedArchivePolicyChange: granularities differ.
    """
    row = session.get(ArchivePolicyRow, name, with_for_update=True)
    if row is None:
        raise NoSuchArchivePolicy(name)
    current = policy_of_row(row)
    items = current.definition
    if definition is not None:
        old = sorted(current.granularities)
        new = sorted(item.granularity for item in definition)
        if old != new:
            raise UnsupportedArchivePolicyChange(
                name, "granularities cannot be added, removed or changed"
            )
        items = tuple(definition)
    updated = ap.ArchivePolicy(
        name=name,
        definition=items,
        aggregation_methods=current.aggregation_methods,
        back_window=(
            current.back_window if back_window is None else back_window
        ),
    )
    values = policy_to_row(updated)
    row.definition = values["definition"]
    row.back_window = values["back_window"]
    session.flush()
    return updated


def delete_policy(session: orm.Session, name: str) -> None:
    """Delete an unused policy (flushed, not committed).

    :raises NoSuchArchivePolicy: unknown *name*.
    :raises ArchivePolicyInUse: metrics or rules use it.
    """
    row = session.get(ArchivePolicyRow, name)
    if row is None:
        raise NoSuchArchivePolicy(name)
    rules = session.scalars(
        sa.select(ArchivePolicyRule.name)
        .where(ArchivePolicyRule.archive_policy_name == name)
        .order_by(ArchivePolicyRule.name)
    ).all()
    if rules:
        raise ArchivePolicyInUse(
            name, "archive policy rule(s) " + ", ".join(rules)
        )
    used = session.scalar(
        sa.select(Metric.id).where(Metric.archive_policy_name == name).limit(1)
    )
    if used is not None:
        raise ArchivePolicyInUse(name)
    session.delete(row)
    session.flush()


# --------------------------------------------------------------- rules --


def insert_rule(session: orm.Session, rule: Rule) -> None:
    """Add *rule* (flushed, not committed).

    :raises NoSuchArchivePolicy: the policy does not exist.
    :raises ArchivePolicyRuleAlreadyExists: the name is taken.
    """
    if session.get(ArchivePolicyRow, rule.archive_policy_name) is None:
        raise NoSuchArchivePolicy(rule.archive_policy_name)
    if session.get(ArchivePolicyRule, rule.name) is not None:
        raise ArchivePolicyRuleAlreadyExists(rule.name)
    session.add(ArchivePolicyRule(**rule.to_dict()))
    session.flush()


def select_rules(session: orm.Session) -> list[Rule]:
    """Every rule, in matching order (pattern desc, name asc)."""
    rows = session.execute(
        sa.select(
            ArchivePolicyRule.name,
            ArchivePolicyRule.archive_policy_name,
            ArchivePolicyRule.metric_pattern,
        )
    ).all()
    return _rule_order([Rule(*row) for row in rows])


def select_rule(session: orm.Session, name: str) -> Rule | None:
    """The rule called *name*, or None."""
    row = session.get(ArchivePolicyRule, name)
    if row is None:
        return None
    return Rule(row.name, row.archive_policy_name, row.metric_pattern)


def rename_rule(session: orm.Session, name: str, new_name: str) -> Rule:
    """Rename a rule (flushed, not committed).

    :raises NoSuchArchivePolicyRule: unknown *name*.
    :raises ArchivePolicyRuleAlreadyExists: *new_name* is taken.
    """
    row = session.get(ArchivePolicyRule, name)
    if row is None:
        raise NoSuchArchivePolicyRule(name)
    if new_name == name:
        return Rule(row.name, row.archive_policy_name, row.metric_pattern)
    if session.get(ArchivePolicyRule, new_name) is not None:
        raise ArchivePolicyRuleAlreadyExists(new_name)
    session.execute(
        sa.update(ArchivePolicyRule)
        .where(ArchivePolicyRule.name == name)
        .values(name=new_name)
    )
    return Rule(new_name, row.archive_policy_name, row.metric_pattern)


def delete_rule(session: orm.Session, name: str) -> None:
    """Delete a rule.

    :raises NoSuchArchivePolicyRule: unknown *name*.
    """
    result = session.execute(
        sa.delete(ArchivePolicyRule).where(ArchivePolicyRule.name == name)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NoSuchArchivePolicyRule(name)
