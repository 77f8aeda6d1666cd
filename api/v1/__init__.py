"""The v1 API: Gnocchi's metric dialect (policies, metrics, measures).

:func:`create_blueprint` builds the blueprint (url prefix ``/v1``); the
:class:`~alarmer.metrics.index.indexer.Indexer` it needs is created once per
application when the blueprint is registered.
"""

from __future__ import annotations

import flask

from alarmer.metrics.index import indexer as idx
from api.v1 import (
    aggregates,
    archive_policy,
    archive_policy_rule,
    capabilities,
    measures,
    metric,
    validation,
)


def _setup(state: flask.blueprints.BlueprintSetupState) -> None:
    app = state.app
    if validation.INDEXER_EXTENSION not in app.extensions:
        from api import app as api_app

        rt = app.extensions[api_app.EXTENSION]
        app.extensions[validation.INDEXER_EXTENSION] = idx.Indexer(rt.db)


def create_blueprint() -> flask.Blueprint:
    """Build the ``/v1`` blueprint with every v1 route."""
    bp = flask.Blueprint("v1", __name__, url_prefix="/v1")
    bp.record_once(_setup)
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
