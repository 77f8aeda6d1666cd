"""Read an error answer in the envelope of the dialect that gave it.

Under ``/v1`` errors speak Gnocchi's dialect (``{"code", "title",
"description"}``); elsewhere Aodh's (``{"error_message": {"faultcode",
"faultstring", "debuginfo"}}``).  Tests read both through
:func:`message` so that they check the envelope as they read it.
"""

from __future__ import annotations

import http
from typing import Any


def gnocchi(body: Any, status: int) -> Any:
    """The ``description`` of a Gnocchi envelope, checked whole."""
    assert isinstance(body, dict), body
    assert set(body) == {"code", "title", "description"}, body
    assert body["code"] == status, body
    assert body["title"] == http.HTTPStatus(status).phrase, body
    return body["description"]


def aodh(body: Any, status: int) -> str:
    """The ``faultstring`` of an Aodh envelope, checked whole."""
    fault = body["error_message"]
    assert fault["faultcode"] == ("Server" if status >= 500 else "Client")
    assert isinstance(fault["faultstring"], str)
    return str(fault["faultstring"])


def message(response: Any, status: int | None = None) -> str:
    """The error text of a Flask test *response* in its dialect.

    A structured Gnocchi description is returned as its ``cause``, and
    its ``reason`` after a colon when it has one.

    :param status: the status expected, if any.
    """
    text = response.get_data(as_text=True)
    if status is not None:
        assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    body = response.get_json()
    path = response.request.path
    if path == "/v1" or path.startswith("/v1/"):
        description = gnocchi(body, response.status_code)
        if isinstance(description, dict):
            if "reason" in description:
                return f"{description['cause']}: {description['reason']}"
            return str(description.get("cause"))
        return str(description)
    return aodh(body, response.status_code)
