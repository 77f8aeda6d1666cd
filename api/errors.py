"""Each dialect's error envelope, and one domain-error table per dialect.

An error answered under ``/v1`` speaks Gnocchi's dialect: ``{"code",
"title", "description"}`` where ``code`` is the HTTP status, ``title`` its
reason phrase and ``description`` the message, or a structured object
where Gnocchi gives one (e.g. ``{"cause": "Unknown resources", "detail":
[...]}``); gnocchiclient picks its typed exceptions from that
description.  Every other error answer speaks Aodh's: ``{"error_message":
{"faultcode", "faultstring", "debuginfo"}}`` with ``faultcode`` ``Client``
for 4xx and ``Server`` for 5xx.  :class:`APIError` is what views raise;
the handlers registered by :func:`install` also turn WSME's parsing
faults (which ``wsmeext.flask`` lets escape as HTML 500s), werkzeug's
routing errors and unexpected exceptions into the envelope of the
request's dialect.

Domain errors (:class:`~alarmer.errors.AlarmerError`) escape the views:
each blueprint answers them through its dialect's table,
:data:`GNOCCHI` for the v1 blueprints and :data:`AODH` for the v2 ones
(:meth:`Dialect.install`).  A table maps a domain error class to its
status code and message; the most specific class of the error's MRO
wins.  A domain error no table names is a bug: logged, answered with a
500.  Views still catch a domain error where its answer depends on the
request (e.g. an unknown archive policy is a 404 on its own URL, a 400
when a new metric names it).
"""

from __future__ import annotations

import dataclasses
import http
import json
import logging
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flask
import wsme.exc
from werkzeug import exceptions as wexc

from alarmer import jsontext
from alarmer.alarms import errors as alarm_errors
from alarmer.alarms import store as alarm_store
from alarmer.errors import AlarmerError
from alarmer.metrics import index as idx
from alarmer.metrics import policy

LOG = logging.getLogger(__name__)


class APIError(Exception):
    """An error answered to the client with *status* and *message*.

    :param description: the structured ``description`` of the Gnocchi
        envelope, where Gnocchi answers one instead of the message (the
        Aodh envelope always carries *message*).
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
        description: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or {}
        self.description = description


class UnknownResources(APIError):
    """400: measures name resources that do not exist.

    The Gnocchi envelope describes each as ``{"resource_id",
    "original_resource_id"}`` under ``{"cause": "Unknown resources"}``;
    Ceilometer's publisher creates the resources it reads there.

    :param resources: ``(resource_id, original_resource_id)`` pairs.
    """

    def __init__(self, resources: list[tuple[str, str]]) -> None:
        names = ", ".join(sorted(original for _, original in resources))
        super().__init__(
            f"Unknown resources: {names}",
            description={
                "cause": "Unknown resources",
                "detail": [
                    {"resource_id": rid, "original_resource_id": original}
                    for rid, original in resources
                ],
            },
        )


class InvalidInput(APIError):
    """400: a body does not have the shape its route expects.

    The Gnocchi envelope describes it as Gnocchi's schema validation
    does: ``{"cause": "Invalid input", "reason": ..., "detail": [...]}``
    where ``detail`` is the path of the offending value in the body
    (keys, and list indices as strings) and ``reason`` names the field.

    :param reason: what is wrong, naming the field.
    :param path: the path of the offending value (empty: the body).
    """

    def __init__(self, reason: str, path: Sequence[str | int]) -> None:
        self.reason = reason
        self.path = [str(part) for part in path]
        super().__init__(
            f"Invalid input: {reason}",
            description={
                "cause": "Invalid input",
                "reason": reason,
                "detail": self.path,
            },
        )


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
    """Return Aodh's envelope for *status* and *message*."""
    return {
        "error_message": {
            "faultcode": "Server" if status >= 500 else "Client",
            "faultstring": message,
            "debuginfo": None,
        }
    }


#: Reason phrases Gnocchi's web framework words differently from
#: :class:`http.HTTPStatus`.
_TITLES = types.MappingProxyType({416: "Request Range Not Satisfiable"})


def title(status: int) -> str:
    """The reason phrase of *status* as Gnocchi answers it."""
    found = _TITLES.get(status)
    if found is not None:
        return found
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def gnocchi_error_body(
    status: int, message: str, description: Any = None
) -> dict[str, Any]:
    """Return Gnocchi's envelope for *status*.

    :param description: the structured description, if any; else
        *message* is the description.
    """
    return {
        "code": status,
        "title": title(status),
        "description": message if description is None else description,
    }


