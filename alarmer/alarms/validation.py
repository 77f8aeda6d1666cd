"""Alarm definitions: validation, defaults and descriptions.

Pure (no I/O): the API validates bodies with :func:`validate_alarm`; the
evaluator uses :func:`threshold_rules` to walk a composite rule and
:mod:`alarmer.alarms.time_constraints` to gate evaluation.

Every failure is a :class:`RuleError` whose message names the field and
the reason, in Aodh's (WSME's) wording where Aodh has one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from alarmer import jsontext
from alarmer.alarms import model, schema, time_constraints
from alarmer.alarms.errors import RuleError, invalid
from alarmer.alarms.schema import (
    ALARM_TYPES,
    COMPARISON_OPERATORS,
    DEFAULT_LIMITS,
    SEVERITIES,
    STATES,
    THRESHOLD_TYPES,
    Limits,
)
from alarmer.metrics import policy as archive_policy

__all__ = [
    "ALARM_TYPES",
    "COMPARISON_OPERATORS",
    "SEVERITIES",
    "STATES",
    "THRESHOLD_TYPES",
    "Limits",
    "RuleError",
    "composition_form",
    "dedupe",
    "default_description",
    "threshold_rules",
    "validate_alarm",
    "validate_rule",
]

_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


@functools.lru_cache(maxsize=64)
def _schema(kind: str, limits: Limits) -> dict[str, Any]:
    if kind == "alarm":
        return schema.alarm_schema(limits)
    if kind.startswith("sub:"):
        return schema.rule_schema(kind[4:], with_type=True, limits=limits)
    return schema.rule_schema(kind, limits=limits)


@functools.lru_cache(maxsize=64)
def _validator(kind: str, limits: Limits) -> Draft202012Validator:
    return Draft202012Validator(_schema(kind, limits))


def _path(prefix: str, parts: Any) -> str:
    text = prefix
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else str(part)
    return text


def _describe(error: ValidationError, prefix: str) -> RuleError:
    field = _path(prefix, error.absolute_path)
    kind = error.validator
    # The checked value and the value of the failed keyword in the schema
    # (typed with a sentinel for errors built by hand; every error a
    # validator reports has both).
    value: Any = error.instance
    keyword_value: Any = error.validator_value
    subschema = error.schema if isinstance(error.schema, Mapping) else {}
    if kind == "required":
        missing = next(
            (
                name
                for name in keyword_value
                if isinstance(value, dict) and name not in value
            ),
            "",
        )
        return invalid(
            _path(field, [missing]), None, "Mandatory field missing."
        )
    if kind == "additionalProperties":
        allowed = set(subschema.get("properties", {}))
        extra = sorted(k for k in value if k not in allowed)
        where = f"{field}." if field else ""
        return RuleError(
            f"Unknown attribute for argument data: {where}{extra[0]}",
            _path(field, [extra[0]]),
        )
    if value is None:
        return invalid(field, None, "Mandatory field missing.")
    if kind in ("enum", "const"):
        options = keyword_value
        if kind == "const":
            options = [options]
        return invalid(
            field,
            value,
            "Value should be one of: " + ", ".join(map(str, options)),
        )
    if kind == "type":
        expected = keyword_value
        if isinstance(expected, list):
            expected = " or ".join(t for t in expected if t != "null")
        got = _JSON_TYPES.get(type(value), type(value).__name__)
        return invalid(
            field, value, f"Wrong type. Expected '{expected}', got '{got}'"
        )
    if kind == "minimum":
        return invalid(
            field,
            value,
            f"Value should be greater or equal to {keyword_value}",
        )
    if kind == "maximum":
        return invalid(
            field,
            value,
            f"Value should be lower or equal to {keyword_value}",
        )
    if kind == "minLength":
        return invalid(field, value, "Value should not be empty")
    if kind == "maxLength":
        return invalid(
            field,
            value,
            f"Value should be at most {keyword_value} characters",
        )
    if kind == "minItems":
        return invalid(
            field,
            value,
            f"At least {keyword_value} item(s) must be given",
        )
    if kind == "maxItems":
        return invalid(
            field,
            f"<{len(value)} items>",
            f"At most {keyword_value} item(s) may be given",
        )
    return invalid(field, value, error.message)


def _check(kind: str, data: Any, prefix: str, limits: Limits) -> None:
    errors = sorted(
        _validator(kind, limits).iter_errors(data),
        key=lambda e: (len(e.absolute_path), list(map(str, e.path))),
    )
    if errors:
        raise _describe(errors[0], prefix)


def _with_defaults(
    kind: str, data: Mapping[str, Any], limits: Limits
) -> dict[str, Any]:
    props = _schema(kind, limits)["properties"]
    result: dict[str, Any] = {}
    for key, prop in props.items():
        if key in data and data[key] is not None:
            result[key] = data[key]
        elif "default" in prop:
            result[key] = prop["default"]
    return result


def _digits(data: Any, keys: tuple[str, ...]) -> Any:
    """Read integers aodhclient sends as text (``"60"``): digits only."""
    if not isinstance(data, dict):
        return data
    fixed = dict(data)
    for key in keys:
        value = fixed.get(key)
        if isinstance(value, str) and value.strip().isdigit():
            fixed[key] = int(value)
    return fixed


def _check_method(field: str, method: str) -> None:
    if archive_policy.is_valid_method(method):
        return
    raise invalid(
        field,
        method,
        "aggregation_method should be in [mean, sum, last, max, min, "
        "std, median, first, count, 1pct..99pct, rate:<method>] "
        f"not {method}",
    )


def _threshold(
    alarm_type: str, data: Any, prefix: str, *, sub: bool, limits: Limits
) -> dict[str, Any]:
    kind = f"sub:{alarm_type}" if sub else alarm_type
    data = _digits(data, ("granularity", "evaluation_periods"))
    _check(kind, data, prefix, limits)
    rule = _with_defaults(kind, data, limits)
    rule["threshold"] = float(rule["threshold"])
    if not math.isfinite(rule["threshold"]):
        raise invalid(
            f"{prefix}.threshold",
            rule["threshold"],
            "Value should be a finite number",
        )
    rule["granularity"] = int(rule["granularity"])
    rule["evaluation_periods"] = int(rule["evaluation_periods"])
    _flapping(rule, prefix)
    _check_method(f"{prefix}.aggregation_method", rule["aggregation_method"])
    if alarm_type == "gnocchi_aggregation_by_resources_threshold":
        try:
            query = jsontext.loads(
                rule["query"], max_depth=limits.max_query_depth
            )
        except jsontext.JSONTextError as exc:
            where = f"{prefix}.query"
            raise invalid(
                f"{where}.{exc.path}" if exc.path else where,
                jsontext.shown(rule["query"]),
                f"Query is not a valid JSON document: {exc.reason}",
            ) from exc
        if not isinstance(query, dict):
            raise invalid(
                f"{prefix}.query",
                rule["query"],
                "Query must be a JSON object, e.g. "
                '{"=": {"server_group": "g"}}',
            )
    return rule


#: Operators for which a recovery threshold has a side: it must lie on
#: the ``ok`` side of the threshold (below it for gt/ge, above for lt/le).
_RECOVERY_SIDE = {"gt": -1, "ge": -1, "lt": 1, "le": 1}


def _flapping(rule: dict[str, Any], prefix: str) -> None:
    """Check ``datapoints_to_alarm`` and ``recovery_threshold``."""
    m_of_n = rule.get("datapoints_to_alarm")
    if m_of_n is not None:
        rule["datapoints_to_alarm"] = int(m_of_n)
        if m_of_n > rule["evaluation_periods"]:
            raise invalid(
                f"{prefix}.datapoints_to_alarm",
                m_of_n,
                "Value should be at most evaluation_periods "
                f"({rule['evaluation_periods']})",
            )
    recovery = rule.get("recovery_threshold")
    if recovery is None:
        return
    recovery = float(recovery)
    rule["recovery_threshold"] = recovery
    side = _RECOVERY_SIDE.get(rule["comparison_operator"])
    if side is None:
        raise invalid(
            f"{prefix}.recovery_threshold",
            recovery,
            "A recovery threshold needs comparison_operator gt, ge, lt or le",
        )
    if (
        not math.isfinite(recovery)
        or (recovery - rule["threshold"]) * side < 0
    ):
        where = "at most" if side < 0 else "at least"
        raise invalid(
            f"{prefix}.recovery_threshold",
            recovery,
            f"Value should be {where} the threshold "
            f"({rule['threshold']}), on the ok side of it",
        )


def _composite(
    data: Any, prefix: str, limits: Limits, depth: int = 0
) -> dict[str, Any]:
    if not isinstance(data, dict):
        got = _JSON_TYPES.get(type(data), type(data).__name__)
        raise invalid(
            prefix, data, f"Wrong type. Expected 'object', got '{got}'"
        )
    operators = [k for k in ("and", "or") if k in data]
    if operators:
        if len(data) != 1:
            raise invalid(
                prefix,
                data,
                "A composite node has exactly one key, 'and' or 'or'",
            )
        op = operators[0]
        if depth >= limits.max_composite_depth:
            raise invalid(
                f"{prefix}.{op}",
                "...",
                "Composite rules may nest and/or at most "
                f"{limits.max_composite_depth} levels deep",
            )
        items = data[op]
        if not isinstance(items, list) or not items:
            raise invalid(
                f"{prefix}.{op}",
                items,
                "Value should be a non-empty list of rules",
            )
        return {
            op: [
                _composite(item, f"{prefix}.{op}[{i}]", limits, depth + 1)
                for i, item in enumerate(items)
            ]
        }
    sub_type = data.get("type")
    if sub_type is None:
        raise invalid(
            f"{prefix}.type",
            None,
            "Mandatory field missing: a composite node is either "
            "{'and': [...]}, {'or': [...]} or a rule with a type",
        )
    if sub_type not in THRESHOLD_TYPES:
        raise invalid(
            f"{prefix}.type",
            sub_type,
            "Value should be one of: " + ", ".join(THRESHOLD_TYPES),
        )
    rule = _threshold(sub_type, data, prefix, sub=True, limits=limits)
    return {"type": sub_type, **rule}


def _count_leaves(rule: Any) -> int:
    """Threshold rules of a composite tree, without validating it."""
    count = 0
    stack = [rule]
    while stack:
        node = stack.pop()
        items = None
        if isinstance(node, dict):
            items = node.get("and", node.get("or"))
        if isinstance(items, list):
            stack.extend(items)
        else:
            count += 1
    return count


def validate_rule(
    alarm_type: str, data: Any, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """Validate the ``<alarm_type>_rule`` object and fill its defaults.

    :param limits: the bounds (metrics per rule, composite depth and
        size, resource query depth).
    :raises RuleError: naming the bad field.
    """
    prefix = f"{alarm_type}_rule"
    if alarm_type == "composite":
        leaves = _count_leaves(data)
        if leaves > limits.max_composite_rules:
            raise invalid(
                prefix,
                f"<{leaves} rules>",
                f"A composite rule holds at most "
                f"{limits.max_composite_rules} threshold rules",
            )
        return _composite(data, prefix, limits)
    return _threshold(alarm_type, data, prefix, sub=False, limits=limits)


def dedupe(urls: list[str] | None) -> list[str]:
    """Remove duplicated URLs, keeping the first occurrence's order."""
    return list(dict.fromkeys(urls or []))


