"""The OpenAPI 3.1 document of the v1 and v2 APIs, served as JSON.

Every route of the application is listed in :data:`V1_ROUTES`,
:data:`V2_ROUTES` or :data:`BASE_ROUTES`; a test compares them with the
application's URL map, so a route added without documentation fails the
build.  Body schemas of the v2 API come from
:mod:`alarmer.alarms.validation` (JSON Schema 2020-12, which OpenAPI 3.1
uses as is).
"""

from __future__ import annotations

import copy
from typing import Any

import flask

from alarmer import __version__
from alarmer.alarms import schema as rule_schema

#: ``(method, path, summary)`` of the routes outside /v1 and /v2.
BASE_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/", "API versions document."),
    ("GET", "/healthcheck", "200 when the service can reach its database."),
    ("GET", "/openapi.json", "This document."),
)

#: ``(method, path, summary)`` of the Gnocchi-dialect v1 API.
V1_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/v1/", "v1 version document."),
    ("GET", "/v1/capabilities", "Aggregation methods the engine offers."),
    ("GET", "/v1/status", "Processing status of the metrics engine."),
    ("POST", "/v1/aggregates", "Aggregate across metrics (operations)."),
    ("GET", "/v1/archive_policy", "List archive policies."),
    ("POST", "/v1/archive_policy", "Create an archive policy."),
    ("GET", "/v1/archive_policy/{name}", "Show an archive policy."),
    ("PATCH", "/v1/archive_policy/{name}", "Change an archive policy."),
    ("DELETE", "/v1/archive_policy/{name}", "Delete an archive policy."),
    ("GET", "/v1/archive_policy_rule", "List archive policy rules."),
    ("POST", "/v1/archive_policy_rule", "Create an archive policy rule."),
    ("GET", "/v1/archive_policy_rule/{name}", "Show an archive policy rule."),
    ("PATCH", "/v1/archive_policy_rule/{name}", "Rename a rule."),
    ("DELETE", "/v1/archive_policy_rule/{name}", "Delete a rule."),
    ("POST", "/v1/batch/metrics/measures", "Add measures to many metrics."),
    (
        "POST",
        "/v1/batch/resources/metrics/measures",
        "Add measures to metrics named by resource.",
    ),
    ("GET", "/v1/metric", "List metrics."),
    ("POST", "/v1/metric", "Create a metric."),
    ("GET", "/v1/metric/{metric_id}", "Show a metric."),
    ("DELETE", "/v1/metric/{metric_id}", "Delete a metric."),
    ("GET", "/v1/metric/{metric_id}/measures", "Read aggregated measures."),
    ("POST", "/v1/metric/{metric_id}/measures", "Add measures."),
    ("GET", "/v1/resource/{type_name}", "List resources of a type."),
    ("POST", "/v1/resource/{type_name}", "Create a resource."),
    ("DELETE", "/v1/resource/{type_name}", "Delete resources matching."),
    ("GET", "/v1/resource/{type_name}/{resource_id}", "Show a resource."),
    (
        "PATCH",
        "/v1/resource/{type_name}/{resource_id}",
        "Change a resource.",
    ),
    (
        "DELETE",
        "/v1/resource/{type_name}/{resource_id}",
        "Delete a resource.",
    ),
    (
        "GET",
        "/v1/resource/{type_name}/{resource_id}/metric",
        "List the metrics of a resource.",
    ),
    (
        "POST",
        "/v1/resource/{type_name}/{resource_id}/metric",
        "Attach metrics to a resource.",
    ),
    (
        "GET",
        "/v1/resource/{type_name}/{resource_id}/metric/{name}",
        "Show a resource's metric.",
    ),
    (
        "DELETE",
        "/v1/resource/{type_name}/{resource_id}/metric/{name}",
        "Delete a resource's metric.",
    ),
    (
        "GET",
        "/v1/resource/{type_name}/{resource_id}/metric/{name}/measures",
        "Read measures of a resource's metric.",
    ),
    (
        "POST",
        "/v1/resource/{type_name}/{resource_id}/metric/{name}/measures",
        "Add measures to a resource's metric.",
    ),
    ("GET", "/v1/resource_type", "List resource types."),
    ("POST", "/v1/resource_type", "Create a resource type."),
    ("GET", "/v1/resource_type/{name}", "Show a resource type."),
    ("PATCH", "/v1/resource_type/{name}", "Change a resource type."),
    ("DELETE", "/v1/resource_type/{name}", "Delete a resource type."),
    (
        "POST",
        "/v1/search/resource/{type_name}",
        "Search resources with a query.",
    ),
)

