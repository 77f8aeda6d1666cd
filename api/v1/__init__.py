"""The v1 API: Gnocchi's metric dialect (policies, metrics, measures,
resources).

:func:`register` adds every v1 route to an application: the ``/v1``
blueprint built by :func:`create_blueprint` and the blueprints of the
resource views.  Each answers domain errors with
:data:`api.errors.GNOCCHI`.
"""

from __future__ import annotations

import flask

from api import errors
from api.v1 import (
    aggregates,
    aggregation,
    archive_policy,
    archive_policy_rule,
    capabilities,
    measures,
    metric,
    resource_measures,
    resource_type,
    resources,
    search,
)


def create_blueprint() -> flask.Blueprint:
    """Build the ``/v1`` blueprint with the metric and policy routes."""
    bp = flask.Blueprint("v1", __name__, url_prefix="/v1")
    errors.GNOCCHI.install(bp)
    for module in (
        capabilities,
        archive_policy,
        archive_policy_rule,
        metric,
        measures,
        aggregates,
        aggregation,
    ):
        module.register(bp)
    return bp


def register(app: flask.Flask) -> None:
    """Register every v1 route on *app*."""
    app.register_blueprint(create_blueprint())
    for module in (resources, resource_measures, resource_type, search):
        app.register_blueprint(module.blueprint)
