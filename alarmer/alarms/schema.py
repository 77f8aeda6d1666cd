"""JSON schemas of an alarm body and of each rule type.

The API validates the raw JSON against these schemas before anything
else, so that ``null`` for a mandatory field, a float where an integer is
expected or a boolean where a number is expected are rejected instead of
being coerced.  Pure data.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alarmer.alarms.model import (
    ALARM_TYPES,
    COMPARISON_OPERATORS,
    MISSING_DATA_POLICIES,
    SEVERITIES,
    STATES,
    THRESHOLD_TYPES,
)

__all__ = [
    "ALARM_TYPES",
    "COMPARISON_OPERATORS",
    "MISSING_DATA_POLICIES",
    "SEVERITIES",
    "STATES",
    "THRESHOLD_TYPES",
    "Limits",
    "alarm_schema",
    "rule_schema",
]
#: Smallest and largest granularity of a threshold rule, in seconds.
MIN_GRANULARITY = 1
MAX_GRANULARITY = 365 * 86400
#: Largest number of evaluation periods.
MAX_EVALUATION_PERIODS = 100
#: Longest name, id and URL accepted.
MAX_NAME = 255
MAX_URL = 2048
#: Largest magnitude of a threshold (the largest finite float, rounded
#: down): NaN and the infinities are refused.
MAX_THRESHOLD = 1e308
#: Longest resource query of a by-resources rule, in characters.
MAX_QUERY = 16384
#: Largest number of time constraints of an alarm.
MAX_TIME_CONSTRAINTS = 32
#: Longest cron expression or time zone name of a time constraint.
MAX_CRON = 255

_ID = {"type": "string", "minLength": 1, "maxLength": MAX_NAME}


@dataclasses.dataclass(frozen=True)
class Limits:
    """The configurable bounds of an alarm definition.

    The defaults are those of the ``[api]`` options of the same meaning
    (:meth:`from_options` reads them).
    """

    #: Longest description (``alarm_max_description_length``).
    max_description: int = 4096
    #: Most actions per state, -1 for no bound (``alarm_max_actions``).
    max_actions_per_state: int = 10
    #: Most actions of the alarm (``alarm_max_total_actions``).
    max_actions: int = 20
    #: Most metric ids of one rule (``alarm_max_rule_metrics``).
    max_metrics: int = 100
    #: Deepest and/or nesting of a composite rule
    #: (``alarm_max_composite_depth``).
    max_composite_depth: int = 10
    #: Most threshold rules of a composite rule
    #: (``alarm_max_composite_rules``).
    max_composite_rules: int = 32
    #: Deepest nesting of a resource query's JSON (``max_json_depth``).
    max_query_depth: int = 32

    @classmethod
    def from_options(cls, options: Any) -> Limits:
        """The bounds set in the ``[api]`` group *options*."""
        return cls(
            max_description=int(options.alarm_max_description_length),
            max_actions_per_state=int(options.alarm_max_actions),
            max_actions=int(options.alarm_max_total_actions),
            max_metrics=int(options.alarm_max_rule_metrics),
            max_composite_depth=int(options.alarm_max_composite_depth),
            max_composite_rules=int(options.alarm_max_composite_rules),
            max_query_depth=int(options.max_json_depth),
        )


#: The bounds used when none are given.
DEFAULT_LIMITS = Limits()

#: Fields every threshold rule has, with their defaults.
THRESHOLD_COMMON: dict[str, Any] = {
    "comparison_operator": {
        "enum": list(COMPARISON_OPERATORS),
        "default": "eq",
        "description": "How a point is compared with the threshold.",
    },
    "threshold": {
        "type": "number",
        "minimum": -MAX_THRESHOLD,
        "maximum": MAX_THRESHOLD,
        "description": "The value points are compared with (finite).",
    },
    "aggregation_method": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_NAME,
        "description": "Aggregation method of the series "
        "(one of the engine's capabilities).",
    },
    "granularity": {
        "type": "integer",
        "minimum": MIN_GRANULARITY,
        "maximum": MAX_GRANULARITY,
        "default": 60,
        "description": "Granularity of the points, in seconds.",
    },
    "evaluation_periods": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_EVALUATION_PERIODS,
        "default": 1,
        "description": "How many consecutive points must breach.",
    },
}
_COMMON_REQUIRED = ["threshold", "aggregation_method"]

#: Optional flapping controls of a threshold rule (absent: Aodh's rule,
#: every one of the ``evaluation_periods`` points must breach, and the
#: same threshold decides the way back to ``ok``).
THRESHOLD_OPTIONAL: dict[str, Any] = {
    "datapoints_to_alarm": {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": MAX_EVALUATION_PERIODS,
        "description": "How many of the evaluation_periods points must "
        "breach for alarm (M of N); at most evaluation_periods.",
    },
    "recovery_threshold": {
        "type": ["number", "null"],
        "minimum": -MAX_THRESHOLD,
        "maximum": MAX_THRESHOLD,
        "description": "While in alarm, the threshold points must be "
        "back within for ok (hysteresis); on the ok side of threshold.",
    },
}

#: Longest lifecycle period (repeat interval, keep firing, pending), in
#: seconds.
MAX_LIFECYCLE_PERIOD = 365 * 86400

#: Optional lifecycle options of an alarm (absent or null: Aodh's
#: behaviour).
LIFECYCLE_FIELDS: dict[str, Any] = {
    "repeat_interval": {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": MAX_LIFECYCLE_PERIOD,
        "description": "With repeat_actions, re-notify an unchanged "
        "state at most once per this many seconds (unset: at every "
        "evaluation).",
    },
    "missing_data": {
        "enum": [*MISSING_DATA_POLICIES, None],
        "description": "What the alarm does when its window holds fewer "
        "points than it needs: insufficient_data (the default), ok, "
        "alarm or keep_last.",
    },
    "keep_firing_for": {
        "type": ["integer", "null"],
        "minimum": 0,
        "maximum": MAX_LIFECYCLE_PERIOD,
        "description": "Seconds the alarm stays in alarm after its "
        "condition cleared.",
    },
    "pending_for": {
        "type": ["integer", "null"],
        "minimum": 0,
        "maximum": MAX_LIFECYCLE_PERIOD,
        "description": "Seconds the condition must hold before the "
        "alarm goes to alarm.",
    },
    "evaluation_interval": {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": 86400,
        "description": "Seconds between two evaluations of this alarm "
        "(unset: the service's; raised to [evaluator] "
        "min_evaluation_interval).",
    },
}

#: The fields specific to each threshold type (with their descriptions).
TYPE_FIELDS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "gnocchi_resources_threshold": (
        {
            "metric": {**_ID, "description": "Metric name."},
            "resource_id": {**_ID, "description": "Resource id."},
            "resource_type": {**_ID, "description": "Resource type."},
        },
        ["metric", "resource_id", "resource_type"],
    ),
    "gnocchi_aggregation_by_metrics_threshold": (
        {
            "metrics": {
                "type": "array",
                "items": _ID,
                "minItems": 1,
                "description": "Metric ids aggregated together.",
            },
        },
        ["metrics"],
    ),
    "gnocchi_aggregation_by_resources_threshold": (
        {
            "metric": {**_ID, "description": "Metric name."},
            "resource_type": {**_ID, "description": "Resource type."},
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_QUERY,
                "description": "Resource search query, a JSON document "
                'given as a string, e.g. {"=": {"server_group": "g"}}.',
            },
        },
        ["metric", "resource_type", "query"],
    ),
}

#: Default description of each type (Aodh's wording).
DEFAULT_DESCRIPTIONS = {t: f"{t} alarm rule" for t in ALARM_TYPES}


def rule_schema(
    alarm_type: str,
    *,
    with_type: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Return the JSON schema of the ``<alarm_type>_rule`` object.

    :param with_type: include a ``type`` property (sub-rules of a
        composite rule carry their type).
    :param limits: the bounds (most metrics of a rule).
    """
    fields, required = TYPE_FIELDS[alarm_type]
    properties: dict[str, Any] = {
        **fields,
        **THRESHOLD_COMMON,
        **THRESHOLD_OPTIONAL,
    }
    if "metrics" in properties:
        properties["metrics"] = {
            **properties["metrics"],
            "maxItems": limits.max_metrics,
        }
    if with_type:
        properties = {"type": {"const": alarm_type}, **properties}
    return {
        "type": "object",
        "properties": properties,
        "required": [*required, *_COMMON_REQUIRED],
        "additionalProperties": False,
    }


