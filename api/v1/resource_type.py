"""``/v1/resource_type``: declare resource types and their attributes.

Creating, patching and deleting types is for admins (as in Gnocchi);
readers may read them.  ``generic`` always exists and cannot be changed.
"""

from __future__ import annotations

import flask
from sqlalchemy import exc as sa_exc

from alarmer.metrics import index as idx
from api import context, errors, params
from api.v1 import resources as views

blueprint = flask.Blueprint("v1_resource_type", __name__, url_prefix="/v1")
errors.GNOCCHI.install(blueprint)


@blueprint.get("/resource_type")
def list_types() -> flask.Response:
    """Every resource type."""
    views.caller(context.READER)
    with context.runtime().db.read_session() as session:
        types = context.index().list_types(session)
        return flask.jsonify([t.to_dict() for t in types])


@blueprint.get("/resource_type/<string:name>")
def show_type(name: str) -> flask.Response:
    """One resource type."""
    views.caller(context.READER)
    with context.runtime().db.read_session() as session:
        return flask.jsonify(views.load_type(session, name).to_dict())


@blueprint.post("/resource_type")
def create_type() -> flask.Response:
    """Declare a resource type with typed attributes."""
    views.caller(context.ADMIN)
    body = params.v1_json_body()
    try:
        definition = idx.parse_type_definition(body)
        with context.runtime().db.session() as session, session.begin():
            created = context.index().create_type(session, definition)
    except views.ENGINE_ERRORS as exc:
        raise views.translate(exc) from None
    except sa_exc.IntegrityError:
        raise errors.Conflict(
            f"Resource type {definition.name} already exists"
        ) from None
    response = flask.jsonify(created.to_dict())
    response.status_code = 201
    response.headers["Location"] = (
        f"{flask.request.host_url.rstrip('/')}/v1/resource_type/{created.name}"
    )
    return response


@blueprint.patch("/resource_type/<string:name>")
def patch_type(name: str) -> flask.Response:
    """Add or remove attributes with a JSON patch."""
    views.caller(context.ADMIN)
    body = params.v1_json_body()
    try:
        with context.runtime().db.session() as session, session.begin():
            patched = context.index().patch_type(session, name, body)
    except views.ENGINE_ERRORS as exc:
        raise views.translate(exc) from None
    return flask.jsonify(patched.to_dict())


@blueprint.delete("/resource_type/<string:name>")
def delete_type(name: str) -> flask.Response:
    """Delete a resource type no resource uses."""
    views.caller(context.ADMIN)
    try:
        with context.runtime().db.session() as session, session.begin():
            context.index().delete_type(session, name)
    except views.ENGINE_ERRORS as exc:
        raise views.translate(exc) from None
    return flask.Response(status=204)
