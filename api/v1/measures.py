"""Measures: push to one metric, push to many, read aggregates back.

* ``POST /v1/metric/<id>/measures``: a list of ``{"timestamp", "value"}``
  -> 202 ``{"measures_stored": n, "measures_refused": m}``.
* ``POST /v1/batch/metrics/measures``: ``{metric_id: [measures...]}``.
* ``GET /v1/metric/<id>/measures``: ``[[timestamp, granularity, value],
  ...]``, coarsest granularity first.

A whole request is validated (every metric exists and is visible, every
measure parses) before anything is written, then stored through
:mod:`alarmer.metrics.ingest`: late points refused by the engine (older
than the back window allows) are counted in the answer and logged, never
silently dropped, and a write lost to concurrent writers is a 503 with
``Retry-After``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import flask
import numpy as np

from alarmer import timeutils
from alarmer.metrics import index as idx
from alarmer.metrics import ingest
from alarmer.metrics.series import store as series_mod
from api import errors
from api.v1 import metric as metric_views
from api.v1 import validation as v

LOG = logging.getLogger(__name__)

NS = v.NS


def metric_ref(info: idx.MetricInfo) -> series_mod.MetricRef:
    """The engine's reference to the metric *info*."""
    return series_mod.MetricRef(id=info.id, policy=info.archive_policy)


def _answer(stored: int, refused: int) -> tuple[dict[str, int], int]:
    return {"measures_stored": stored, "measures_refused": refused}, 202


def write(batch: Sequence[ingest.Item]) -> tuple[dict[str, int], int]:
    """Store validated measures through the ingest door: the 202 answer.

    Every v1 view that writes measures answers with this.

    :raises APIError: 503 with ``Retry-After`` when concurrent writers
        kept winning (nothing is reported as stored).
    """
    rt = v.runtime()
    try:
        done = ingest.store_batch(
            rt.series, rt.channel, batch, refusals=rt.index
        )
    except ingest.IngestConflict as exc:
        raise errors.APIError(
            f"{exc}; retry the request", 503, headers={"Retry-After": "1"}
        ) from None
    rt.telemetry.ingested(done.stored, done.refused)
    return _answer(done.stored, done.refused)


def add(metric_id: str) -> tuple[dict[str, int], int]:
    """POST measures to one metric."""
    v.require_member()
    info = metric_views.get_visible(metric_id)
    stamps, values = v.measures(v.measures_body(), "measures")
    return write([(metric_ref(info), stamps, values)])


def add_batch() -> tuple[dict[str, int], int]:
    """POST measures to many metrics at once (all or nothing)."""
    v.require_member()
    body = v.measures_body()
    if not isinstance(body, dict):
        raise v.bad(
            "body: an object mapping metric ids to measures is required"
        )
    found = v.indexer().get_metric_policies(body.keys(), v.metric_filter())
    missing = [mid for mid in body if mid not in found]
    if missing:
        raise v.bad(f"Unknown metrics: {', '.join(sorted(missing))}")
    parsed = v.measures_many(
        [(raw, f"measures[{metric_id}]") for metric_id, raw in body.items()]
    )
    return write(
        [
            (series_mod.MetricRef(metric_id, found[metric_id]), *arrays)
            for metric_id, arrays in zip(body, parsed, strict=True)
        ]
    )


def series_to_json(series_list: Sequence[Any]) -> list[list[Any]]:
    """Gnocchi's ``[[timestamp, granularity_seconds, value], ...]``."""
    out: list[list[Any]] = []
    for series in series_list:
        gran = series.granularity / NS
        values = np.asarray(series.values, dtype=np.float64)
        for ts, value in zip(
            series.timestamps.tolist(), values.tolist(), strict=True
        ):
            out.append([timeutils.isoformat_ns(ts), gran, value])
    return out


def check_method(info: idx.MetricInfo, method: str) -> None:
    """404 when *method* is not stored by the metric's policy."""
    if method not in info.archive_policy.aggregation_methods:
        raise errors.NotFound(
            f"Aggregation method '{method}' for metric {info.id} does not "
            "exist"
        )


def check_granularity(info: idx.MetricInfo, method: str, gran: int) -> None:
    """404 when the metric's policy has no *gran* level."""
    if info.archive_policy.item(gran) is None:
        raise errors.NotFound(
            f"Aggregation method '{method}' at granularity "
            f"'{gran / NS:g}' for metric {info.id} does not exist"
        )


def get(metric_id: str) -> flask.Response:
    """GET the aggregated measures of one metric."""
    v.require_reader()
    info = metric_views.get_visible(metric_id)
    method = v.query_arg("aggregation") or "mean"
    start = v.query_timestamp("start")
    stop = v.query_timestamp("stop")
    granularity = v.query_granularity("granularity")
    v.query_bool("refresh")  # accepted: measures are aggregated on write
    if v.query_arg("resample"):
        raise v.bad("resample: resampling is not supported")
    if start is not None and stop is not None and stop < start:
        raise v.bad("stop: must not be before start")
    check_method(info, method)
    if granularity is not None:
        check_granularity(info, method, granularity)
    series = v.runtime().series.get_measures(
        info.id, method, granularity=granularity, start=start, stop=stop
    )
    return flask.jsonify(series_to_json(series))


def register(bp: flask.Blueprint) -> None:
    """Add the routes to the v1 blueprint."""
    bp.add_url_rule(
        "/metric/<metric_id>/measures",
        "measures_add",
        add,
        methods=["POST"],
    )
    bp.add_url_rule(
        "/metric/<metric_id>/measures",
        "measures_get",
        get,
        methods=["GET"],
    )
    bp.add_url_rule(
        "/batch/metrics/measures",
        "measures_batch",
        add_batch,
        methods=["POST"],
    )
