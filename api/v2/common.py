"""What the v2 views share: simple queries, access checks, responses.

Bodies, booleans, limits, sort and paging are read by :mod:`api.params`;
what is specific to Aodh's dialect lives here: the repeated
``q.field/q.op/q.value[/q.type]`` simple queries, the 401 Aodh answers
when a non-admin names another project or user, and the JSON response
with its ``Link`` header.
"""

from __future__ import annotations

from typing import Any

import flask

from alarmer import jsontext
from api import errors
from api.identity import Identity


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


def respond(
    body: Any, status: int = 200, next_link: str | None = None
) -> flask.Response:
    """JSON response, with ``Link: <next_link>; rel="next"`` if given."""
    response = flask.Response(
        jsontext.dumps(body), status=status, mimetype="application/json"
    )
    if next_link:
        response.headers["Link"] = f'<{next_link}>; rel="next"'
    return response
