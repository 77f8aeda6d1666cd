"""One error format for the whole API: Aodh's envelope.

Every error answer is ``{"error_message": {"faultcode", "faultstring",
"debuginfo"}}`` with ``faultcode`` ``Client`` for 4xx and ``Server`` for
5xx.  :class:`APIError` is what views raise; the handlers registered by
:func:`install` also turn WSME's parsing faults (which ``wsmeext.flask``
lets escape as HTML 500s), werkzeug's routing errors and unexpected
exceptions into that envelope.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import flask
import wsme.exc
from werkzeug import exceptions as wexc

LOG = logging.getLogger(__name__)


class APIError(Exception):
    """An error answered to the client with *status* and *message*."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}


class NotFound(APIError):
    """404 with a message naming what is missing."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class Conflict(APIError):
    """409 with a message naming the conflicting object."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 409)


class Forbidden(APIError):
    """403: the caller may not do this."""

    def __init__(self, message: str = "RBAC Authorization Failed") -> None:
        super().__init__(message, 403)


class Unauthorized(APIError):
    """401: the caller is not identified, or not for this project."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 401)


def error_body(status: int, message: str) -> dict[str, Any]:
    """Return the envelope for *status* and *message*."""
    return {
        "error_message": {
            "faultcode": "Server" if status >= 500 else "Client",
            "faultstring": message,
            "debuginfo": None,
        }
    }


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> flask.Response:
    """Build the JSON error response."""
    response = flask.Response(
        json.dumps(error_body(status, message)),
        status=status,
        mimetype="application/json",
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _api_error(exc: APIError) -> flask.Response:
    return error_response(exc.status, exc.message, exc.headers)


def _wsme_error(exc: wsme.exc.ClientSideError) -> flask.Response:
    return error_response(exc.code or 400, str(exc.faultstring))


def _http_error(exc: wexc.HTTPException) -> flask.Response:
    headers = {}
    if isinstance(exc, wexc.MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    message = exc.description or exc.name
    if isinstance(exc, wexc.NotFound):
        message = f"The resource {flask.request.path} could not be found."
    elif isinstance(exc, wexc.MethodNotAllowed):
        message = (
            f"The method {flask.request.method} is not allowed for the "
            f"resource {flask.request.path}."
        )
    return error_response(exc.code or 500, message, headers)


def _unexpected(exc: Exception) -> flask.Response:
    LOG.exception(
        "unexpected error answering %s %s",
        flask.request.method,
        flask.request.path,
    )
    return error_response(500, "Internal server error")


def _fix_fault_type(response: flask.Response) -> flask.Response:
    # wsmeext.flask renders the faults it catches itself with the default
    # text/html type and without our envelope; rewrite them.
    if (
        response.status_code >= 400
        and response.mimetype == "text/html"
        and not response.direct_passthrough
    ):
        data = response.get_data()
        if data[:1] == b"{":
            try:
                fault = json.loads(data)
            except ValueError:
                return response
            if isinstance(fault, dict) and "faultstring" in fault:
                body = error_body(
                    response.status_code, str(fault["faultstring"])
                )
                response.set_data(json.dumps(body))
                response.mimetype = "application/json"
    return response


def install(app: flask.Flask) -> None:
    """Register the error handlers on *app*."""
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(wsme.exc.ClientSideError, _wsme_error)
    app.register_error_handler(wexc.HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.after_request(_fix_fault_type)
