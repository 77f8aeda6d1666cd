"""Which resources and metrics an alarm of a project may reference.

The owner of an alarm is its project (for an administrator creating an
alarm for another project, that project): an alarm reads nothing its
project may not read through ``/v1``
(:func:`alarmer.metrics.index.access.seen_by`), as the evaluator
enforces again each time it resolves a rule.  On every create and
update (:func:`check_references`):

* a ``gnocchi_resources_threshold`` rule naming a resource by UUID must
  name one its project may see (a non-UUID id is a name the evaluator
  looks up among the project's own resources only, so it cannot reach
  another project's);
* a ``gnocchi_aggregation_by_metrics_threshold`` rule may only list
  metrics its project created or that are attached to a resource it may
  see;
* a ``gnocchi_aggregation_by_resources_threshold`` query may only name
  (``id`` with ``=`` or ``in``) resources its project may see;

composite sub-rules included.  An id that does not exist (yet) is
accepted, as before: it resolves, for the alarm's project only, when it
appears.

A ``gnocchi_aggregation_by_resources_threshold`` rule (alone or inside a
composite alarm) selects its resources with a search query.  The query
must compile against its resource type, and, as in Aodh, an alarm
created for a project only counts that project's resources: the query is
stored as ``{"and": [{"or": [created_by_project_id = P, project_id =
P]}, <query>]}`` (:func:`scope_alarm`).  An administrator creating an
alarm for its own project keeps the query as given; the evaluator
counts the alarm project's resources only in any case.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from alarmer.alarms import model
from alarmer.alarms.errors import RuleError, invalid
from alarmer.db import Database
from alarmer.metrics import index

#: The rule type whose resources come from a search query.
BY_RESOURCES = "gnocchi_aggregation_by_resources_threshold"


def by_resources_rules(
    alarm_type: str | None, rule: Any
) -> list[dict[str, Any]]:
    """The by-resources rules of an alarm, composite members included."""
    if not isinstance(rule, dict):
        return []
    if alarm_type == BY_RESOURCES:
        return [rule]
    found: list[dict[str, Any]] = []
    if alarm_type == "composite" or alarm_type is None:
        for op in ("and", "or"):
            for item in rule.get(op) or ():
                if isinstance(item, dict):
                    found += by_resources_rules(item.get("type"), item)
    return found


def scope_alarm(
    db: Database,
    values: dict[str, Any],
    *,
    project_id: str | None,
    is_admin: bool,
) -> None:
    """Check and scope, in place, the by-resources queries of an alarm.

    :param db: the database of the metric index.
    :param values: a validated alarm definition (``type``, ``rule``, and
        ``project_id`` when the alarm is created for another project).
    :param project_id: the project of whoever creates the alarm.
    :param is_admin: whether that caller is an administrator.
    :raises alarmer.alarms.errors.RuleError: a query does not compile
        against its resource type (an undeclared type is accepted, as
        Aodh accepts Gnocchi's 404: it may be declared later).
    """
    rules = by_resources_rules(values.get("type"), values.get("rule"))
    if not rules:
        return
    target = values.get("project_id") or project_id
    scoped = not is_admin or target != project_id
    with db.read_session() as session:
        for rule in rules:
            query = rule.get("query", "")
            try:
                index.check_rule_query(session, rule["resource_type"], query)
            except index.QueryError as exc:
                raise invalid("query", query, str(exc)) from None
            if scoped and target:
                rule["query"] = index.scope_query(query, target)


def _leaves(
    alarm_type: str | None, rule: Any, prefix: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(field prefix, type, rule)`` of every threshold (sub-)rule."""
    if not isinstance(rule, dict):
        return
    if alarm_type != model.COMPOSITE:
        yield prefix, str(alarm_type), rule
        return
    for op in model.JOINS:
        items = rule.get(op)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            path = f"{prefix}.{op}[{i}]"
            if model.is_composition(item):
                yield from _leaves(model.COMPOSITE, item, path)
            else:
                yield path, str(item.get("type")), item


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def check_references(
    db: Database, values: dict[str, Any], *, owner: str | None
) -> None:
    """Check that the alarm's project may see what its rule names.

    :param db: the database of the metric index.
    :param values: a validated alarm definition (``type``, ``rule``).
    :param owner: the alarm's project (the one it is created for, or the
        stored alarm's for an update that does not name one).
    :raises alarmer.alarms.errors.RuleError: 400 naming the field
        (``gnocchi_resources_threshold_rule.resource_id``,
        ``composite_rule.or[0].metrics[1]``, ...) and the id of the first
        resource or metric that exists and *owner* may not see.
    """
    alarm_type = values.get("type")
    leaves = list(
        _leaves(alarm_type, values.get("rule"), f"{alarm_type}_rule")
    )
    resources: list[tuple[str, str]] = []
    metrics: list[tuple[str, str]] = []
    for prefix, kind, rule in leaves:
        if kind == model.RESOURCES_THRESHOLD:
            rid = _uuid(rule.get("resource_id"))
            if rid is not None:
                resources.append((f"{prefix}.resource_id", rid))
        elif kind == model.BY_METRICS_THRESHOLD:
            for i, metric_id in enumerate(rule.get("metrics") or ()):
                metrics.append((f"{prefix}.metrics[{i}]", str(metric_id)))
        elif kind == model.BY_RESOURCES_THRESHOLD:
            resources.extend(
                (f"{prefix}.query", rid)
                for rid in index.query_resource_ids(rule.get("query"))
            )
    if not resources and not metrics:
        return
    with db.read_session() as session:
        hidden_resources, hidden_metrics = index.invisible_references(
            session,
            owner,
            resource_ids=[rid for _, rid in resources],
            metric_ids=[mid for _, mid in metrics],
        )
    for field, rid in resources:
        if rid in hidden_resources:
            raise _not_visible(field, rid, "Resource", owner)
    for field, mid in metrics:
        if mid in hidden_metrics:
            raise _not_visible(field, mid, "Metric", owner)


def _not_visible(
    field: str, value: str, what: str, owner: str | None
) -> RuleError:
    return invalid(
        field,
        value,
        f"{what} {value} is not visible to project {owner}: an alarm "
        "may only read the resources and metrics of its project",
    )
