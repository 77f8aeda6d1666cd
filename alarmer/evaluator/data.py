"""Reading an alarm's points from the metrics engine.

Two steps, as in Aodh's Gnocchi evaluators:

* *resolution*: which metrics a rule reads (:func:`resolve`):
  ``gnocchi_resources_threshold`` -> the metric named ``metric`` of
  resource ``resource_id``; ``gnocchi_aggregation_by_metrics_threshold``
  -> the listed ``metrics``; ``gnocchi_aggregation_by_resources_threshold``
  -> the metric named ``metric`` of every resource of ``resource_type``
  matching ``query`` at evaluation time;
* *reading*: the newest buckets of the rule's granularity, aggregated
  across metrics when there are several (:func:`read_outcome`), turned
  into a :class:`~alarmer.evaluator.decide.Outcome`.

Every failure becomes an ``insufficient data`` outcome with Aodh's texts
(``metric X for resource R does not exists``, ``At least of metrics in
[...] does not exist``, ``alarm statistics retrieval failed: <error>``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy import orm

from alarmer.engine.indexer import Metric
from alarmer.evaluator import decide
from alarmer.evaluator.decide import Outcome

LOG = logging.getLogger(__name__)

RESOURCES = "gnocchi_resources_threshold"
BY_METRICS = "gnocchi_aggregation_by_metrics_threshold"
BY_RESOURCES = "gnocchi_aggregation_by_resources_threshold"
THRESHOLD_TYPES = (RESOURCES, BY_METRICS, BY_RESOURCES)
COMPOSITE = "composite"


class SeriesLike(Protocol):
    """What the engine returns: bucket starts (ns) and values."""

    timestamps: np.ndarray
    values: np.ndarray


class Engine(Protocol):
    """The part of the metrics engine the evaluator uses."""

    def last_buckets(
        self, metric_id: str, method: str, granularity: int, n: int
    ) -> SeriesLike:
        """Newest *n* buckets of one series, the current one included."""


class Unresolved(Exception):
    """A rule's metrics cannot be found; the message is Aodh's reason."""


def base_method(method: str) -> str:
    """The per-metric method of a cross-metric aggregation (Aodh)."""
    return method[5:] if method.startswith("rate:") else method


def _resource_ids(session: orm.Session, resource_id: str) -> list[str]:
    """Stored resource ids for a client's resource id.

    A UUID is taken as is; any other string is looked up by the original
    id the client used (the stored id is derived from it and the
    creator).
    """
    try:
        return [str(uuid.UUID(resource_id))]
    except ValueError:
        pass
    try:
        from alarmer.engine.resources import ResourceModel
    except ImportError:
        return []
    return list(
        session.scalars(
            sa.select(ResourceModel.id).where(
                ResourceModel.original_resource_id == resource_id
            )
        )
    )


def resolve_resource_metric(
    session: orm.Session, resource_id: str, metric_name: str
) -> str:
    """Metric id of *metric_name* on the resource *resource_id*.

    :raises Unresolved: with Aodh's reason when there is none.
    """
    ids = _resource_ids(session, resource_id)
    if ids:
        found = session.scalars(
            sa.select(Metric.id)
            .where(Metric.resource_id.in_(ids), Metric.name == metric_name)
            .limit(1)
        ).first()
        if found:
            return found
    raise Unresolved(
        f"metric {metric_name} for resource {resource_id} does not exists"
    )


def resolve_metrics(
    session: orm.Session, metric_ids: Sequence[str]
) -> list[str]:
    """Check that every listed metric exists.

    :raises Unresolved: ``At least of metrics in [...] does not exist``.
    """
    wanted = [str(m) for m in metric_ids]
    found = set(
        session.scalars(sa.select(Metric.id).where(Metric.id.in_(wanted)))
    )
    if not wanted or any(m not in found for m in wanted):
        raise Unresolved(
            f"At least of metrics in {list(metric_ids)!r} does not exist"
        )
    return wanted


def resolve_by_resources(
    session: orm.Session, rule: Mapping[str, Any]
) -> list[str]:
    """Metric ids named ``metric`` of the resources matching the query.

    :raises Unresolved: unknown resource type, bad query, or no match.
    """
    try:
        from alarmer.engine import resources as res
        from alarmer.engine import search
    except ImportError as exc:
        raise Unresolved(
            "alarm statistics retrieval failed: resource search is not "
            f"available ({exc})"
        ) from exc
    try:
        query = rule.get("query") or "{}"
        parsed = json.loads(query) if isinstance(query, str) else query
        rtype = res.get_type(session, rule.get("resource_type") or "generic")
        clause = sa.and_(
            search.type_clause(rtype), search.compile_query(parsed, rtype)
        )
    except Exception as exc:
        raise Unresolved(f"alarm statistics retrieval failed: {exc}") from exc
    matching = sa.select(res.ResourceModel.id).where(clause)
    ids = list(
        session.scalars(
            sa.select(Metric.id)
            .where(
                Metric.resource_id.in_(matching),
                Metric.name == rule.get("metric"),
            )
            .order_by(Metric.id)
        )
    )
    if not ids:
        raise Unresolved(
            f"No datapoint for granularity {rule.get('granularity')}"
        )
    return ids


def resolve(
    session: orm.Session, alarm_type: str, rule: Mapping[str, Any]
) -> list[str]:
    """Metric ids a threshold rule of *alarm_type* reads now.

    :raises Unresolved: with the reason the alarm reports.
    """
    if alarm_type == RESOURCES:
        return [
            resolve_resource_metric(
                session, str(rule.get("resource_id")), str(rule.get("metric"))
            )
        ]
    if alarm_type == BY_METRICS:
        return resolve_metrics(session, rule.get("metrics") or [])
    if alarm_type == BY_RESOURCES:
        return resolve_by_resources(session, rule)
    raise Unresolved(f"alarm type {alarm_type} cannot be evaluated")


def buckets_needed(rule: Mapping[str, Any], lag: float) -> int:
    """How many newest buckets cover the look-back window."""
    granularity = float(rule["granularity"])
    return int(rule["evaluation_periods"]) + 2 + math.ceil(lag / granularity)


def _aggregate_across(
    series: list[SeriesLike], method: str, *, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    from alarmer.engine import cross

    result = cross.aggregate_across(
        series, method, start=start, stop=stop, needed_overlap=0.0
    )
    return result.timestamps, result.values


def read_outcome(
    engine: Engine,
    alarm_type: str,
    rule: Mapping[str, Any],
    metric_ids: Sequence[str],
    now: dt.datetime,
    *,
    lag: float = 0,
) -> Outcome:
    """Read the points of a threshold rule and assess them.

    Engine errors become ``insufficient data`` outcomes with Aodh's text;
    they are logged by the caller, which knows the alarm id.
    """
    method = rule.get("aggregation_method") or "mean"
    granularity = int(rule["granularity"])
    gran_ns = granularity * decide.NS
    n = buckets_needed(rule, lag)
    try:
        if len(metric_ids) == 1 and alarm_type == RESOURCES:
            found = engine.last_buckets(metric_ids[0], method, gran_ns, n)
            timestamps, values = found.timestamps, found.values
        else:
            per_metric = [
                engine.last_buckets(m, base_method(method), gran_ns, n)
                for m in metric_ids
            ]
            now_ns = decide.to_ns(now)
            window_ns = gran_ns * (int(rule["evaluation_periods"]) + 1)
            window_ns += round(lag * decide.NS)
            timestamps, values = _aggregate_across(
                per_metric, method, start=now_ns - window_ns, stop=now_ns
            )
    except LookupError as exc:
        if alarm_type == RESOURCES:
            return decide.insufficient(
                f"aggregation {method} does not exist for metric "
                f"{rule.get('metric')} of resource {rule.get('resource_id')}"
            )
        return decide.insufficient(f"alarm statistics retrieval failed: {exc}")
    return decide.assess_rule(rule, timestamps, values, now, lag=lag)


def bulk_resolve(
    session: orm.Session, items: Sequence[tuple[str, Mapping[str, Any]]]
) -> list[list[str] | Unresolved]:
    """Resolve many ``(alarm type, threshold rule)`` pairs at once.

    ``gnocchi_resources_threshold`` rules on UUID resources and
    by-metrics rules are resolved with one query per chunk; the others
    one by one.  Each result is the metric ids or the
    :class:`Unresolved` error.
    """
    results: list[list[str] | Unresolved | None] = [None] * len(items)
    by_pair: dict[tuple[str, str], list[int]] = {}
    by_metric: dict[int, list[str]] = {}
    for index, (alarm_type, rule) in enumerate(items):
        if alarm_type == RESOURCES:
            try:
                rid = str(uuid.UUID(str(rule.get("resource_id"))))
            except ValueError:
                continue
            key = (rid, str(rule.get("metric")))
            by_pair.setdefault(key, []).append(index)
        elif alarm_type == BY_METRICS:
            by_metric[index] = [str(m) for m in rule.get("metrics") or []]
    pairs = list(by_pair)
    for start in range(0, len(pairs), 500):
        chunk = pairs[start : start + 500]
        rids = {rid for rid, _ in chunk}
        rows = session.execute(
            sa.select(Metric.id, Metric.resource_id, Metric.name).where(
                Metric.resource_id.in_(rids)
            )
        ).all()
        found = {(r.resource_id, r.name): r.id for r in rows}
        for key in chunk:
            metric_id = found.get(key)
            for index in by_pair[key]:
                if metric_id:
                    results[index] = [metric_id]
    wanted = sorted({m for ms in by_metric.values() for m in ms})
    existing: set[str] = set()
    for start in range(0, len(wanted), 500):
        existing.update(
            session.scalars(
                sa.select(Metric.id).where(
                    Metric.id.in_(wanted[start : start + 500])
                )
            )
        )
    for index, metric_ids in by_metric.items():
        if metric_ids and all(m in existing for m in metric_ids):
            results[index] = metric_ids
    final: list[list[str] | Unresolved] = []
    for index, result in enumerate(results):
        if result is not None:
            final.append(result)
            continue
        alarm_type, rule = items[index]
        try:
            final.append(resolve(session, alarm_type, rule))
        except Unresolved as exc:
            final.append(exc)
    return final
