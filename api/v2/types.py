"""WSME types of the v2 wire format: alarms, history, quotas, capabilities.

These types are the model of every v2 body and response.  A request body is
first validated as raw JSON (:mod:`alarmer.alarms.validation`, jsonschema),
which rejects ``null`` for mandatory fields and floats given for integers
instead of coercing them as WSME would; the WSME object is then built from the
validated, defaulted dict.  Responses are rendered with
:func:`wsme.rest.json.tojson`, so attributes left unset are omitted (as
Aodh does) while attributes set to ``None`` are rendered as ``null``.

Attribute order follows Aodh's documents (``_wsme_attr_order``), so the
rendered JSON keeps the same key order as before the types existed.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from typing import Any

import wsme
from wsme import types as wtypes
from wsme.rest import json as wjson

from alarmer import timeutils
from alarmer.alarms import schema

__all__ = [
    "RULE_TYPES",
    "Alarm",
    "AlarmChange",
    "AlarmState",
    "AlarmTimeConstraint",
    "AwareDateTime",
    "Capabilities",
    "CompositeRule",
    "GnocchiAggregationByMetricsThresholdRule",
    "GnocchiAggregationByResourcesThresholdRule",
    "GnocchiResourcesThresholdRule",
    "Quota",
    "Quotas",
    "alarm_from_row",
    "alarm_from_values",
    "alarm_values",
    "parse",
    "render",
]


class AwareDateTime(wtypes.UserType):
    """An aware datetime, rendered as ISO 8601 in UTC with ``+00:00``.

    WSME's own ``datetime`` parses text without its offset; this type
    keeps the instant (naive text is read as UTC).
    """

    basetype = wtypes.text
    name = "aware_datetime"

    def validate(self, value: Any) -> dt.datetime:
        """Accept only aware datetimes (naive ones would be ambiguous)."""
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError(f"Not an aware datetime: {value!r}")
        return value

    def tobasetype(self, value: dt.datetime | None) -> str | None:
        """ISO 8601 with an explicit ``+00:00`` offset."""
        return timeutils.isoformat(value)

    def frombasetype(self, value: str | None) -> dt.datetime | None:
        """Parse ISO 8601 text (naive text is UTC)."""
        if value is None:
            return None
        return timeutils.parse_datetime(value)


class CompositeRule(wtypes.UserType):
    """A composite rule: ``{"and"|"or": [node, ...]}`` as a JSON object.

    Its structure (nested operators and typed threshold sub-rules) is
    checked by :func:`alarmer.alarms.validation.validate_rule` before WSME
    sees it;
    WSME carries the object as is.
    """

    basetype = wtypes.text
    name = "composite_rule"

    def validate(self, value: Any) -> dict[str, Any]:
        """Accept a JSON object."""
        if not isinstance(value, dict):
            raise ValueError(f"Not a JSON object: {value!r}")
        return value

    def tobasetype(self, value: Any) -> Any:
        """The object itself (already JSON)."""
        return value

    def frombasetype(self, value: Any) -> Any:
        """The object itself (already JSON)."""
        return value


#: Enums of the alarm document.
AlarmState = wtypes.Enum(str, *schema.STATES)
Severity = wtypes.Enum(str, *schema.SEVERITIES)
AlarmType = wtypes.Enum(str, *schema.ALARM_TYPES)
ComparisonOperator = wtypes.Enum(str, *schema.COMPARISON_OPERATORS)
MissingData = wtypes.Enum(str, *schema.MISSING_DATA_POLICIES)

#: Fields every threshold rule ends with, in the stored order.
_THRESHOLD_ORDER = (
    "comparison_operator",
    "threshold",
    "aggregation_method",
    "granularity",
    "evaluation_periods",
    "datapoints_to_alarm",
    "recovery_threshold",
)


class GnocchiResourcesThresholdRule(wtypes.Base):
    """Threshold on one metric of one resource."""

    _wsme_attr_order = (
        "metric",
        "resource_id",
        "resource_type",
        *_THRESHOLD_ORDER,
    )

    metric = wtypes.text
    resource_id = wtypes.text
    resource_type = wtypes.text
    comparison_operator = ComparisonOperator
    threshold = float
    aggregation_method = wtypes.text
    granularity = int
    evaluation_periods = int
    datapoints_to_alarm = int
    recovery_threshold = float


class GnocchiAggregationByMetricsThresholdRule(wtypes.Base):
    """Threshold on metrics aggregated together."""

    _wsme_attr_order = ("metrics", *_THRESHOLD_ORDER)

    metrics = [wtypes.text]
    comparison_operator = ComparisonOperator
    threshold = float
    aggregation_method = wtypes.text
    granularity = int
    evaluation_periods = int
    datapoints_to_alarm = int
    recovery_threshold = float


class GnocchiAggregationByResourcesThresholdRule(wtypes.Base):
    """Threshold on one metric aggregated across a resource search."""

    _wsme_attr_order = (
        "metric",
        "resource_type",
        "query",
        *_THRESHOLD_ORDER,
    )

    metric = wtypes.text
    resource_type = wtypes.text
    query = wtypes.text
    comparison_operator = ComparisonOperator
    threshold = float
    aggregation_method = wtypes.text
    granularity = int
    evaluation_periods = int
    datapoints_to_alarm = int
    recovery_threshold = float


#: The WSME type of ``<type>_rule`` for each alarm type.
RULE_TYPES: dict[str, Any] = {
    "gnocchi_resources_threshold": GnocchiResourcesThresholdRule,
    "gnocchi_aggregation_by_metrics_threshold": (
        GnocchiAggregationByMetricsThresholdRule
    ),
    "gnocchi_aggregation_by_resources_threshold": (
        GnocchiAggregationByResourcesThresholdRule
    ),
    "composite": CompositeRule(),
}


class AlarmTimeConstraint(wtypes.Base):
    """A cron-started window in which the alarm is evaluated."""

    _wsme_attr_order = (
        "name",
        "description",
        "start",
        "duration",
        "timezone",
    )

    name = wtypes.text
    description = wtypes.text
    start = wtypes.text
    duration = int
    timezone = wtypes.text


_AWARE = AwareDateTime()


class Alarm(wtypes.Base):
    """An alarm, as POSTed, PUT and returned (Aodh's document).

    Exactly one ``<type>_rule`` attribute is set, the one of ``type``.
    """

    _wsme_attr_order = (
        "alarm_actions",
        "alarm_id",
        "description",
        "enabled",
        "evaluate_timestamp",
        "composite_rule",
        "gnocchi_aggregation_by_metrics_threshold_rule",
        "gnocchi_aggregation_by_resources_threshold_rule",
        "gnocchi_resources_threshold_rule",
        "insufficient_data_actions",
        "name",
        "ok_actions",
        "project_id",
        "repeat_actions",
        "severity",
        "state",
        "state_reason",
        "state_timestamp",
        "time_constraints",
        "timestamp",
        "type",
        "user_id",
        "repeat_interval",
        "missing_data",
        "keep_firing_for",
        "pending_for",
        "evaluation_interval",
    )

    alarm_actions = [wtypes.text]
    alarm_id = wtypes.text
    description = wtypes.text
    enabled = bool
    evaluate_timestamp = wsme.wsattr(_AWARE)
    composite_rule = wsme.wsattr(RULE_TYPES["composite"])
    gnocchi_aggregation_by_metrics_threshold_rule = (
        GnocchiAggregationByMetricsThresholdRule
    )
    gnocchi_aggregation_by_resources_threshold_rule = (
        GnocchiAggregationByResourcesThresholdRule
    )
    gnocchi_resources_threshold_rule = GnocchiResourcesThresholdRule
    insufficient_data_actions = [wtypes.text]
    name = wtypes.text
    ok_actions = [wtypes.text]
    project_id = wtypes.text
    repeat_actions = bool
    severity = Severity
    state = AlarmState
    state_reason = wtypes.text
    state_timestamp = wsme.wsattr(_AWARE)
    time_constraints = [AlarmTimeConstraint]
    timestamp = wsme.wsattr(_AWARE)
    type = AlarmType
    user_id = wtypes.text
    # Lifecycle options: present only when set.
    repeat_interval = int
    missing_data = MissingData
    keep_firing_for = int
    pending_for = int
    evaluation_interval = int


class AlarmChange(wtypes.Base):
    """One history entry of an alarm."""

    _wsme_attr_order = (
        "alarm_id",
        "detail",
        "event_id",
        "on_behalf_of",
        "project_id",
        "severity",
        "timestamp",
        "type",
        "user_id",
    )

    alarm_id = wtypes.text
    detail = wtypes.text
    event_id = wtypes.text
    on_behalf_of = wtypes.text
    project_id = wtypes.text
    severity = wtypes.text
    timestamp = wsme.wsattr(_AWARE)
    type = wtypes.text
    user_id = wtypes.text


class Quota(wtypes.Base):
    """The limit of one resource."""

    _wsme_attr_order = ("resource", "limit")

    resource = wtypes.Enum(str, "alarms")
    limit = int


class Quotas(wtypes.Base):
    """The quotas of a project."""

    _wsme_attr_order = ("project_id", "quotas")

    project_id = wtypes.text
    quotas = [Quota]


class Capabilities(wtypes.Base):
    """What the API and its alarm storage support."""

    _wsme_attr_order = ("alarm_storage", "api")

    alarm_storage = {wtypes.text: bool}
    api = {wtypes.text: bool}


# -- conversions ----------------------------------------------------------


def _converter(datatype: Any) -> Callable[[Any], Any]:
    """Compile WSME's ``tojson`` for *datatype* into one function.

    Same output as :func:`wsme.rest.json.tojson` (``None`` stays
    ``None``, unset attributes are omitted), without its per-value
    generic dispatch, which costs more than the rest of a list page.
    """
    if isinstance(datatype, list):
        datatype = wtypes.ArrayType(datatype[0])
    elif isinstance(datatype, dict):
        datatype = wtypes.DictType(*next(iter(datatype.items())))
    if wtypes.iscomplex(datatype):
        return _complex_converter(datatype)
    if isinstance(datatype, wtypes.ArrayType):
        item = _converter(datatype.item_type)
        return lambda v: None if v is None else [item(x) for x in v]
    if isinstance(datatype, wtypes.DictType):
        key, val = (
            _converter(datatype.key_type),
            _converter(datatype.value_type),
        )
        return lambda v: (
            None if v is None else {key(k): val(x) for k, x in v.items()}
        )
    if wtypes.isusertype(datatype):
        base, to_base = _converter(datatype.basetype), datatype.tobasetype
        return lambda v: None if v is None else base(to_base(v))
    if datatype in (wtypes.text, int, float, bool):
        return _same
    return functools.partial(wjson.tojson, datatype)


def _same(value: Any) -> Any:
    return value


@functools.cache
def _complex_converter(datatype: type) -> Callable[[Any], Any]:
    plan = [
        (attr.key, attr.name, _converter(attr.datatype))
        for attr in wtypes.list_attributes(datatype)
    ]
    unset = wtypes.Unset

    def convert(obj: Any) -> Any:
        if obj is None:
            return None
        result = {}
        for key, name, conv in plan:
            value = getattr(obj, key)
            if value is not unset:
                result[name] = conv(value)
        return result

    return convert


def render(datatype: Any, value: Any) -> Any:
    """Return the JSON-ready form of *value* (a *datatype* instance).

    Equal to ``wsme.rest.json.tojson(datatype, value)``.
    """
    return _converter(datatype)(value)


def parse(datatype: Any, value: Any) -> Any:
    """Build a *datatype* instance from already validated JSON *value*."""
    return wjson.fromjson(datatype, value)


def _build(datatype: type, values: Mapping[str, Any]) -> Any:
    """Instantiate *datatype*, setting (and type-checking) *values*.

    Like ``datatype(**values)`` without its per-key ``hasattr``; a key
    that is not an attribute is an error.
    """
    obj = datatype()
    for key, value in values.items():
        setattr(obj, key, value)
    return obj


def _rule_object(alarm_type: str, rule: Mapping[str, Any]) -> Any:
    rule_type = RULE_TYPES[alarm_type]
    if isinstance(rule_type, wtypes.UserType):
        return rule
    return _build(rule_type, rule)


def alarm_from_values(values: Mapping[str, Any]) -> Alarm:
    """Build the request's :class:`Alarm` from a validated definition.

    *values* is what :func:`alarmer.alarms.validation.validate_alarm`
    returned (the rule under ``rule``); keys it does not hold stay unset.
    """
    wire = {k: v for k, v in values.items() if k != "rule"}
    wire[f"{values['type']}_rule"] = values["rule"]
    return wjson.fromjson(Alarm, wire)


def alarm_values(alarm: Alarm) -> dict[str, Any]:
    """Return the store's definition dict of a request's :class:`Alarm`."""
    values = render(Alarm, alarm)
    values["rule"] = values.pop(f"{alarm.type}_rule")
    return values


def alarm_from_row(row: Mapping[str, Any]) -> Alarm:
    """Build the :class:`Alarm` of a stored row (every field set)."""
    alarm_type = row["type"]
    return _build(
        Alarm,
        {
            "alarm_actions": list(row["alarm_actions"]),
            "alarm_id": row["alarm_id"],
            "description": row["description"],
            "enabled": row["enabled"],
            "evaluate_timestamp": row["evaluate_timestamp"],
            f"{alarm_type}_rule": _rule_object(alarm_type, row["rule"]),
            "insufficient_data_actions": list(
                row["insufficient_data_actions"]
            ),
            "name": row["name"],
            "ok_actions": list(row["ok_actions"]),
            "project_id": row["project_id"],
            "repeat_actions": row["repeat_actions"],
            "severity": row["severity"],
            "state": row["state"],
            "state_reason": row["state_reason"],
            "state_timestamp": row["state_timestamp"],
            "time_constraints": [
                _build(AlarmTimeConstraint, tc)
                for tc in row["time_constraints"]
            ],
            "timestamp": row["timestamp"],
            "type": alarm_type,
            "user_id": row["user_id"],
            **{
                key: row[key] for key in _LIFECYCLE if row.get(key) is not None
            },
        },
    )


#: Optional lifecycle attributes of :class:`Alarm` (unset when null).
_LIFECYCLE = (
    "repeat_interval",
    "missing_data",
    "keep_firing_for",
    "pending_for",
    "evaluation_interval",
)


def _resolve_attribute_types() -> None:
    """Resolve the datatype of every attribute of the types above, now.

    WSME resolves the datatype of a complex type's attribute on its first
    use, and not atomically: two request threads of a fresh API process
    reading it at once may find it half resolved (``TypeError:
    'ArrayType' object is not subscriptable``: a 500 on the first
    concurrent alarm creations).  The module's import runs in one thread.
    """
    for value in list(globals().values()):
        if isinstance(value, type) and issubclass(value, wtypes.Base):
            for attr in wtypes.list_attributes(value):
                if attr.datatype is None:  # resolves it
                    raise TypeError(f"{value.__name__}.{attr.name}: no type")


_resolve_attribute_types()
