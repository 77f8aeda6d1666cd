"""``/v1/archive_policy``: create, list, show, update, delete policies.

Reads are open to everyone; writes need the admin role (as Gnocchi's
default policy file).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import flask

from alarmer.metrics import index as idx
from alarmer.metrics import policy as ap
from api import errors
from api.v1 import validation as v

LOG = logging.getLogger(__name__)

#: Largest back_window (an SQL INTEGER).
MAX_BACK_WINDOW = 2**31 - 1

_ITEM = {
    "type": "object",
    "properties": {
        "granularity": {"type": ["number", "string"]},
        "points": {"type": ["integer", "null"]},
        "timespan": {"type": ["number", "string", "null"]},
    },
    "additionalProperties": False,
}

PATCH_SCHEMA = {
    "type": "object",
    "properties": {
        "definition": {"type": "array", "minItems": 1, "items": _ITEM},
        "back_window": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_BACK_WINDOW,
        },
    },
    "additionalProperties": False,
    "minProperties": 1,
}


def _methods_defaults() -> tuple[str, ...]:
    return ap.DEFAULT_METHODS


def check_bounds(
    items: Sequence[ap.PolicyItem], back_window: object = 0
) -> None:
    """400 for items the engine cannot represent in int64 nanoseconds."""
    for i, item in enumerate(items):
        if item.granularity < 1:
            raise errors.APIError(
                f"Invalid value for definition[{i}].granularity: must be at "
                "least one nanosecond",
                400,
            )
        span = item.timespan or item.granularity
        if span > v.INT64_MAX:
            raise errors.APIError(
                f"Invalid value for definition[{i}]: the timespan is longer "
                "than 292 years",
                400,
            )
    if (
        isinstance(back_window, int)
        and not isinstance(back_window, bool)
        and not 0 <= back_window <= MAX_BACK_WINDOW
    ):
        raise errors.APIError(
            f"Invalid value for back_window: must be between 0 and "
            f"{MAX_BACK_WINDOW}",
            400,
        )


def _coerce_points(body: Any) -> Any:
    """Turn ``"points": "60"`` into 60, as gnocchiclient's CLI sends it."""
    if isinstance(body, dict) and isinstance(body.get("definition"), list):
        for item in body["definition"]:
            if isinstance(item, dict):
                points = item.get("points")
                if isinstance(points, str) and points.strip().isdigit():
                    item["points"] = int(points)
    return body


def create() -> tuple[dict[str, Any], int, dict[str, str]]:
    """POST: create a policy (201, 409 when the name is taken)."""
    v.require_admin()
    body = _coerce_points(v.json_body())
    try:
        policy = ap.ArchivePolicy.from_request(body, _methods_defaults())
    except ap.PolicyError as exc:
        raise errors.APIError(str(exc), 400) from None
    check_bounds(policy.definition, policy.back_window)
    try:
        v.indexer().create_archive_policy(policy)
    except idx.IndexerError as exc:
        raise v.index_error(exc) from None
    location = flask.url_for(
        "v1.archive_policy_show", name=policy.name, _external=True
    )
    return policy.to_dict(), 201, {"Location": location}


def list_() -> flask.Response:
    """GET: every policy."""
    v.require_reader()
    return flask.jsonify(
        [p.to_dict() for p in v.indexer().list_archive_policies()]
    )


def show(name: str) -> dict[str, Any]:
    """GET one policy (404 when unknown)."""
    v.require_reader()
    policy = v.indexer().get_archive_policy(name)
    if policy is None:
        raise errors.NotFound(f"Archive policy {name} does not exist")
    return policy.to_dict()


def update(name: str) -> dict[str, Any]:
    """PATCH: change points/timespan of the items, or back_window."""
    v.require_admin()
    body = _coerce_points(v.json_body())
    v.check_schema(PATCH_SCHEMA, body)
    items = None
    if "definition" in body:
        try:
            items = [
                ap.parse_item(raw, i)
                for i, raw in enumerate(body["definition"])
            ]
        except ap.PolicyError as exc:
            raise errors.APIError(str(exc), 400) from None
        check_bounds(items)
        grans = [item.granularity for item in items]
        if len(set(grans)) != len(grans):
            raise errors.APIError(
                "Invalid value for definition: more than one item with the "
                "same granularity",
                400,
            )
    try:
        policy = v.indexer().update_archive_policy(
            name, definition=items, back_window=body.get("back_window")
        )
    except idx.NoSuchArchivePolicy as exc:
        raise errors.NotFound(str(exc)) from None
    except idx.IndexerError as exc:
        raise v.index_error(exc) from None
    return policy.to_dict()


def delete(name: str) -> tuple[str, int]:
    """DELETE an unused policy (204; 400 while metrics or rules use it)."""
    v.require_admin()
    try:
        v.indexer().delete_archive_policy(name)
    except idx.NoSuchArchivePolicy as exc:
        raise errors.NotFound(str(exc)) from None
    except idx.IndexerError as exc:
        raise v.index_error(exc) from None
    return "", 204


def register(bp: flask.Blueprint) -> None:
    """Add the routes to the v1 blueprint."""
    bp.add_url_rule(
        "/archive_policy",
        "archive_policy_create",
        create,
        methods=["POST"],
    )
    bp.add_url_rule(
        "/archive_policy", "archive_policy_list", list_, methods=["GET"]
    )
    bp.add_url_rule(
        "/archive_policy/<path:name>",
        "archive_policy_show",
        show,
        methods=["GET"],
    )
    bp.add_url_rule(
        "/archive_policy/<path:name>",
        "archive_policy_update",
        update,
        methods=["PATCH"],
    )
    bp.add_url_rule(
        "/archive_policy/<path:name>",
        "archive_policy_delete",
        delete,
        methods=["DELETE"],
    )
