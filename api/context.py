"""What a view needs about the request it serves: runtime, caller, index.

The application built by :func:`api.app.create_app` keeps its
:class:`~alarmer.runtime.Runtime` in ``app.extensions`` (:func:`bind`);
views reach it, its metric index and the identity of the caller only
through the functions of this module.

The caller is identified on first use in a request (the routes that
need no identity never authenticate) and remembered for the rest of it.
"""

from __future__ import annotations

import flask

from alarmer.metrics import index as idx
from alarmer.runtime import Runtime
from api import errors, identity

#: Key of the :class:`~alarmer.runtime.Runtime` in ``app.extensions``.
RUNTIME = "alarmer"


def bind(app: flask.Flask, rt: Runtime) -> None:
    """Make *rt* the runtime of *app*'s requests."""
    app.extensions[RUNTIME] = rt


def runtime() -> Runtime:
    """The runtime of the application serving this request."""
    rt: Runtime = flask.current_app.extensions[RUNTIME]
    return rt


def index() -> idx.Indexer:
    """The metric index of the application serving this request."""
    return runtime().index


def caller() -> identity.Identity:
    """The identity of the caller of this request.

    :raises api.errors.APIError: 401 without valid credentials.
    """
    found = flask.g.get("identity")
    if found is None:
        rt = runtime()
        found = identity.authenticate(flask.request, rt.conf, rt.db)
        flask.g.identity = found
    return found


def _scoped(who: identity.Identity) -> identity.Identity:
    if who.project_id is None and not who.is_admin:
        raise errors.Unauthorized(
            "The request names no project (X-Project-Id)"
        )
    return who


def require_reader() -> identity.Identity:
    """The caller if it may read, else 401/403."""
    who = _scoped(caller())
    if not who.can_read:
        raise errors.Forbidden()
    return who


def require_member() -> identity.Identity:
    """The caller if it may write, else 401/403."""
    who = _scoped(caller())
    if not who.can_write:
        raise errors.Forbidden()
    return who


def require_admin() -> identity.Identity:
    """The caller if it is an administrator, else 401/403."""
    who = caller()
    if not who.is_admin:
        raise errors.Forbidden()
    return who
