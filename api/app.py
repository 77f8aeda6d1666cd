"""The Flask application factory."""

from __future__ import annotations

import flask
import sqlalchemy as sa

from alarmer.runtime import Runtime
from api import errors, v1

EXTENSION = "alarmer"


def runtime() -> Runtime:
    """Return the runtime of the application serving this request."""
    return flask.current_app.extensions[EXTENSION]


def _versions() -> flask.Response:
    base = flask.request.host_url.rstrip("/")
    return flask.jsonify(
        {
            "versions": {
                "values": [
                    {
                        "id": "v2",
                        "links": [
                            {"href": f"{base}/v2", "rel": "self"},
                            {
                                "href": "https://docs.openstack.org/",
                                "rel": "describedby",
                                "type": "text/html",
                            },
                        ],
                        "media-types": [
                            {
                                "base": "application/json",
                                "type": "application/"
                                "vnd.openstack.telemetry-v2+json",
                            }
                        ],
                        "status": "stable",
                        "updated": "2013-02-13T00:00:00Z",
                    },
                    {
                        "id": "v1.0",
                        "links": [{"href": f"{base}/v1/", "rel": "self"}],
                        "status": "CURRENT",
                        "updated": "2015-03-19T00:00:00Z",
                    },
                ]
            }
        }
    )


def _healthcheck() -> flask.Response:
    with runtime().db.read_session() as session:
        session.execute(sa.text("SELECT 1"))
    return flask.jsonify({"status": "ok"})


def create_app(rt: Runtime) -> flask.Flask:
    """Build the WSGI application serving the v1 and v2 APIs."""
    app = flask.Flask("alarmer")
    app.config["TESTING"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    app.extensions[EXTENSION] = rt
    errors.install(app)
    app.register_blueprint(v1.create_blueprint())
    app.add_url_rule("/", "versions", _versions, methods=["GET"])
    app.add_url_rule(
        "/healthcheck", "healthcheck", _healthcheck, methods=["GET", "HEAD"]
    )
    from api.v1 import resource_measures, resource_type, resources, search

    for blueprint in (resources, resource_measures, resource_type, search):
        app.register_blueprint(blueprint.blueprint)
    from api import openapi, v2

    v2.register(app)
    openapi.register(app)
    from api.v2 import deliveries

    app.register_blueprint(deliveries.bp)
    return app
