"""The data of an alarm's plot: its rule's aggregates, threshold, marks.

A threshold rule is read as the evaluator reads it, with the alarm's
project's visibility: the metric of a resource, the listed metrics or
the metrics of the matching resources, aggregated with the rule's
method at its granularity and, for several metrics, reduced across them
(:func:`alarmer.metrics.query.reduce_across`).  The window is the asked
range (at least the rule's own look-back), bounded to
:data:`MAX_POINTS` buckets, and thinned to what a plot's width can show
(:func:`thin`: the lowest and highest bucket of each of
:data:`COLUMNS` columns, so a spike across the threshold stays).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from markupsafe import Markup

from alarmer import timeutils
from alarmer.alarms import model
from alarmer.metrics import query
from alarmer.metrics.index import Indexer
from alarmer.metrics.series.aggregation import Series
from alarmer.metrics.series.store import SeriesStore

LOG = logging.getLogger(__name__)

#: Most buckets drawn (7 days of 60 s buckets fit).
MAX_POINTS = 10_080
#: Columns a plot is thinned to (a wide screen's plot, in pixels).
COLUMNS = 1200
#: The ranges offered, in seconds.
RANGES = {"1h": 3600, "6h": 21600, "1d": 86400, "7d": 604800}
DEFAULT_RANGE = "1d"
_NS = 1_000_000_000


@dataclasses.dataclass
class Plot:
    """What the page draws for one threshold rule."""

    #: Bucket starts, seconds since the epoch.
    times: list[float]
    values: list[float | None]
    threshold: float
    operator: str
    #: Why there is nothing to draw (empty when there is).
    problem: str = ""
    #: Metric ids read.
    metric_ids: list[str] = dataclasses.field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """What the page's script reads (see :func:`script_json`)."""
        return {
            "times": self.times,
            "values": self.values,
            "threshold": self.threshold,
            "operator": self.operator,
            "problem": self.problem,
        }