def _time_constraint(limits: Limits) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {**_ID, "description": "Unique within the alarm."},
            "description": {
                "type": ["string", "null"],
                "maxLength": limits.max_description,
            },
            "start": {
                "type": "string",
                "maxLength": MAX_CRON,
                "description": "Cron expression (5 fields) starting "
                "each window.",
            },
            "duration": {
                "type": "integer",
                "minimum": 0,
                "maximum": 365 * 86400,
                "description": "Length of each window, in seconds.",
            },
            "timezone": {
                "type": ["string", "null"],
                "maxLength": MAX_CRON,
                "description": "IANA time zone of the cron expression "
                "(empty: UTC).",
            },
        },
        "required": ["name", "start", "duration"],
        "additionalProperties": False,
    }


def alarm_schema(limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Return the JSON schema of a POST/PUT alarm body.

    Every field a GET returns is accepted (read-only ones are ignored),
    so that clients can PUT back what they read.

    :param limits: the bounds (description, actions per state).
    """
    actions: dict[str, Any] = {
        "type": ["array", "null"],
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_URL},
    }
    if limits.max_actions_per_state >= 0:
        actions["maxItems"] = limits.max_actions_per_state
    timestamp = {"type": ["string", "null"], "maxLength": MAX_NAME}
    properties: dict[str, Any] = {
        "name": {**_ID, "description": "Name (not unique)."},
        "description": {
            "type": ["string", "null"],
            "maxLength": limits.max_description,
        },
        "type": {"enum": list(ALARM_TYPES)},
        "enabled": {"type": "boolean", "default": True},
        "state": {"enum": list(STATES)},
        "severity": {"enum": list(SEVERITIES), "default": "low"},
        "ok_actions": actions,
        "alarm_actions": actions,
        "insufficient_data_actions": actions,
        "repeat_actions": {"type": "boolean", "default": False},
        "time_constraints": {
            "type": ["array", "null"],
            "maxItems": MAX_TIME_CONSTRAINTS,
            "items": _time_constraint(limits),
        },
        **LIFECYCLE_FIELDS,
        "project_id": {"type": ["string", "null"], "maxLength": MAX_NAME},
        "user_id": {"type": ["string", "null"], "maxLength": MAX_NAME},
        # Read-only: accepted back, ignored.
        "alarm_id": {"type": ["string", "null"], "maxLength": MAX_NAME},
        "state_reason": {"type": ["string", "null"]},
        "state_timestamp": timestamp,
        "timestamp": timestamp,
        "evaluate_timestamp": timestamp,
    }
    for alarm_type in THRESHOLD_TYPES:
        properties[f"{alarm_type}_rule"] = {"type": ["object", "null"]}
    properties["composite_rule"] = {"type": ["object", "null"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": ["name", "type"],
        "additionalProperties": False,
    }


#: Fields a client may not set (the server owns them).
READ_ONLY = (
    "alarm_id",
    "state_reason",
    "state_timestamp",
    "timestamp",
    "evaluate_timestamp",
)
