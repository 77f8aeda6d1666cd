"""``/v1`` (version document), ``/v1/capabilities`` and ``/v1/status``."""

from __future__ import annotations

from typing import Any

import flask

from alarmer.metrics import policy as ap
from api import context


def version() -> dict[str, Any]:
    """The v1 version document (Gnocchi's shape)."""
    base = flask.request.host_url.rstrip("/")
    return {
        "build": None,
        "version": {
            "id": "v1.0",
            "status": "CURRENT",
            "updated": "2015-03-19T00:00:00Z",
            "links": [{"href": f"{base}/v1/", "rel": "self"}],
            "media-types": [
                {"base": "application/json", "type": "application/json"}
            ],
        },
    }


def capabilities() -> dict[str, Any]:
    """Every aggregation method an archive policy may store."""
    return {"aggregation_methods": ap.capability_methods()}


def status() -> dict[str, Any]:
    """What is waiting to be processed, and alarmer's counters (admin).

    ``storage`` has Gnocchi's meaning: ``summary.metrics`` counts the
    metrics with measures waiting for processing and ``summary.measures``
    those measures.  alarmer aggregates on write, before answering a
    push, so nothing ever waits: both are 0 and ``measures_to_process``
    is empty, whatever the number of metrics (``alarmer.metrics``).

    ``alarmer`` holds alarmer's own counters, lasting and shared by
    every process: ``refused_late`` counts the measures refused because
    they were older than their metric's back window (in total, and for
    the metrics with the most refusals), ``damaged_series`` the damaged
    series found and repaired (from the series storage's damage
    journal).  ``engine`` is this process's own series engine statistics
    since it started.
    """
    context.require_admin()
    series = context.runtime().series
    engine_stats = series.statistics()
    index = context.index()
    return {
        "storage": {
            "summary": {"metrics": 0, "measures": 0},
            "measures_to_process": {},
        },
        "engine": engine_stats,
        "alarmer": {
            "metrics": index.count_metrics(),
            "refused_late": index.refusal_report(),
            "damaged_series": series.damage_report(),
        },
    }


def register(bp: flask.Blueprint) -> None:
    """Add the routes to the v1 blueprint."""
    bp.add_url_rule("/", "version", version, methods=["GET"])
    bp.add_url_rule(
        "/capabilities", "capabilities", capabilities, methods=["GET"]
    )
    bp.add_url_rule("/status", "status", status, methods=["GET"])
