"""``POST /v1/search/resource/{type}``: Gnocchi's resource search.

The body is a JSON query (see :mod:`alarmer.metrics.index.search`);
``limit``, ``marker``, ``sort`` and ``details`` work as in listings, and
a non-admin only finds the resources of its project.
"""

from __future__ import annotations

import flask

from api import context, errors, params
from api.v1 import resources as views

blueprint = flask.Blueprint("v1_search", __name__, url_prefix="/v1")
errors.GNOCCHI.install(blueprint)


@blueprint.post("/search/resource/<string:type_name>")
def search_resources(type_name: str) -> flask.Response:
    """Resources of *type_name* matching the JSON query in the body."""
    who = views.caller(context.READER)
    if "filter" in flask.request.args:
        raise errors.APIError(
            "Invalid query parameter filter: only JSON queries in the body "
            "are supported"
        )
    query = params.v1_json_body(allow_empty=True)
    details = params.v1_bool("details")
    with context.runtime().db.read_session() as session:
        rtype = views.load_type(session, type_name)
        rows = views.find_resources(session, rtype, who, query or {})
        return flask.jsonify(
            views.render(session, rtype, rows, details=details)
        )
