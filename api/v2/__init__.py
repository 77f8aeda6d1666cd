"""The v2 API: Aodh's alarm dialect.

WSME types (:mod:`api.v2.types`) are the model of the wire format: each body is
turned into a WSME object and each response is rendered from one
(``wsme.rest.json.tojson``), so unset attributes are omitted as in Aodh.  WSME
does not parse the raw request, though: the JSON is first validated with
jsonschema (:mod:`alarmer.alarms.validation`), which names the field and the
reason of every problem, and only the validated, defaulted dict is handed to
``wsme.rest.json.fromjson``.  This avoids WSME's lenient
coercions (``5.7`` read as ``5``, ``null`` accepted for a mandatory
field).  Query parameters are parsed by :mod:`api.params`, since
WSME's Flask adapter answers a bad integer parameter with a 500; that
adapter (``wsmeext.flask``) is not used.
"""

from __future__ import annotations

import flask

from api.v2 import (
    alarms,
    deliveries,
    metrics,
    query,
    quotas,
    silences,
    types,
)

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
    document = types.parse(types.Capabilities, CAPABILITIES)
    return flask.jsonify(types.render(types.Capabilities, document))


def register(app: flask.Flask) -> None:
    """Register every v2 route on *app*."""
    app.register_blueprint(alarms.bp)
    app.register_blueprint(query.bp)
    app.register_blueprint(quotas.bp)
    app.register_blueprint(deliveries.bp)
    app.register_blueprint(silences.bp)
    app.register_blueprint(metrics.bp)
    app.add_url_rule(
        "/v2/capabilities", "v2_capabilities", capabilities, methods=["GET"]
    )
    app.add_url_rule(
        "/v2/capabilities/",
        "v2_capabilities_slash",
        capabilities,
        methods=["GET"],
    )