def default_description(alarm_type: str) -> str:
    """Aodh's default description of an alarm of *alarm_type*."""
    return schema.DEFAULT_DESCRIPTIONS[alarm_type]


def validate_alarm(
    body: Any,
    *,
    check_action: Callable[[str, str], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Validate a POST/PUT alarm body; return the normalized definition.

    The result holds ``name, description, type, rule, enabled, severity,
    ok_actions, alarm_actions, insufficient_data_actions, repeat_actions,
    time_constraints`` (defaults filled, actions de-duplicated in order)
    and, when the body gave them, ``state``, ``project_id``, ``user_id``
    and the lifecycle options (``repeat_interval``, ``missing_data``,
    ``keep_firing_for``, ``pending_for``).  Read-only fields
    (``alarm_id``, timestamps, ``state_reason``) are accepted and dropped.

    :param check_action: called as ``check_action(field, url)`` for every
        action URL; raises :class:`RuleError` to reject it.
    :param limits: the bounds of a definition (the ``[api]`` options).
    :raises RuleError: the first problem found, naming the field.
    """
    if isinstance(body, dict) and isinstance(
        body.get("time_constraints"), list
    ):
        body = {
            **body,
            "time_constraints": [
                _digits(item, ("duration",))
                for item in body["time_constraints"]
            ],
        }
    _check("alarm", body, "", limits)
    alarm_type = body["type"]
    rule_key = f"{alarm_type}_rule"
    if body.get(rule_key) is None:
        raise RuleError(
            f"{rule_key} must be set for {alarm_type} type alarm", rule_key
        )
    for other in ALARM_TYPES:
        key = f"{other}_rule"
        if other != alarm_type and body.get(key) is not None:
            raise RuleError(
                f"{rule_key} and {key} cannot be set at the same time", key
            )
    rule = validate_rule(alarm_type, body[rule_key], limits)
    result: dict[str, Any] = {
        "name": body["name"],
        "description": body.get("description")
        or default_description(alarm_type),
        "type": alarm_type,
        "rule": rule,
        "enabled": body.get("enabled", True),
        "severity": body.get("severity", "low"),
        "repeat_actions": body.get("repeat_actions", False),
    }
    action_keys = ("ok_actions", "alarm_actions", "insufficient_data_actions")
    total = sum(len(dedupe(body.get(key))) for key in action_keys)
    if total > limits.max_actions:
        raise invalid(
            "actions",
            f"<{total} actions>",
            f"An alarm has at most {limits.max_actions} actions "
            "(ok_actions, alarm_actions and insufficient_data_actions "
            "together)",
        )
    for key in action_keys:
        urls = dedupe(body.get(key))
        if check_action is not None:
            for index, url in enumerate(urls):
                check_action(f"{key}[{index}]", url)
        result[key] = urls
    result["time_constraints"] = time_constraints.normalize(
        body.get("time_constraints") or []
    )
    for key in schema.LIFECYCLE_FIELDS:
        if body.get(key) is not None:
            result[key] = body[key]
    for key in ("state", "project_id", "user_id"):
        if body.get(key) is not None:
            result[key] = body[key]
    return result


def threshold_rules(rule: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the threshold sub-rules of a composite rule, depth first."""
    for leaf in model.leaves(rule):
        yield dict(leaf)


def composition_form(rule: Mapping[str, Any]) -> str:
    """Render a composite rule as ``(rule1 or (rule2 and rule3))``."""
    counter = iter(range(1, 1_000_000))
    return model.fold(
        rule,
        lambda _leaf: f"rule{next(counter)}",
        lambda word, parts: "(" + f" {word} ".join(parts) + ")",
    )
