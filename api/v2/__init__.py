"""The v2 API: Aodh's alarm dialect.

Bodies are validated as raw JSON (jsonschema, :mod:`alarmer.rules`)
before anything is trusted, and responses are built explicitly: WSME's
Flask adapter coerces ``5.7`` to ``5``, accepts ``null`` for mandatory
fields and answers bad query parameters with a 500, so it is not in the
request path.
"""

from __future__ import annotations

import flask

from api.v2 import alarms, query, quotas

CAPABILITIES = {
    "alarm_storage": {"storage:production_ready": True},
    "api": {
        "alarms:history:query:complex": True,
        "alarms:history:query:simple": True,
        "alarms:query:complex": True,
        "alarms:query:simple": True,
    },
}


def capabilities() -> flask.Response:
    """What this API supports (Aodh's document)."""
    return flask.jsonify(CAPABILITIES)


def register(app: flask.Flask) -> None:
    """Register every v2 route on *app*."""
    app.register_blueprint(alarms.bp)
    app.register_blueprint(query.bp)
    app.register_blueprint(quotas.bp)
    app.add_url_rule(
        "/v2/capabilities", "v2_capabilities", capabilities, methods=["GET"]
    )
    app.add_url_rule(
        "/v2/capabilities/",
        "v2_capabilities_slash",
        capabilities,
        methods=["GET"],
    )