def is_gnocchi_path(path: str) -> bool:
    """True when *path* is served by the v1 (Gnocchi) dialect."""
    return path == "/v1" or path.startswith("/v1/")


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    description: Any = None,
) -> flask.Response:
    """Build the JSON error response in the request's dialect.

    :param description: the structured Gnocchi description, if any.
    """
    if flask.has_request_context() and is_gnocchi_path(flask.request.path):
        body = gnocchi_error_body(status, message, description)
    else:
        body = error_body(status, message)
    response = flask.Response(
        jsontext.dumps(body), status=status, mimetype="application/json"
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _api_error(exc: APIError) -> flask.Response:
    return error_response(
        exc.status, exc.message, exc.headers, exc.description
    )


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
                rendered = error_response(
                    response.status_code, str(fault["faultstring"])
                )
                response.set_data(rendered.get_data())
                response.mimetype = "application/json"
    return response


@dataclasses.dataclass(frozen=True)
class Answer:
    """How a dialect answers one class of domain error.

    :param status: the HTTP status, or a function of the error giving it.
    :param message: the ``faultstring`` as a function of the error
        (default: the error's text).
    :param headers: extra response headers.
    """

    status: int | Callable[[Any], int]
    message: Callable[[Any], str] = str
    headers: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )

    def error(self, exc: BaseException) -> APIError:
        """The :class:`APIError` answering *exc*."""
        if isinstance(self.status, int):
            status = self.status
        else:
            status = self.status(exc)
        return APIError(self.message(exc), status, dict(self.headers))


class Dialect:
    """One API dialect's table from domain error class to answer."""

    def __init__(
        self, name: str, table: Mapping[type[AlarmerError], Answer]
    ) -> None:
        self.name = name
        self.table: Mapping[type, Answer] = types.MappingProxyType(dict(table))

    def translate(self, exc: BaseException) -> APIError | None:
        """The answer to *exc* (most specific class first), or None."""
        for cls in type(exc).__mro__:
            answer = self.table.get(cls)
            if answer is not None:
                return answer.error(exc)
        return None

    def handle(self, exc: AlarmerError) -> flask.Response:
        """Flask error handler: the table's answer, else a logged 500."""
        error = self.translate(exc)
        if error is None:
            return _unexpected(exc)
        return _api_error(error)

    def install(self, blueprint: flask.Blueprint) -> None:
        """Answer the domain errors of *blueprint*'s views with the table.

        Call before the blueprint is registered on an application.
        """
        blueprint.register_error_handler(AlarmerError, self.handle)


def _not_a_marker(exc: alarm_store.InvalidMarker) -> str:
    return (
        f"Invalid input for field/attribute marker. Value: "
        f"'{exc.marker}'. No such item in this listing"
    )


#: The v1 (Gnocchi) dialect: index, resource and archive policy errors.
GNOCCHI = Dialect(
    "v1",
    {
        idx.IndexerError: Answer(400),
        idx.NoSuchMetric: Answer(404),
        idx.NoSuchArchivePolicyRule: Answer(404),
        idx.ArchivePolicyAlreadyExists: Answer(409),
        idx.ArchivePolicyRuleAlreadyExists: Answer(409),
        idx.NamedMetricAlreadyExists: Answer(409),
        idx.ResourceError: Answer(400),
        idx.NoSuchResourceType: Answer(404),
        idx.NoSuchResource: Answer(404),
        idx.ResourceAlreadyExists: Answer(409),
        idx.ResourceTypeInUse: Answer(400),
        policy.PolicyError: Answer(400),
    },
)

#: The v2 (Aodh) dialect: alarm definitions and the alarm store.
AODH = Dialect(
    "v2",
    {
        alarm_errors.RuleError: Answer(
            status=lambda exc: exc.status, message=lambda exc: exc.message
        ),
        alarm_store.AlarmNotFound: Answer(404),
        alarm_store.InvalidMarker: Answer(400, _not_a_marker),
        alarm_store.QuotaExceeded: Answer(403),
        alarm_store.ConcurrentUpdate: Answer(409),
    },
)


def install(app: flask.Flask) -> None:
    """Register the error handlers on *app*."""
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(wsme.exc.ClientSideError, _wsme_error)
    app.register_error_handler(wexc.HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.after_request(_fix_fault_type)
