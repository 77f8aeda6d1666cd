"""``GET /v2/metrics``: Aodh's evaluation results per alarm and state.

What ``aodh alarm metrics`` shows: for each alarm of the caller's
project (every project's with ``?all_projects=true``, administrators
only), how many evaluations ended in each state.  The counts are those
the evaluators write (:mod:`alarmer.alarms.counters`) when
``[DEFAULT] enable_evaluation_results_metrics`` is set; otherwise the
endpoint answers 403 as Aodh's does.  alarmer's own metrics, in the
Prometheus format, are at ``/metrics``.
"""

from __future__ import annotations

import flask

from alarmer.alarms import counters
from api import context, errors, params
from api.context import require_reader

bp = flask.Blueprint("v2_metrics", __name__)
errors.AODH.install(bp)


@bp.get("/v2/metrics")
def get_metrics() -> flask.Response:
    """The evaluation results of the visible alarms."""
    identity = require_reader()
    rt = context.runtime()
    if not rt.conf.enable_evaluation_results_metrics:
        raise errors.Forbidden("metrics endpoint is disabled")
    raw = flask.request.args.get("all_projects")
    all_projects = (
        params.v2_bool("all_projects", raw) if raw is not None else False
    )
    if all_projects and not identity.is_admin:
        raise errors.Forbidden()
    scope = (
        None
        if identity.is_admin and (all_projects or not identity.project_id)
        else identity.project_id
    )
    return flask.jsonify(
        {"evaluation_results": counters.results(rt.db, scope)}
    )
