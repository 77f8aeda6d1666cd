"""The OpenAPI 3.1 document of the v1 and v2 APIs, served as JSON.

Every route of the application is listed in :data:`V1_ROUTES`,
:data:`V2_ROUTES` or :data:`BASE_ROUTES`; a test compares them with the
application's URL map, so a route added without documentation fails the
build.  :data:`OPERATIONS` gives each route its request body, query
parameters, success status and answer; a property-based test sends
generated requests from this document and checks the answers against
it (status codes and schemas).

Request schemas are the ones the views validate with, imported from
them where they exist (:mod:`alarmer.alarms.schema` for alarms, the
``*_SCHEMA`` constants of the v1 views, :data:`api.v2.quotas.QUOTA_SCHEMA`),
so the document cannot drift from the checks (JSON Schema 2020-12, which
OpenAPI 3.1 uses as is).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import flask

from alarmer import __version__
from alarmer.alarms import schema as rule_schema
from alarmer.alarms import silences
from alarmer.metrics.query import parse as ops
from api.errors import is_gnocchi_path
from api.v1 import aggregates as aggregates_views
from api.v1 import archive_policy as policy_views
from api.v1 import archive_policy_rule as rule_views
from api.v1 import metric as metric_views
from api.v2 import quotas as quota_views

#: ``(method, path, summary)`` of the routes outside /v1 and /v2.
BASE_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/", "API versions document."),
    ("GET", "/healthcheck", "200 when the service can reach its database."),
    ("GET", "/openapi.json", "This document."),
    (
        "GET",
        "/metrics",
        "alarmer's own metrics, Prometheus text format (no identity).",
    ),
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
    ("GET", "/v1/resource", "Resource types and their listing URLs."),
    ("GET", "/v1/aggregation/metric", "Legacy: aggregate metrics by id."),
    ("POST", "/v1/aggregation/metric", "Legacy: aggregate metrics by id."),
    (
        "GET",
        "/v1/aggregation/resource/{type_name}/metric/{name}",
        "Legacy: aggregate a metric of the resources found.",
    ),
    (
        "POST",
        "/v1/aggregation/resource/{type_name}/metric/{name}",
        "Legacy: aggregate a metric of the resources found.",
    ),
)

#: ``(method, path, summary)`` of the Aodh-dialect v2 API.
V2_ROUTES: tuple[tuple[str, str, str], ...] = (
    (
        "GET",
        "/v2/metrics",
        "Evaluation results per alarm and state (when enabled).",
    ),
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
    ("GET", "/v2/silences", "Silences in the caller's scope."),
    ("POST", "/v2/silences", "Hold the notifications of matching alarms."),
    ("GET", "/v2/silences/{silence_id}", "One silence."),
    (
        "DELETE",
        "/v2/silences/{silence_id}",
        "End a silence now (kept, expired, for the audit trail).",
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
            "required": ["faultcode", "faultstring"],
        }
    },
    "required": ["error_message"],
}
#: Gnocchi's envelope, which every error under ``/v1`` answers.
_GNOCCHI_ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "integer"},
        "title": {"type": "string"},
        "description": {"type": ["string", "object"]},
    },
    "required": ["code", "title", "description"],
}
_TS = {"type": "string", "format": "date-time"}
_NULLABLE_TEXT = {"type": ["string", "null"]}


def _alarm_schema() -> dict[str, Any]:
    body = copy.deepcopy(rule_schema.alarm_schema())
    body.pop("$schema", None)
    for alarm_type in rule_schema.THRESHOLD_TYPES:
        body["properties"][f"{alarm_type}_rule"] = {
            "anyOf": [rule_schema.rule_schema(alarm_type), {"type": "null"}]
        }
    body["properties"]["composite_rule"] = {
        "type": ["object", "null"],
        "description": "{'and'|'or': [sub-rules]}, nested at most "
        "[api] alarm_max_composite_depth deep, at most "
        "[api] alarm_max_composite_rules leaves; each leaf is a "
        "threshold rule with its 'type'.",
    }
    return body


def _alarm_out() -> dict[str, Any]:
    out = copy.deepcopy(_alarm_schema())
    out.pop("required", None)
    out.pop("additionalProperties", None)
    for key in ("timestamp", "state_timestamp", "evaluate_timestamp"):
        out["properties"][key] = {"type": ["string", "null"]}
    for key, prop in out["properties"].items():
        # What is stored is rendered whatever bound applies today.
        if isinstance(prop, dict):
            for bound in ("maxLength", "maxItems", "minimum", "maximum"):
                prop.pop(bound, None)
            if "items" in prop and isinstance(prop["items"], dict):
                prop["items"] = {"type": "string"}
        if key.endswith("_rule"):
            out["properties"][key] = {"type": ["object", "null"]}
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
        "user_id": _NULLABLE_TEXT,
        "project_id": _NULLABLE_TEXT,
        "on_behalf_of": _NULLABLE_TEXT,
        "severity": _NULLABLE_TEXT,
        "timestamp": {"type": ["string", "null"]},
    },
}
_QUERY = {
    "type": "object",
    "properties": {
        "filter": {
            "type": "string",
            "description": "JSON filter as text, nested at most [api] "
            "max_json_depth deep.",
        },
        "orderby": {"type": "string", "description": "JSON list as text."},
        "limit": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
_DELIVERY = {
    "type": "object",
    "properties": {
        "delivery_id": {"type": "integer"},
        "alarm_id": {"type": "string"},
        "target": {"type": "string"},
        "status": {"type": "string"},
        "attempts": {"type": ["integer", "array"]},
    },
}

_MATCHER = {
    "type": "object",
    "properties": {
        "field": {"enum": list(silences.FIELDS)},
        "op": {"enum": list(silences.OPERATORS), "default": "="},
        "value": {"type": "string", "maxLength": silences.MAX_VALUE},
    },
    "required": ["field", "value"],
    "additionalProperties": False,
}
_WHEN = {"type": ["string", "null"], "description": "ISO 8601."}
_RECURRENCE = {
    "type": ["object", "null"],
    "properties": {
        "start": {
            "type": "string",
            "description": "Cron expression (5 fields): when each "
            "window opens.",
        },
        "duration": {
            "type": "integer",
            "minimum": 1,
            "maximum": 365 * 86400,
            "description": "Seconds each window lasts.",
        },
        "timezone": {
            "type": ["string", "null"],
            "description": "IANA time zone of start (null or empty: UTC).",
        },
    },
    "required": ["start", "duration"],
    "additionalProperties": False,
}
_SILENCE_FIELDS: dict[str, Any] = {
    "matchers": {
        "type": "array",
        "items": _MATCHER,
        "minItems": 1,
        "maxItems": silences.MAX_MATCHERS,
    },
    "starts_at": {**_WHEN, "description": "ISO 8601; default now."},
    "ends_at": {**_WHEN, "description": "ISO 8601; or a recurrence."},
    "recurrence": _RECURRENCE,
    "comment": {"type": "string", "maxLength": silences.MAX_COMMENT},
    "project_id": {
        "type": ["string", "null"],
        "description": "Administrators: another project, or null "
        "for every project.",
    },
}
_SILENCE_IN = {
    "type": "object",
    "properties": _SILENCE_FIELDS,
    "required": ["matchers"],
    "additionalProperties": False,
}
_SILENCE = {
    "type": "object",
    "properties": {
        **_SILENCE_FIELDS,
        "silence_id": {"type": "string"},
        "created_by": {"type": ["string", "null"]},
        "status": {
            "enum": [silences.ACTIVE, silences.PENDING, silences.EXPIRED]
        },
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
    },
}

# ------------------------------------------------------------- v1 bodies --

_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_SPAN = {
    "type": ["number", "string"],
    "description": "Seconds, or a span such as '1h', '7 days'.",
}
_POLICY_ITEM = {
    "type": "object",
    "properties": {
        "granularity": _SPAN,
        "points": {"type": ["integer", "string", "null"], "minimum": 1},
        "timespan": {**_SPAN, "type": ["number", "string", "null"]},
    },
    "additionalProperties": False,
    "description": "Two of granularity, points and timespan.",
}
_POLICY_IN = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "definition": {"type": "array", "minItems": 1, "items": _POLICY_ITEM},
        "aggregation_methods": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Methods (one of GET /v1/capabilities), or "
            "'+m' / '-m' changes of the default list.",
        },
        "back_window": {
            "type": "integer",
            "minimum": 0,
            "maximum": policy_views.MAX_BACK_WINDOW,
        },
    },
    "required": ["name", "definition"],
    "additionalProperties": False,
}
_POLICY = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "back_window": {"type": "integer"},
        "definition": {"type": "array", "items": {"type": "object"}},
        "aggregation_methods": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "back_window", "definition", "aggregation_methods"],
}
_RULE = {
    "type": "object",
    "properties": {
        key: {"type": "string"}
        for key in ("name", "archive_policy_name", "metric_pattern")
    },
    "required": ["name", "archive_policy_name", "metric_pattern"],
}
_METRIC = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": _NULLABLE_TEXT,
        "unit": _NULLABLE_TEXT,
        "resource_id": _NULLABLE_TEXT,
        "archive_policy_name": {"type": "string"},
        "archive_policy": _POLICY,
    },
    "required": ["id", "archive_policy_name"],
}
_TIMESTAMP_IN = {
    "type": ["number", "string"],
    "description": "ISO 8601, or epoch seconds; at most [api] "
    "measure_max_future seconds ahead of the server's clock.",
}
_MEASURES_IN = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "timestamp": _TIMESTAMP_IN,
            "value": {
                "type": ["number", "string"],
                "description": "A finite number.",
            },
        },
        "required": ["timestamp", "value"],
        "additionalProperties": False,
    },
}
_STORED = {
    "type": "object",
    "properties": {
        "measures_stored": {"type": "integer", "minimum": 0},
        "measures_refused": {"type": "integer", "minimum": 0},
    },
    "required": ["measures_stored", "measures_refused"],
}
_POINTS = {
    "type": "array",
    "items": {
        "type": "array",
        "prefixItems": [
            {"type": "string"},
            {"type": "number"},
            {"type": ["number", "null"]},
        ],
        "minItems": 3,
        "maxItems": 3,
    },
    "description": "[timestamp, granularity in seconds, value].",
}
_NEW_METRIC: dict[str, Any] = {
    "type": "object",
    "properties": {
        "archive_policy_name": _NAME,
        "unit": {"type": ["string", "null"], "maxLength": 31},
    },
    "additionalProperties": False,
}
_NAMED_METRICS = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "description": "Id of an existing metric."},
            _NEW_METRIC,
        ]
    },
    "description": "Metric name -> an existing metric id or a new metric.",
}
_RESOURCE_IN: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 255},
        "user_id": {"type": ["string", "null"], "maxLength": 255},
        "project_id": {"type": ["string", "null"], "maxLength": 255},
        "started_at": {"type": ["string", "null"]},
        "ended_at": {"type": ["string", "null"]},
        "metrics": _NAMED_METRICS,
    },
    "required": ["id"],
    "description": "Plus the attributes of the resource type.",
}
_RESOURCE_PATCH = {
    "type": "object",
    "properties": {
        key: value
        for key, value in _RESOURCE_IN["properties"].items()
        if key != "id"
    },
    "description": "Plus the attributes of the resource type.",
}
_RESOURCE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "metrics": {"type": "object"},
    },
    "required": ["id", "type"],
}
_SEARCH = {
    "type": "object",
    "maxProperties": 1,
    "description": "A query: {op: {attribute: value}}, {'and'|'or': "
    "[queries]} or {'not': query}, nested at most 32 deep.",
}
_ATTRIBUTE = {
    "type": "object",
    "properties": {
        "type": {"enum": ["string", "uuid", "number", "bool", "datetime"]},
        "required": {"type": "boolean"},
        "min_length": {"type": "integer", "minimum": 0},
        "max_length": {"type": "integer", "minimum": 0},
        "min": {"type": ["number", "null"]},
        "max": {"type": ["number", "null"]},
    },
    "required": ["type"],
}
_TYPE_IN = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "attributes": {"type": "object", "additionalProperties": _ATTRIBUTE},
    },
    "required": ["name"],
    "additionalProperties": False,
}
_TYPE_PATCH = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "op": {"enum": ["add", "remove"]},
            "path": {"type": "string", "pattern": "^/attributes/"},
            "value": _ATTRIBUTE,
        },
        "required": ["op", "path"],
    },
    "description": "A JSON patch of /attributes/<name>.",
}
_TYPE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "state": {"type": "string"},
        "attributes": {"type": "object"},
    },
    "required": ["name", "attributes"],
}
_AGGREGATES_IN: dict[str, Any] = copy.deepcopy(aggregates_views.BODY_SCHEMA)
_AGGREGATES_IN["properties"]["operations"]["description"] = (
    "An operation tree as JSON lists or an S-expression, nested at most "
    f"{ops.MAX_DEPTH} deep."
)

# ---------------------------------------------------------- parameters --


def _query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": text,
    }


_STRING = {"type": "string"}
_BOOL = {"enum": ["true", "false", "yes", "no", "1", "0"]}
_V1_PAGE = (
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, ""),
    _query("marker", _STRING, "Id of the last item of the previous page."),
    _query("sort", _STRING, "key[:asc|desc]."),
)
_V1_READ = (
    _query("start", _STRING, "ISO 8601 or epoch seconds."),
    _query("stop", _STRING, "ISO 8601 or epoch seconds."),
    _query("granularity", _STRING, "Seconds or a span."),
)
_MEASURES_READ = (
    *_V1_READ,
    _query("aggregation", _STRING, "Aggregation method (default mean)."),
    _query("refresh", _BOOL, "Accepted (measures are aggregated on write)."),
)
_LEGACY_READ = (
    *_MEASURES_READ,
    _query("metric", _STRING, "Metric id (repeatable)."),
    _query("reaggregation", _STRING, "Method across metrics."),
    _query("needed_overlap", _STRING, "Percentage (default 100)."),
    _query("fill", _STRING, "null, dropna, ffill, ... or a number."),
    _query("resample", _STRING, "Granularity to resample to."),
    _query("groupby", _STRING, "Resource attribute (repeatable)."),
)
_LEGACY_POINTS = {
    "type": "array",
    "items": {"type": "array", "minItems": 3, "maxItems": 3},
}
_V2_LIST = (
    _query("q.field", _STRING, "Field of a simple query."),
    _query("q.op", {"enum": ["eq"]}, "Operator of a simple query."),
    _query("q.value", _STRING, "Value of a simple query."),
    _query("limit", {"type": "integer", "minimum": 0}, "Page size."),
    _query("marker", _STRING, "Id of the last item of the previous page."),
    _query("sort", _STRING, "key[:asc|desc], repeatable."),
)


@dataclasses.dataclass(frozen=True)
class Operation:
    """What the document says of one route besides its summary."""

    #: The success status.
    status: str = "200"
    #: Schema of the success answer (None: no body, or not described).
    response: dict[str, Any] | None = None
    #: Schema of the request body (None: no body).
    request: dict[str, Any] | None = None
    #: Whether the body may be left out.
    optional_body: bool = False
    #: Query parameters.
    query: tuple[dict[str, Any], ...] = ()
    #: Other statuses the route answers besides 4xx (e.g. 503).
    other: tuple[tuple[str, str], ...] = ()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


_BUSY = (("503", "Concurrent writers kept winning; retry (Retry-After)."),)
_OBJECT = {"type": "object"}

#: Every route's request and answers; a route not listed here answers
#: 200 without a described body and reads no body.
OPERATIONS: dict[tuple[str, str], Operation] = {
    # -- base
    ("GET", "/"): Operation(response=_OBJECT),
    ("GET", "/healthcheck"): Operation(response=_OBJECT),
    ("GET", "/openapi.json"): Operation(response=_OBJECT),
    # -- v1
    ("GET", "/v1/"): Operation(response=_OBJECT),
    ("GET", "/v1/capabilities"): Operation(response=_OBJECT),
    ("GET", "/v1/status"): Operation(response=_OBJECT),
    ("POST", "/v1/aggregates"): Operation(
        request=_AGGREGATES_IN,
        response=_OBJECT,
        query=(
            *_V1_READ,
            _query(
                "needed_overlap",
                {"type": "number", "minimum": 0, "maximum": 100},
                "Percentage of overlap the series need.",
            ),
            _query("fill", _STRING, "null, dropna, ffill, ... or a number."),
            _query("details", _BOOL, "Add the metrics referenced."),
        ),
    ),
    ("GET", "/v1/archive_policy"): Operation(response=_list("ArchivePolicy")),
    ("POST", "/v1/archive_policy"): Operation(
        status="201", request=_POLICY_IN, response=_ref("ArchivePolicy")
    ),
    ("GET", "/v1/archive_policy/{name}"): Operation(
        response=_ref("ArchivePolicy")
    ),
    ("PATCH", "/v1/archive_policy/{name}"): Operation(
        request=policy_views.PATCH_SCHEMA, response=_ref("ArchivePolicy")
    ),
    ("DELETE", "/v1/archive_policy/{name}"): Operation(status="204"),
    ("GET", "/v1/archive_policy_rule"): Operation(
        response=_list("ArchivePolicyRule")
    ),
    ("POST", "/v1/archive_policy_rule"): Operation(
        status="201",
        request=rule_views.CREATE_SCHEMA,
        response=_ref("ArchivePolicyRule"),
    ),
    ("GET", "/v1/archive_policy_rule/{name}"): Operation(
        response=_ref("ArchivePolicyRule")
    ),
    ("PATCH", "/v1/archive_policy_rule/{name}"): Operation(
        request=rule_views.PATCH_SCHEMA, response=_ref("ArchivePolicyRule")
    ),
    ("DELETE", "/v1/archive_policy_rule/{name}"): Operation(status="204"),
    ("POST", "/v1/batch/metrics/measures"): Operation(
        status="202",
        request={
            "type": "object",
            "additionalProperties": _MEASURES_IN,
            "description": "Metric id -> measures.",
        },
        response=_ref("MeasuresStored"),
        other=_BUSY,
    ),
    ("POST", "/v1/batch/resources/metrics/measures"): Operation(
        status="202",
        request={
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {
                    "anyOf": [
                        _MEASURES_IN,
                        {
                            **_NEW_METRIC,
                            "properties": {
                                **_NEW_METRIC["properties"],
                                "measures": _MEASURES_IN,
                            },
                            "required": ["measures"],
                        },
                    ]
                },
            },
            "description": "Resource id -> metric name -> measures.",
        },
        response=_ref("MeasuresStored"),
        query=(
            _query("create_metrics", _BOOL, "Create the missing metrics."),
        ),
        other=_BUSY,
    ),
    ("GET", "/v1/metric"): Operation(
        response=_list("Metric"),
        query=(
            *_V1_PAGE,
            *(
                _query(key, _STRING, "Filter.")
                for key in ("name", "unit", "archive_policy_name")
            ),
        ),
    ),
    ("POST", "/v1/metric"): Operation(
        status="201",
        request=metric_views.CREATE_SCHEMA,
        response=_ref("Metric"),
    ),
    ("GET", "/v1/metric/{metric_id}"): Operation(response=_ref("Metric")),
    ("DELETE", "/v1/metric/{metric_id}"): Operation(status="204"),
    ("GET", "/v1/metric/{metric_id}/measures"): Operation(
        response=_POINTS, query=_MEASURES_READ
    ),
    ("POST", "/v1/metric/{metric_id}/measures"): Operation(
        status="202",
        request=_MEASURES_IN,
        response=_ref("MeasuresStored"),
        other=_BUSY,
    ),
    ("GET", "/v1/resource/{type_name}"): Operation(
        response=_list("Resource"),
        query=(*_V1_PAGE, _query("details", _BOOL, "All attributes.")),
    ),
    ("POST", "/v1/resource/{type_name}"): Operation(
        status="201", request=_RESOURCE_IN, response=_ref("Resource")
    ),
    ("DELETE", "/v1/resource/{type_name}"): Operation(
        request=_SEARCH,
        optional_body=True,
        response={
            "type": "object",
            "properties": {"deleted": {"type": "integer", "minimum": 0}},
            "required": ["deleted"],
        },
    ),
    ("GET", "/v1/resource/{type_name}/{resource_id}"): Operation(
        response=_ref("Resource")
    ),
    ("PATCH", "/v1/resource/{type_name}/{resource_id}"): Operation(
        request=_RESOURCE_PATCH, response=_ref("Resource")
    ),
    ("DELETE", "/v1/resource/{type_name}/{resource_id}"): Operation(
        status="204"
    ),
    ("GET", "/v1/resource/{type_name}/{resource_id}/metric"): Operation(
        response=_list("Metric")
    ),
    ("POST", "/v1/resource/{type_name}/{resource_id}/metric"): Operation(
        request=_NAMED_METRICS, response=_list("Metric")
    ),
    (
        "GET",
        "/v1/resource/{type_name}/{resource_id}/metric/{name}",
    ): Operation(response=_ref("Metric")),
    (
        "DELETE",
        "/v1/resource/{type_name}/{resource_id}/metric/{name}",
    ): Operation(status="204"),
    (
        "GET",
        "/v1/resource/{type_name}/{resource_id}/metric/{name}/measures",
    ): Operation(response=_POINTS, query=_MEASURES_READ),
    (
        "POST",
        "/v1/resource/{type_name}/{resource_id}/metric/{name}/measures",
    ): Operation(
        status="202",
        request=_MEASURES_IN,
        response=_ref("MeasuresStored"),
        other=_BUSY,
    ),
    ("GET", "/v1/resource_type"): Operation(response=_list("ResourceType")),
    ("POST", "/v1/resource_type"): Operation(
        status="201", request=_TYPE_IN, response=_ref("ResourceType")
    ),
    ("GET", "/v1/resource_type/{name}"): Operation(
        response=_ref("ResourceType")
    ),
    ("PATCH", "/v1/resource_type/{name}"): Operation(
        request=_TYPE_PATCH, response=_ref("ResourceType")
    ),
    ("DELETE", "/v1/resource_type/{name}"): Operation(status="204"),
    ("POST", "/v1/search/resource/{type_name}"): Operation(
        request=_SEARCH,
        optional_body=True,
        response=_list("Resource"),
        query=(*_V1_PAGE, _query("details", _BOOL, "All attributes.")),
    ),
    ("GET", "/v1/resource"): Operation(response=_OBJECT),
    ("GET", "/v1/aggregation/metric"): Operation(
        response=_LEGACY_POINTS, query=_LEGACY_READ
    ),
    ("POST", "/v1/aggregation/metric"): Operation(
        request={"type": "array", "items": _STRING},
        optional_body=True,
        response=_LEGACY_POINTS,
        query=_LEGACY_READ,
    ),
    ("GET", "/v1/aggregation/resource/{type_name}/metric/{name}"): Operation(
        response={"type": "array"}, query=_LEGACY_READ
    ),
    (
        "POST",
        "/v1/aggregation/resource/{type_name}/metric/{name}",
    ): Operation(
        request=_SEARCH,
        optional_body=True,
        response={"type": "array"},
        query=_LEGACY_READ,
    ),
    # -- v2
    ("GET", "/v2/metrics"): Operation(
        response=_OBJECT,
        query=(_query("all_projects", _BOOL, "Every project (admin)."),),
    ),
    ("GET", "/v2/alarms"): Operation(response=_list("Alarm"), query=_V2_LIST),
    ("POST", "/v2/alarms"): Operation(
        status="201", request=_ref("AlarmInput"), response=_ref("Alarm")
    ),
    ("GET", "/v2/alarms/{alarm_id}"): Operation(response=_ref("Alarm")),
    ("PUT", "/v2/alarms/{alarm_id}"): Operation(
        request=_ref("AlarmInput"), response=_ref("Alarm")
    ),
    ("DELETE", "/v2/alarms/{alarm_id}"): Operation(status="204"),
    ("GET", "/v2/alarms/{alarm_id}/state"): Operation(response=_ref("State")),
    ("PUT", "/v2/alarms/{alarm_id}/state"): Operation(
        request=_ref("State"), response=_ref("State")
    ),
    ("GET", "/v2/alarms/{alarm_id}/history"): Operation(
        response=_list("AlarmChange"), query=_V2_LIST
    ),
    ("POST", "/v2/query/alarms"): Operation(
        request=_ref("ComplexQuery"), response=_list("Alarm")
    ),
    ("POST", "/v2/query/alarms/history"): Operation(
        request=_ref("ComplexQuery"), response=_list("AlarmChange")
    ),
    ("GET", "/v2/capabilities"): Operation(response=_OBJECT),
    ("GET", "/v2/capabilities/"): Operation(response=_OBJECT),
    ("GET", "/v2/quotas"): Operation(
        response=_ref("Quotas"),
        query=(_query("project_id", _STRING, "Default: the caller's."),),
    ),
    ("POST", "/v2/quotas"): Operation(
        status="201", request=_ref("QuotasInput"), response=_ref("Quotas")
    ),
    ("DELETE", "/v2/quotas/{project_id}"): Operation(status="204"),
    ("GET", "/v2/alarms/{alarm_id}/deliveries"): Operation(
        response=_list("Delivery"),
        query=(
            _query("status", _STRING, "Only deliveries in this status."),
            _query("limit", {"type": "integer", "minimum": 0}, "Page size."),
        ),
    ),
    ("GET", "/v2/alarms/{alarm_id}/deliveries/{delivery_id}"): Operation(
        response=_ref("Delivery")
    ),
    (
        "POST",
        "/v2/alarms/{alarm_id}/deliveries/{delivery_id}/redeliver",
    ): Operation(status="202", response=_ref("Delivery")),
    ("GET", "/v2/silences"): Operation(
        response=_list("Silence"),
        query=(
            _query("status", _STRING, "active, pending or expired."),
            _query("limit", {"type": "integer", "minimum": 0}, "Page size."),
        ),
    ),
    ("POST", "/v2/silences"): Operation(
        status="201", request=_ref("SilenceInput"), response=_ref("Silence")
    ),
    ("GET", "/v2/silences/{silence_id}"): Operation(response=_ref("Silence")),
    ("DELETE", "/v2/silences/{silence_id}"): Operation(
        response=_ref("Silence")
    ),
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _parameters(path: str) -> list[dict[str, Any]]:
    params = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            params.append(
                {
                    "name": part[1:-1],
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                }
            )
    return params


def _operation(
    tag: str, summary: str, spec: Operation, *, gnocchi: bool = False
) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "Success"}
    if spec.response is not None:
        success["content"] = _json(spec.response)
    responses: dict[str, Any] = {spec.status: success}
    error = _ref("GnocchiError" if gnocchi else "Error")
    for status, text in spec.other:
        responses[status] = {
            "description": text,
            "content": _json(error),
        }
    responses["4XX"] = {
        "description": "Client error: the field and the reason.",
        "content": _json(error),
    }
    operation: dict[str, Any] = {
        "tags": [tag],
        "summary": summary,
        "responses": responses,
    }
    if spec.request is not None:
        operation["requestBody"] = {
            "required": not spec.optional_body,
            "content": _json(spec.request),
        }
    return operation


def document(server_url: str = "/") -> dict[str, Any]:
    """Build the OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for tag, routes in (
        ("general", BASE_ROUTES),
        ("v1 (Gnocchi dialect)", V1_ROUTES),
        ("v2 (Aodh dialect)", V2_ROUTES),
    ):
        for method, path, summary in routes:
            spec = OPERATIONS.get((method, path), Operation())
            operation = _operation(
                tag, summary, spec, gnocchi=is_gnocchi_path(path)
            )
            parameters = _parameters(path) + list(spec.query)
            if parameters:
                operation["parameters"] = parameters
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "alarmer",
            "version": __version__,
            "description": "Gnocchi-compatible v1 metric API and "
            "Aodh-compatible v2 alarm API. Identity: X-User-Id, "
            "X-Project-Id, X-Roles (auth_mode noauth) or an API key as "
            "'Authorization: Bearer <key>' / 'X-Auth-Token' (apikey). "
            "Every JSON body is at most [api] max_body_size bytes "
            "([api] max_measures_body_size for measure pushes; 413 "
            "beyond), nested at most [api] max_json_depth deep, with "
            "finite numbers only and no NUL or lone surrogate in its "
            "strings; answers are strict JSON (a non-finite number is "
            "null).",
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
                "QuotasInput": quota_views.QUOTA_SCHEMA,
                "Quotas": {
                    "type": "object",
                    "properties": {
                        "project_id": {"type": "string"},
                        "quotas": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "resource": {"type": "string"},
                                    "limit": {"type": "integer"},
                                },
                            },
                        },
                    },
                    "required": ["project_id", "quotas"],
                },
                "Delivery": _DELIVERY,
                "SilenceInput": _SILENCE_IN,
                "Silence": _SILENCE,
                "ArchivePolicy": _POLICY,
                "ArchivePolicyRule": _RULE,
                "Metric": _METRIC,
                "MeasuresStored": _STORED,
                "Resource": _RESOURCE,
                "ResourceType": _TYPE,
                "Error": _ERROR,
                "GnocchiError": _GNOCCHI_ERROR,
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