def script_json(document: Any) -> Markup:
    """*document* as JSON safe inside a ``<script>`` element.

    The plot's numbers are finite or ``None`` (:func:`clean`), so the
    standard encoder is used (faster than the strict one for 10,000
    points); ``<``, ``>`` and ``&`` are escaped.
    """
    text = json.dumps(document, allow_nan=False, separators=(",", ":"))
    return Markup(  # noqa: S704 - JSON with <, > and & escaped
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def metric_ids(
    index: Indexer,
    session: Any,
    alarm_type: str,
    rule: Mapping[str, Any],
    project_id: str,
) -> list[str]:
    """The metrics a threshold rule reads, as its project sees them."""
    if alarm_type == model.RESOURCES_THRESHOLD:
        found = index.metric_of_resource(
            session,
            str(rule.get("resource_id")),
            str(rule.get("metric")),
            project_id=project_id,
        )
        return [found] if found else []
    if alarm_type == model.BY_METRICS_THRESHOLD:
        wanted = [str(m) for m in rule.get("metrics") or []]
        visible = index.visible_metric_ids(session, wanted, project_id)
        return [m for m in wanted if m in visible]
    if alarm_type == model.BY_RESOURCES_THRESHOLD:
        return index.resolve_group(
            session,
            str(rule.get("resource_type") or "generic"),
            rule.get("query") or "{}",
            str(rule.get("metric")),
            project_id,
        )
    return []


def clean(values: np.ndarray) -> list[float | None]:
    """The values as a list, ``None`` where not finite (JSON ``null``)."""
    out: list[float | None] = values.tolist()
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = None
    return out


def thin(
    times: np.ndarray,
    values: np.ndarray,
    columns: int = COLUMNS,
    tail: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """At most two points per column: the lowest and highest bucket.

    The buckets are cut into *columns* runs of equal length; each run
    keeps its lowest and highest finite value, in time order (a run
    without any keeps its first bucket, a gap).  The newest *tail*
    buckets are all kept (what the rule looks at).  Series of at most
    two points per column are returned as they are.
    """
    n = len(values)
    if n <= 2 * columns:
        return times, values
    step = -(-n // columns)
    rows = -(-n // step)
    padded = np.full(rows * step, np.nan)
    padded[:n] = values
    grid = padded.reshape(rows, step)
    finite = np.isfinite(grid)
    base = np.arange(rows) * step
    low = base + np.argmin(np.where(finite, grid, np.inf), axis=1)
    high = base + np.argmax(np.where(finite, grid, -np.inf), axis=1)
    empty = ~finite.any(axis=1)
    low[empty] = base[empty]
    high[empty] = base[empty]
    newest = np.arange(max(n - tail, 0), n)
    keep = np.unique(np.concatenate([low, high, newest]))
    keep = keep[keep < n]
    return np.asarray(times)[keep], np.asarray(values)[keep]


def read(
    series: SeriesStore,
    ids: Sequence[str],
    rule: Mapping[str, Any],
    seconds: int,
    now_ns: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bucket starts (ns) and values of the rule over the last *seconds*."""
    gran_s = int(float(rule.get("granularity") or 60))
    gran_ns = gran_s * _NS
    periods = int(rule.get("evaluation_periods") or 1)
    span = max(seconds, gran_s * (periods + 2))
    span = min(span, gran_s * MAX_POINTS)
    now_ns = now_ns if now_ns is not None else time.time_ns()
    start = (now_ns - span * _NS) // gran_ns * gran_ns
    method = str(rule.get("aggregation_method") or "mean")
    if len(ids) == 1 and not method.startswith("rate:"):
        (one,) = series.get_measures(ids[0], method, gran_ns, start, None)
        return one.timestamps, one.values
    base = method.removeprefix("rate:")
    per_metric: list[Series] = []
    for metric_id in ids:
        per_metric.extend(
            series.get_measures(metric_id, base, gran_ns, start, None)
        )
    times, reduced = query.reduce_across(per_metric, base)
    return query.window_across(
        times, reduced, method, gran_ns, start=start, stop=now_ns + gran_ns
    )


def plot(
    index: Indexer,
    series: SeriesStore,
    session: Any,
    *,
    alarm_type: str,
    rule: Mapping[str, Any],
    project_id: str,
    seconds: int,
) -> Plot:
    """The plot of one threshold rule (a problem instead of data if none)."""
    result = Plot(
        [],
        [],
        float(rule.get("threshold") or 0),
        str(rule.get("comparison_operator") or "gt"),
    )
    try:
        ids = metric_ids(index, session, alarm_type, rule, project_id)
    except Exception as exc:
        result.problem = f"the rule's metrics cannot be resolved: {exc}"
        return result
    if not ids:
        result.problem = "no metric the alarm's project may read matches"
        return result
    result.metric_ids = ids
    try:
        times, values = read(series, ids, rule, seconds)
    except Exception as exc:
        LOG.info("plot: reading %s failed: %s", ids, exc)
        result.problem = f"the aggregates cannot be read: {exc}"
        return result
    times, values = thin(
        np.asarray(times, dtype=np.int64),
        np.asarray(values, dtype=float),
        tail=int(rule.get("evaluation_periods") or 1),
    )
    result.times = (times / _NS).tolist()
    result.values = clean(values)
    if not result.times:
        result.problem = "no measures in this range"
    return result


def leaf_state(p: Plot, periods: int) -> str:
    """The state the newest *periods* buckets suggest (for a tree view).

    ``alarm`` when all breach the threshold, ``ok`` when none does,
    ``insufficient data`` without enough points, else ``mixed``.
    """
    points = [v for v in p.values if v is not None][-periods:]
    if len(points) < periods:
        return model.INSUFFICIENT_DATA
    compare = {
        "lt": lambda v: v < p.threshold,
        "le": lambda v: v <= p.threshold,
        "eq": lambda v: v == p.threshold,
        "ne": lambda v: v != p.threshold,
        "ge": lambda v: v >= p.threshold,
        "gt": lambda v: v > p.threshold,
    }[p.operator]
    breaching = sum(1 for v in points if compare(v))
    if breaching == len(points):
        return model.ALARM
    if breaching == 0:
        return model.OK
    return "mixed"


def transitions(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """State transitions of a history page, oldest first, for the marks."""
    marks = []
    for entry in history:
        if entry.get("type") != "state transition":
            continue
        detail = entry.get("detail")
        try:
            state = json.loads(detail).get("state") if detail else None
        except (TypeError, ValueError, AttributeError):
            state = None
        stamp = timeutils.parse_datetime(entry["timestamp"])
        marks.append({"time": stamp.timestamp(), "state": state or "?"})
    marks.sort(key=lambda m: m["time"])
    return marks
