"""The v1 API: Gnocchi's metric dialect (policies, metrics, measures).

:func:`create_blueprint` builds the blueprint (url prefix ``/v1``); the
views reach the metric index through the runtime (``rt.index``).
"""

from __future__ import annotations

import flask

from api.v1 import (
    aggregates,
    archive_policy,
    archive_policy_rule,
    capabilities,
    measures,
    metric,
)


def create_blueprint() -> flask.Blueprint:
    """Build the ``/v1`` blueprint with every v1 route."""
    bp = flask.Blueprint("v1", __name__, url_prefix="/v1")
    for module in (
        capabilities,
        archive_policy,
        archive_policy_rule,
        metric,
        measures,
        aggregates,
    ):
        module.register(bp)
    return bp
