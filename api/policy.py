"""Authorization: oslo.policy rules with Aodh's and Gnocchi's defaults.

Every route that needs an identity names one rule (:data:`ROUTES`, by
Flask endpoint); :func:`api.context.require` enforces it in every
``[api] auth_mode``.  The defaults (:func:`list_rules`) carry Aodh's
names and check strings for ``/v2`` (``telemetry:*``: ``reader`` reads
and ``member`` writes in their own project, ``admin`` does everything)
and Gnocchi's names for ``/v1`` (``create archive policy``, ``post
measures``...), with the roles alarmer has always asked for on those
routes plus Gnocchi's ``service`` role where Gnocchi grants it.  An
operator overrides any of them in ``policy.yaml`` (``[oslo_policy]
policy_file``); ``etc/policy.yaml.sample`` lists them all, as
``oslopolicy-sample-generator --namespace alarmer`` writes it.

Keystone puts the roles a role implies in its tokens (``admin`` implies
``member``, which implies ``reader``); requests that name their roles
themselves (``noauth``, API keys) get the same implications
(:func:`credentials`), so that a ``member`` reads as it does with a
Keystone token.

A route is first checked against the caller's own objects
(:func:`own_target`).  On ``/v1`` the rules also carry Gnocchi's owner
rules (``creator``, ``admin_or_creator``, ``resource_owner``,
``metric_owner``), and the views check the metric or resource they act
on against its own attributes (:func:`object_target`,
:func:`api.context.authorize`).  The visibility of alarms stays where
they are read (an alarm of another project is not found).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from typing import Any

from oslo_config import cfg
from oslo_policy import generator, policy
from oslo_policy import opts as policy_opts

from api import identity

#: Where an application keeps its :class:`oslo_policy.policy.Enforcer`.
ENFORCER = "alarmer.policy"

#: The roles each role implies, as Keystone's default implied roles.
IMPLIED_ROLES: Mapping[str, frozenset[str]] = types.MappingProxyType(
    {
        "admin": frozenset({"member", "reader"}),
        "member": frozenset({"reader"}),
    }
)

# Base rules (names as Aodh and Gnocchi define them).
CONTEXT_IS_ADMIN = "role:admin"
ADMIN = "rule:context_is_admin"
ADMIN_OR_SERVICE = "rule:admin_or_service"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_READER_OR_ADMIN = "rule:project_reader or rule:context_is_admin"
PROJECT_MEMBER_OR_ADMIN = "rule:project_member or rule:context_is_admin"
# The v1 routes: a caller may name only its user (as with Gnocchi).
V1_READER = "role:reader or role:service"
V1_MEMBER = "role:member or role:service"
# Gnocchi's owner rules: who created an object, whose project it is for,
# whose resource a metric belongs to.
CREATOR = "user:%(creator)s or project_id:%(created_by_project_id)s"
ADMIN_OR_CREATOR = "role:admin or " + CREATOR
RESOURCE_OWNER = "project_id:%(project_id)s"
METRIC_OWNER = "project_id:%(resource.project_id)s"

_V2 = ["project"]
_V1 = ["system", "domain", "project"]


def _rule(
    name: str,
    check: str,
    description: str,
    operations: list[tuple[str, str]],
    scope: list[str],
) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name=name,
        check_str=check,
        description=description,
        operations=[{"method": m, "path": p} for m, p in operations],
        scope_types=scope,
    )


def _base_rules() -> list[policy.RuleDefault]:
    return [
        policy.RuleDefault("context_is_admin", CONTEXT_IS_ADMIN),
        policy.RuleDefault("segregation", ADMIN),
        policy.RuleDefault("admin_or_service", "role:admin or role:service"),
        policy.RuleDefault("project_reader", PROJECT_READER),
        policy.RuleDefault("project_member", PROJECT_MEMBER),
        policy.RuleDefault("admin_or_creator", ADMIN_OR_CREATOR),
        policy.RuleDefault("creator", CREATOR),
        policy.RuleDefault("resource_owner", RESOURCE_OWNER),
        policy.RuleDefault("metric_owner", METRIC_OWNER),
    ]


def _v1(floor: str, owners: str) -> str:
    """A v1 check: alarmer's role floor and Gnocchi's owner rules."""
    return f"({floor}) and ({owners})"


def _v2_rules() -> list[policy.RuleDefault]:
    alarm = "/v2/alarms/{alarm_id}"
    reader, member = PROJECT_READER_OR_ADMIN, PROJECT_MEMBER_OR_ADMIN
    return [
        _rule("telemetry:get_alarm", reader, "Get an alarm.",
              [("GET", alarm)], _V2),
        _rule("telemetry:get_alarms", reader, "List alarms.",
              [("GET", "/v2/alarms")], _V2),
        _rule("telemetry:get_alarms:all_projects", ADMIN,
              "List the alarms of every project.",
              [("GET", "/v2/alarms")], _V2),
        _rule("telemetry:query_alarm", reader, "Query alarms.",
              [("POST", "/v2/query/alarms")], _V2),
        _rule("telemetry:create_alarm", member, "Create an alarm.",
              [("POST", "/v2/alarms")], _V2),
        _rule("telemetry:change_alarm", member, "Replace an alarm.",
              [("PUT", alarm)], _V2),
        _rule("telemetry:delete_alarm", member, "Delete an alarm.",
              [("DELETE", alarm)], _V2),
        _rule("telemetry:get_alarm_state", reader, "Get an alarm's state.",
              [("GET", alarm + "/state")], _V2),
        _rule("telemetry:change_alarm_state", member,
              "Set an alarm's state.", [("PUT", alarm + "/state")], _V2),
        _rule("telemetry:alarm_history", reader, "Get an alarm's history.",
              [("GET", alarm + "/history")], _V2),
        _rule("telemetry:query_alarm_history", reader,
              "Query the history of alarms.",
              [("POST", "/v2/query/alarms/history")], _V2),
        _rule("telemetry:get_quotas", reader, "Get a project's quotas.",
              [("GET", "/v2/quotas")], _V2),
        _rule("telemetry:update_quotas", ADMIN, "Set a project's quotas.",
              [("POST", "/v2/quotas")], _V2),
        _rule("telemetry:delete_quotas", ADMIN,
              "Delete a project's quotas.",
              [("DELETE", "/v2/quotas/{project_id}")], _V2),
        _rule("alarmer:get_deliveries", reader,
              "List or get the deliveries of an alarm's notifications.",
              [("GET", alarm + "/deliveries"),
               ("GET", alarm + "/deliveries/{delivery_id}")], _V2),
        _rule("alarmer:redeliver", member, "Deliver a notification again.",
              [("POST", alarm + "/deliveries/{delivery_id}/redeliver")],
              _V2),
        _rule("alarmer:get_silences", reader,
              "List or get the silences of the caller's project.",
              [("GET", "/v2/silences"),
               ("GET", "/v2/silences/{silence_id}")], _V2),
        _rule("alarmer:create_silence", member,
              "Create a silence (another project's or every project's: "
              "admin).",
              [("POST", "/v2/silences")], _V2),
        _rule("alarmer:expire_silence", member, "End a silence now.",
              [("DELETE", "/v2/silences/{silence_id}")], _V2),
        _rule("telemetry:get_metrics", reader,
              "Get the evaluation results counted per alarm and state.",
              [("GET", "/v2/metrics")], _V2),
    ]  # fmt: skip


def _v1_rules() -> list[policy.RuleDefault]:
    ap = "/v1/archive_policy"
    apr = "/v1/archive_policy_rule"
    res = "/v1/resource/{resource_type}"
    one = res + "/{resource_id}"
    rt = "/v1/resource_type"
    metric = "/v1/metric/{metric_id}"
    reader, member = V1_READER, V1_MEMBER
    get_metric = _v1(
        reader,
        "rule:admin_or_service or rule:creator or rule:metric_owner",
    )
    delete_own = _v1(member, "rule:admin_or_creator")
    list_metric = _v1(reader, "rule:admin_or_creator or rule:metric_owner")
    write_own = _v1(member, "rule:admin_or_service or rule:creator")
    get_resource = _v1(reader, "rule:admin_or_creator or rule:resource_owner")
    search_resource = _v1(
        reader,
        "rule:admin_or_service or rule:creator or rule:resource_owner",
    )
    return [
        _rule("get status", ADMIN, "Get the status of the service.",
              [("GET", "/v1/status")], _V1),
        _rule("create archive policy", ADMIN_OR_SERVICE,
              "Create an archive policy.", [("POST", ap)], _V1),
        _rule("get archive policy", reader, "Get an archive policy.",
              [("GET", ap + "/{name}")], _V1),
        _rule("update archive policy", ADMIN, "Update an archive policy.",
              [("PATCH", ap + "/{name}")], _V1),
        _rule("delete archive policy", ADMIN, "Delete an archive policy.",
              [("DELETE", ap + "/{name}")], _V1),
        _rule("list archive policy", reader, "List archive policies.",
              [("GET", ap)], _V1),
        _rule("create archive policy rule", ADMIN,
              "Create an archive policy rule.", [("POST", apr)], _V1),
        _rule("get archive policy rule", reader,
              "Get an archive policy rule.",
              [("GET", apr + "/{name}")], _V1),
        _rule("update archive policy rule", ADMIN,
              "Update an archive policy rule.",
              [("PATCH", apr + "/{name}")], _V1),
        _rule("delete archive policy rule", ADMIN,
              "Delete an archive policy rule.",
              [("DELETE", apr + "/{name}")], _V1),
        _rule("list archive policy rule", reader,
              "List archive policy rules.", [("GET", apr)], _V1),
        _rule("create metric", member, "Create a metric.",
              [("POST", "/v1/metric"), ("POST", one + "/metric")], _V1),
        _rule("get metric", get_metric, "Get a metric.",
              [("GET", metric), ("GET", one + "/metric/{name}")], _V1),
        _rule("delete metric", delete_own, "Delete a metric.",
              [("DELETE", metric), ("DELETE", one + "/metric/{name}")],
              _V1),
        _rule("list metric", list_metric, "List metrics.",
              [("GET", "/v1/metric"), ("GET", one + "/metric")], _V1),
        _rule("post measures", write_own, "Push measures.",
              [("POST", metric + "/measures"),
               ("POST", "/v1/batch/metrics/measures"),
               ("POST", one + "/metric/{name}/measures"),
               ("POST", "/v1/batch/resources/metrics/measures")], _V1),
        _rule("get measures", get_metric, "Read measures and aggregates.",
              [("GET", metric + "/measures"),
               ("GET", one + "/metric/{name}/measures"),
               ("POST", "/v1/aggregates")], _V1),
        _rule("create resource", member, "Create a resource.",
              [("POST", res)], _V1),
        _rule("get resource", get_resource, "Get a resource.",
              [("GET", one)], _V1),
        _rule("update resource", write_own, "Update a resource.",
              [("PATCH", one)], _V1),
        _rule("delete resource", delete_own, "Delete a resource.",
              [("DELETE", one)], _V1),
        _rule("delete resources", delete_own,
              "Delete matching resources.",
              [("DELETE", res)], _V1),
        _rule("list resource", get_resource, "List resources.",
              [("GET", res)], _V1),
        _rule("search resource", search_resource, "Search resources.",
              [("POST", "/v1/search/resource/{resource_type}")], _V1),
        _rule("create resource type", ADMIN_OR_SERVICE,
              "Create a resource type.", [("POST", rt)], _V1),
        _rule("get resource type", reader, "Get a resource type.",
              [("GET", rt + "/{name}")], _V1),
        _rule("update resource type", ADMIN_OR_SERVICE,
              "Update a resource type.", [("PATCH", rt + "/{name}")], _V1),
        _rule("delete resource type", ADMIN, "Delete a resource type.",
              [("DELETE", rt + "/{name}")], _V1),
        _rule("list resource type", reader, "List resource types.",
              [("GET", rt)], _V1),
    ]  # fmt: skip


def list_rules() -> list[policy.RuleDefault]:
    """Every default rule (the ``oslo.policy.policies`` entry point)."""
    return [*_base_rules(), *_role_rules(), *_v2_rules(), *_v1_rules()]


#: The rule of every route that needs an identity, by Flask endpoint.
ROUTES: Mapping[str, str] = types.MappingProxyType(
    {
        "v1.status": "get status",
        "v1.archive_policy_create": "create archive policy",
        "v1.archive_policy_list": "list archive policy",
        "v1.archive_policy_show": "get archive policy",
        "v1.archive_policy_update": "update archive policy",
        "v1.archive_policy_delete": "delete archive policy",
        "v1.archive_policy_rule_create": "create archive policy rule",
        "v1.archive_policy_rule_list": "list archive policy rule",
        "v1.archive_policy_rule_show": "get archive policy rule",
        "v1.archive_policy_rule_update": "update archive policy rule",
        "v1.archive_policy_rule_delete": "delete archive policy rule",
        "v1.metric_create": "create metric",
        "v1.metric_list": "list metric",
        "v1.metric_show": "get metric",
        "v1.metric_delete": "delete metric",
        "v1.measures_add": "post measures",
        "v1.measures_get": "get measures",
        "v1.measures_batch": "post measures",
        "v1.aggregates": "get measures",
        "v1_resources.create_resource": "create resource",
        "v1_resources.list_resources": "list resource",
        "v1_resources.delete_matching": "delete resources",
        "v1_resources.show_resource": "get resource",
        "v1_resources.update_resource": "update resource",
        "v1_resources.delete_resource": "delete resource",
        "v1_resources.list_resource_metrics": "list metric",
        "v1_resources.add_resource_metrics": "create metric",
        "v1_resources.show_resource_metric": "get metric",
        "v1_resources.delete_resource_metric": "delete metric",
        "v1_resource_measures.add_named_measures": "post measures",
        "v1_resource_measures.get_named_measures": "get measures",
        "v1_resource_measures.add_batch_by_resources": "post measures",
        "v1_resource_type.list_types": "list resource type",
        "v1_resource_type.show_type": "get resource type",
        "v1_resource_type.create_type": "create resource type",
        "v1_resource_type.patch_type": "update resource type",
        "v1_resource_type.delete_type": "delete resource type",
        "v1_search.search_resources": "search resource",
        "v2_alarms.list_alarms": "telemetry:get_alarms",
        "v2_alarms.create_alarm": "telemetry:create_alarm",
        "v2_alarms.get_alarm": "telemetry:get_alarm",
        "v2_alarms.replace_alarm": "telemetry:change_alarm",
        "v2_alarms.delete_alarm": "telemetry:delete_alarm",
        "v2_alarms.get_state": "telemetry:get_alarm_state",
        "v2_alarms.set_state": "telemetry:change_alarm_state",
        "v2_alarms.alarm_history": "telemetry:alarm_history",
        "v2_deliveries.list_deliveries": "alarmer:get_deliveries",
        "v2_deliveries.get_delivery": "alarmer:get_deliveries",
        "v2_deliveries.redeliver": "alarmer:redeliver",
        "v2_query.query_alarms": "telemetry:query_alarm",
        "v2_query.query_history": "telemetry:query_alarm_history",
        "v2_quotas.get_quotas": "telemetry:get_quotas",
        "v2_quotas.set_quotas": "telemetry:update_quotas",
        "v2_quotas.delete_quotas": "telemetry:delete_quotas",
        "v2_metrics.get_metrics": "telemetry:get_metrics",
        "v2_silences.list_silences": "alarmer:get_silences",
        "v2_silences.get_silence": "alarmer:get_silences",
        "v2_silences.create_silence": "alarmer:create_silence",
        "v2_silences.expire_silence": "alarmer:expire_silence",
        # Gnocchi's legacy aggregation routes (Grafana's datasource) and
        # its index of resource types.
        "v1.aggregation_metric": "get metric",
        "v1.aggregation_resource": "search resource",
        "v1.resource_index": "list resource type",
        # The dashboard shows what the API's rules let the caller read.
        "dashboard.alarms": "telemetry:get_alarms",
        "dashboard.token": "telemetry:get_alarms",
        "dashboard.alarm": "telemetry:get_alarm",
        "dashboard.deliveries": "alarmer:get_deliveries",
        "dashboard.metric": "get metric",
        "dashboard.resources": "search resource",
    }
)

#: The rule of a route :data:`ROUTES` does not name, by the role its
#: view asks for.
BY_ROLE: Mapping[str, str] = types.MappingProxyType(
    {
        "reader": "project_reader_or_admin",
        "member": "project_member_or_admin",
        "admin": "context_is_admin",
    }
)


def _role_rules() -> list[policy.RuleDefault]:
    return [
        policy.RuleDefault("project_reader_or_admin", PROJECT_READER_OR_ADMIN),
        policy.RuleDefault("project_member_or_admin", PROJECT_MEMBER_OR_ADMIN),
    ]


def make_enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    """An enforcer with every default registered, reading
    ``[oslo_policy] policy_file`` (``policy.yaml`` by default, looked up
    beside the configuration file) when it exists."""
    policy_opts.set_defaults(conf, policy_file="policy.yaml")
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(list_rules())
    return enforcer


def get_enforcer() -> policy.Enforcer:
    """An enforcer for oslo.policy's tools (``oslo.policy.enforcer``).

    ``oslopolicy-checker`` and ``oslopolicy-policy-generator`` load it
    with the process's configuration.
    """
    return make_enforcer(cfg.CONF)


def expand_roles(roles: frozenset[str]) -> list[str]:
    """*roles* with the roles they imply, sorted."""
    expanded = set(roles)
    for role in roles:
        expanded |= IMPLIED_ROLES.get(role, frozenset())
    return sorted(expanded)


def credentials(who: identity.Identity) -> dict[str, Any]:
    """The oslo.policy credentials of *who*.

    ``user`` is Gnocchi's ``user:project`` string, which its ``creator``
    rule compares with the creator of an object.
    """
    return {
        "user": f"{who.user_id or ''}:{who.project_id or ''}",
        "user_id": who.user_id,
        "project_id": who.project_id,
        "roles": expand_roles(who.roles),
        "system_scope": who.system_scope,
    }


def rule_for(endpoint: str | None, role: str) -> str:
    """The rule guarding *endpoint*, or the one of *role* by default."""
    if endpoint is not None and endpoint in ROUTES:
        return ROUTES[endpoint]
    return BY_ROLE[role]


def allowed(
    enforcer: policy.Enforcer,
    rule: str,
    who: identity.Identity,
    target: Mapping[str, Any] | None = None,
) -> bool:
    """True when *rule* allows *who* on *target*.

    :param target: the object's attributes (default:
        :func:`own_target`, as the routes of a collection are checked).
    """
    if target is None:
        target = own_target(who)
    return bool(enforcer.enforce(rule, dict(target), credentials(who)))


def own_target(who: identity.Identity) -> dict[str, Any]:
    """The attributes of an object *who* created for its own project.

    A route is checked against it before any object is read: a rule
    that lets the caller act on its own objects lets it call the route;
    the object found is then checked against its own attributes
    (:func:`object_target`).
    """
    creator = f"{who.user_id or ''}:{who.project_id or ''}"
    own = object_target(
        {
            "creator": creator,
            "created_by_user_id": who.user_id,
            "created_by_project_id": who.project_id,
            "resource.project_id": who.project_id,
        }
    )
    return {"project_id": who.project_id, "user_id": who.user_id, **own}


def object_target(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The policy target of an object: its attributes that are set.

    An unset attribute is left out rather than compared as ``None``, so
    that an object created without a project matches no caller's
    ``project_id`` by accident (a rule naming it fails instead).
    """
    return {k: v for k, v in attributes.items() if v is not None}


def sample_text() -> str:
    """``policy.yaml.sample``: every default, commented out, with help.

    The text ``oslopolicy-sample-generator --namespace alarmer`` writes.
    """
    sections = generator._sort_and_format_by_section({"alarmer": list_rules()})
    return "".join(sections)


def generate_sample_main(argv: list[str] | None = None) -> int:
    """``alarmer-policy-generator [PATH]``: write the sample policy file
    to *PATH*, or to standard output."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = sample_text()
    if args:
        with open(args[0], "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0
