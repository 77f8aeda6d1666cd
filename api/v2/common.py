"""Request parsing shared by the v2 views: bodies, filters, sort, paging.

Query parameters are parsed here rather than by WSME, which answers a
bad integer with a 500; every problem is a 400 naming the parameter.
"""

from __future__ import annotations

import ast
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import flask

from alarmer import timeutils
from api import errors
from api.identity import Identity

BOOL_TRUE = ("true", "1", "yes", "on")
BOOL_FALSE = ("false", "0", "no", "off")


def runtime() -> Any:
    """The :class:`alarmer.runtime.Runtime` serving this request."""
    return flask.current_app.extensions["alarmer"]


def json_body() -> Any:
    """Return the decoded JSON body.

    :raises api.errors.APIError: 415 for another media type, 400 for
        malformed JSON.
    """
    request = flask.request
    if request.mimetype not in ("application/json", ""):
        raise errors.APIError(f"Unknown mimetype: {request.mimetype}", 415)
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.APIError(
            f"Request is not in valid JSON format: {exc}"
        ) from exc


def parse_bool(name: str, value: Any) -> bool:
    """Read a boolean given as text (or already a bool).

    :raises api.errors.APIError: naming *name*.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in BOOL_TRUE:
        return True
    if text in BOOL_FALSE:
        return False
    raise errors.APIError(
        f"Invalid input for field/attribute {name}. Value: '{value}'. "
        f"Value not an unambiguous boolean: {value}"
    )


def parse_limit(max_limit: int) -> int:
    """Read ``limit`` (default and cap: *max_limit*; ``0`` = default).

    :raises api.errors.APIError: not a positive integer.
    """
    raw = flask.request.args.get("limit")
    if raw is None or raw == "":
        return max_limit
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise errors.APIError(
            f"Invalid input for field/attribute limit. Value: '{raw}'. "
            "it should be a positive integer."
        )
    if value == 0:
        return max_limit
    return min(value, max_limit)


def parse_sort(allowed: Sequence[str]) -> list[tuple[str, str]]:
    """Read the repeatable ``sort=key[:asc|desc]`` parameters.

    :raises api.errors.APIError: unknown key or direction.
    """
    result: list[tuple[str, str]] = []
    for raw in flask.request.args.getlist("sort"):
        for item in raw.split(","):
            key, _, direction = item.strip().partition(":")
            direction = (direction or "asc").lower()
            if key not in allowed or direction not in ("asc", "desc"):
                raise errors.APIError(
                    f"Invalid input for field/attribute sort. Value: "
                    f"'{item}'. the sort parameter should be a pair of sort "
                    "key and sort dir combined with ':', or only sort key "
                    "specified and sort dir will be default 'asc', the "
                    f"supported sort keys are: ({', '.join(allowed)}), the "
                    "supported sort dirs are: (asc, desc)"
                )
            if key not in [k for k, _ in result]:
                result.append((key, direction))
    return result


def parse_queries() -> list[dict[str, Any]]:
    """Read the repeated ``q.field/q.op/q.value[/q.type]`` parameters.

    :raises api.errors.APIError: the lists do not line up.
    """
    args = flask.request.args
    fields = args.getlist("q.field")
    ops = args.getlist("q.op")
    values = args.getlist("q.value")
    types = args.getlist("q.type")
    if len(values) != len(fields) or len(ops) > len(fields):
        raise errors.APIError(
            "Invalid input for field/attribute q. Every q.field needs a "
            "q.value (and at most one q.op and q.type)"
        )
    result = []
    for index, field in enumerate(fields):
        result.append(
            {
                "field": field,
                "op": (ops[index] if index < len(ops) else "") or "eq",
                "value": values[index],
                "type": types[index] if index < len(types) else "",
            }
        )
    return result


def typed_value(query: dict[str, Any]) -> Any:
    """Convert a simple query's value as Aodh does (``q.type`` or guess)."""
    value, kind = query["value"], query["type"]
    name = f"q.value ({query['field']})"
    try:
        if kind in ("", None):
            try:
                return ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value
        if kind == "string":
            return value
        if kind == "integer":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "boolean":
            return parse_bool(name, value)
        if kind == "datetime":
            return timeutils.parse_datetime(value)
    except ValueError as exc:
        raise errors.APIError(
            f"Invalid input for field/attribute {name}. Value: '{value}'. "
            f"Unable to convert the value to {kind}"
        ) from exc
    raise errors.APIError(
        f"Invalid input for field/attribute q.type. Value: '{kind}'. "
        "Value should be one of: string, integer, float, boolean, datetime"
    )


def next_link(items: list[dict[str, Any]], limit: int, key: str) -> None:
    """Set a ``Link: <...>; rel="next"`` header when the page is full."""
    if not items or len(items) < limit:
        return
    args = flask.request.args.to_dict(flat=False)
    args["marker"] = [items[-1][key]]
    args["limit"] = [str(limit)]
    url = flask.request.base_url + "?" + urllib.parse.urlencode(args, True)
    flask.g.next_link = url


def check_project_access(identity: Identity, project_id: str) -> None:
    """A non-admin may only name its own project (401 as Aodh)."""
    if not identity.is_admin and project_id != identity.project_id:
        raise errors.Unauthorized(
            f"Not Authorized to access project {project_id}"
        )


def check_user_access(identity: Identity, user_id: str) -> None:
    """A non-admin may only name itself (401 as Aodh)."""
    if not identity.is_admin and user_id != identity.user_id:
        raise errors.Unauthorized(f"Not Authorized to access user {user_id}")


def respond(body: Any, status: int = 200) -> flask.Response:
    """JSON response, with the pending ``Link`` header if any."""
    response = flask.Response(
        json.dumps(body), status=status, mimetype="application/json"
    )
    link = flask.g.get("next_link")
    if link:
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response