#: ``(method, path, summary)`` of the Aodh-dialect v2 API.
V2_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/v2/alarms", "List alarms (q.* filters, sort, limit, marker)."),
    ("POST", "/v2/alarms", "Create an alarm; 201 with Location."),
    ("GET", "/v2/alarms/{alarm_id}", "Show an alarm."),
    ("PUT", "/v2/alarms/{alarm_id}", "Replace an alarm's definition."),
    ("DELETE", "/v2/alarms/{alarm_id}", "Delete an alarm (history stays)."),
    ("GET", "/v2/alarms/{alarm_id}/state", "The state, a JSON string."),
    ("PUT", "/v2/alarms/{alarm_id}/state", "Set the state by hand."),
    ("GET", "/v2/alarms/{alarm_id}/history", "Changes of an alarm."),
    ("POST", "/v2/query/alarms", "Complex query over alarms."),
    ("POST", "/v2/query/alarms/history", "Complex query over history."),
    ("GET", "/v2/capabilities", "What the v2 API supports."),
    ("GET", "/v2/capabilities/", "Same, with the slash aodhclient sends."),
    ("GET", "/v2/quotas", "Quotas of a project (?project_id=)."),
    ("POST", "/v2/quotas", "Set a project's quotas (admin)."),
    ("DELETE", "/v2/quotas/{project_id}", "Forget a project's quotas."),
    (
        "GET",
        "/v2/alarms/{alarm_id}/deliveries",
        "Notification deliveries of an alarm.",
    ),
    (
        "GET",
        "/v2/alarms/{alarm_id}/deliveries/{delivery_id}",
        "One delivery and its attempts.",
    ),
    (
        "POST",
        "/v2/alarms/{alarm_id}/deliveries/{delivery_id}/redeliver",
        "Deliver a notification again.",
    ),
)

_ERROR = {
    "type": "object",
    "properties": {
        "error_message": {
            "type": "object",
            "properties": {
                "faultcode": {"enum": ["Client", "Server"]},
                "faultstring": {"type": "string"},
                "debuginfo": {"type": ["string", "null"]},
            },
        }
    },
}
_TS = {"type": "string", "format": "date-time"}


def _alarm_schema() -> dict[str, Any]:
    body = copy.deepcopy(rule_schema.alarm_schema())
    body.pop("$schema", None)
    for alarm_type in rule_schema.THRESHOLD_TYPES:
        body["properties"][f"{alarm_type}_rule"] = {
            "anyOf": [rule_schema.rule_schema(alarm_type), {"type": "null"}]
        }
    body["properties"]["composite_rule"] = {
        "type": ["object", "null"],
        "description": "{'and'|'or': [sub-rules]}, nested; each leaf is "
        "a threshold rule with its 'type'.",
    }
    return body


def _alarm_out() -> dict[str, Any]:
    out = copy.deepcopy(_alarm_schema())
    out.pop("required", None)
    for key in ("timestamp", "state_timestamp", "evaluate_timestamp"):
        out["properties"][key] = _TS
    return out


