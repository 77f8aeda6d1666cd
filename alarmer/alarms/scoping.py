"""Which resources an alarm of a project may reference.

A ``gnocchi_aggregation_by_resources_threshold`` rule (alone or inside a
composite alarm) selects its resources with a search query.  The query
must compile against its resource type, and, as in Aodh, an alarm
created for a project only counts that project's resources: the query is
stored as ``{"and": [{"or": [created_by_project_id = P, project_id =
P]}, <query>]}``.  Only an administrator creating an alarm for its own
project keeps the query as given.
"""

from __future__ import annotations

from typing import Any

from alarmer.alarms.errors import invalid
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
