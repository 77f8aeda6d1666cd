"""The Flask application factory.

:func:`create_app` binds the runtime (:mod:`api.context`), installs the
error handlers (:mod:`api.errors`) and registers the routes of both
dialects; it is the only thing this module offers.
"""

from __future__ import annotations

import flask
import sqlalchemy as sa

from alarmer.runtime import Runtime
from api import (
    context,
    dashboard,
    errors,
    identity,
    observe,
    openapi,
    params,
    v1,
    v2,
)
from api.v1 import capabilities


def _versions() -> flask.Response:
    base = flask.request.host_url.rstrip("/")
    return flask.jsonify(
        {
            "build": capabilities.BUILD,
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
            },
        }
    )


def _healthcheck() -> flask.Response:
    with context.runtime().db.read_session() as session:
        session.execute(sa.text("SELECT 1"))
    return flask.jsonify({"status": "ok"})


def create_app(rt: Runtime) -> flask.Flask:
    """Build the WSGI application serving the v1 and v2 APIs."""
    app = flask.Flask("alarmer")
    app.config["TESTING"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    context.bind(app, rt)
    observe.install(app, rt)
    errors.install(app)
    params.install(app)
    app.add_url_rule("/", "versions", _versions, methods=["GET"])
    app.add_url_rule(
        "/healthcheck", "healthcheck", _healthcheck, methods=["GET", "HEAD"]
    )
    v1.register(app)
    v2.register(app)
    openapi.register(app)
    dashboard.register(app)
    if rt.conf.api.auth_mode == "keystone":
        app.wsgi_app = identity.keystone_middleware(  # type: ignore[method-assign]
            app.wsgi_app, rt.conf
        )
    if rt.conf.api.auth_mode in ("apikey", "keystone"):
        app.wsgi_app = identity.cookie_credentials(  # type: ignore[method-assign,assignment]
            app.wsgi_app
        )
    return app
