"""An alarm's rule as a sentence, and the other words the pages show.

Pure: rule documents in, strings out.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from alarmer.alarms import model

SYMBOLS = {
    "lt": "<",
    "le": "\N{LESS-THAN OR EQUAL TO}",
    "eq": "=",
    "ne": "\N{NOT EQUAL TO}",
    "ge": "\N{GREATER-THAN OR EQUAL TO}",
    "gt": ">",
}
TIMES = "\N{MULTIPLICATION SIGN}"


def duration(seconds: float) -> str:
    """``90`` -> ``"90 s"``, ``3600`` -> ``"1 h"``, ``86400`` -> ``"1 d"``."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def _number(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def subject(alarm_type: str, rule: Mapping[str, Any]) -> str:
    """What a threshold rule reads: ``cpu of resource r1``..."""
    if alarm_type == model.RESOURCES_THRESHOLD:
        return (
            f"{rule.get('metric')} of {rule.get('resource_type')} "
            f"{rule.get('resource_id')}"
        )
    if alarm_type == model.BY_METRICS_THRESHOLD:
        metrics = list(rule.get("metrics") or [])
        if len(metrics) == 1:
            return f"metric {metrics[0]}"
        return f"{len(metrics)} metrics ({', '.join(metrics)})"
    if alarm_type == model.BY_RESOURCES_THRESHOLD:
        query = rule.get("query")
        with contextlib.suppress(ValueError):
            query = json.dumps(json.loads(str(query)), separators=(",", ":"))
        return (
            f"{rule.get('metric')} of the {rule.get('resource_type')} "
            f"resources matching {query}"
        )
    return alarm_type


def threshold_sentence(alarm_type: str, rule: Mapping[str, Any]) -> str:
    """E.g. ``mean of cpu of instance r1 over 3 x 60 s > 80`` (with a
    multiplication sign)."""
    op = SYMBOLS.get(str(rule.get("comparison_operator")), "?")
    return (
        f"{rule.get('aggregation_method')} of {subject(alarm_type, rule)} "
        f"over {rule.get('evaluation_periods')} {TIMES} "
        f"{_number(rule.get('granularity'))} s {op} "
        f"{_number(rule.get('threshold'))}"
    )


def sentence(alarm_type: str, rule: Any) -> str:
    """The whole rule in words (a composite one with its and/or)."""
    if alarm_type != model.COMPOSITE:
        return threshold_sentence(alarm_type, rule)

    def leaf(sub: Mapping[str, Any]) -> str:
        return threshold_sentence(str(sub.get("type")), sub)

    def join(word: str, parts: Sequence[str]) -> str:
        return "(" + f" {word.upper()} ".join(parts) + ")"

    return model.fold(rule, leaf, join)