_HISTORY = {
    "type": "object",
    "properties": {
        "event_id": {"type": "string"},
        "alarm_id": {"type": "string"},
        "type": {
            "enum": [
                "creation",
                "rule change",
                "state transition",
                "deletion",
            ]
        },
        "detail": {"type": "string", "description": "JSON text."},
        "user_id": {"type": ["string", "null"]},
        "project_id": {"type": ["string", "null"]},
        "on_behalf_of": {"type": ["string", "null"]},
        "severity": {"type": ["string", "null"]},
        "timestamp": _TS,
    },
}
_QUERY = {
    "type": "object",
    "properties": {
        "filter": {"type": "string", "description": "JSON filter as text."},
        "orderby": {"type": "string", "description": "JSON list as text."},
        "limit": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
_QUOTAS = {
    "type": "object",
    "properties": {
        "project_id": {"type": "string"},
        "quotas": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "resource": {"enum": ["alarms"]},
                    "limit": {"type": "integer", "minimum": -1},
                },
            },
        },
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_V2_BODIES: dict[tuple[str, str], tuple[dict | None, str, dict | None]] = {
    # (method, path): (request schema, success status, response schema)
    ("GET", "/v2/alarms"): (
        None,
        "200",
        {"type": "array", "items": _ref("Alarm")},
    ),
    ("POST", "/v2/alarms"): (_ref("AlarmInput"), "201", _ref("Alarm")),
    ("GET", "/v2/alarms/{alarm_id}"): (None, "200", _ref("Alarm")),
    ("PUT", "/v2/alarms/{alarm_id}"): (
        _ref("AlarmInput"),
        "200",
        _ref("Alarm"),
    ),
    ("DELETE", "/v2/alarms/{alarm_id}"): (None, "204", None),
    ("GET", "/v2/alarms/{alarm_id}/state"): (None, "200", _ref("State")),
    ("PUT", "/v2/alarms/{alarm_id}/state"): (
        _ref("State"),
        "200",
        _ref("State"),
    ),
    ("GET", "/v2/alarms/{alarm_id}/history"): (
        None,
        "200",
        {"type": "array", "items": _ref("AlarmChange")},
    ),
    ("POST", "/v2/query/alarms"): (
        _ref("ComplexQuery"),
        "200",
        {"type": "array", "items": _ref("Alarm")},
    ),
    ("POST", "/v2/query/alarms/history"): (
        _ref("ComplexQuery"),
        "200",
        {"type": "array", "items": _ref("AlarmChange")},
    ),
    ("GET", "/v2/quotas"): (None, "200", _ref("Quotas")),
    ("POST", "/v2/quotas"): (_ref("Quotas"), "201", _ref("Quotas")),
    ("DELETE", "/v2/quotas/{project_id}"): (None, "204", None),
}


def _parameters(path: str) -> list[dict[str, Any]]:
    params = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            params.append(
                {
                    "name": part[1:-1],
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
            )
    return params


def document(server_url: str = "/") -> dict[str, Any]:
    """Build the OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for tag, routes in (
        ("general", BASE_ROUTES),
        ("v1 (Gnocchi dialect)", V1_ROUTES),
        ("v2 (Aodh dialect)", V2_ROUTES),
    ):
        for method, path, summary in routes:
            request, status, response = _V2_BODIES.get(
                (method, path), (None, "200", None)
            )
            operation: dict[str, Any] = {
                "tags": [tag],
                "summary": summary,
                "responses": {
                    status: {"description": "Success"}
                    | ({"content": _json(response)} if response else {}),
                    "4XX": {
                        "description": "Client error",
                        "content": _json(_ref("Error")),
                    },
                },
            }
            params = _parameters(path)
            if params:
                operation["parameters"] = params
            if request:
                operation["requestBody"] = {
                    "required": True,
                    "content": _json(request),
                }
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "alarmer",
            "version": __version__,
            "description": "Gnocchi-compatible v1 metric API and "
            "Aodh-compatible v2 alarm API. Identity: X-User-Id, "
            "X-Project-Id, X-Roles (auth_mode noauth) or an API key as "
            "'Authorization: Bearer <key>' / 'X-Auth-Token' (apikey).",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": {
                "AlarmInput": _alarm_schema(),
                "Alarm": _alarm_out(),
                "AlarmChange": _HISTORY,
                "State": {"enum": list(rule_schema.STATES)},
                "ComplexQuery": _QUERY,
                "Quotas": _QUOTAS,
                "Error": _ERROR,
            },
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _serve() -> flask.Response:
    return flask.jsonify(document(flask.request.host_url))


def register(app: flask.Flask) -> None:
    """Serve the document at ``GET /openapi.json``."""
    app.add_url_rule("/openapi.json", "openapi", _serve, methods=["GET"])
