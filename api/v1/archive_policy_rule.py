"""``/v1/archive_policy_rule``: which policy new metrics get by name.

Reads are open to everyone; writes need the admin role.
"""

from __future__ import annotations

import logging
from typing import Any

import flask

from alarmer.metrics import index as idx
from api import errors
from api.v1 import validation as v

LOG = logging.getLogger(__name__)

_NAME = {"type": "string", "minLength": 1, "maxLength": 255}

CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "archive_policy_name": _NAME,
        "metric_pattern": _NAME,
    },
    "required": ["name", "archive_policy_name", "metric_pattern"],
    "additionalProperties": False,
}

PATCH_SCHEMA = {
    "type": "object",
    "properties": {"name": _NAME},
    "required": ["name"],
    "additionalProperties": False,
}


def create() -> tuple[dict[str, Any], int, dict[str, str]]:
    """POST: create a rule (201; 400 unknown policy; 409 name taken)."""
    v.require_admin()
    body = v.json_body()
    v.check_schema(CREATE_SCHEMA, body)
    try:
        rule = v.indexer().create_archive_policy_rule(
            body["name"], body["archive_policy_name"], body["metric_pattern"]
        )
    except idx.IndexerError as exc:
        raise v.index_error(exc) from None
    location = flask.url_for(
        "v1.archive_policy_rule_show", name=rule.name, _external=True
    )
    return rule.to_dict(), 201, {"Location": location}


def list_() -> flask.Response:
    """GET: every rule, in matching order."""
    v.require_reader()
    return flask.jsonify(
        [r.to_dict() for r in v.indexer().list_archive_policy_rules()]
    )


def show(name: str) -> dict[str, Any]:
    """GET one rule (404 when unknown)."""
    v.require_reader()
    rule = v.indexer().get_archive_policy_rule(name)
    if rule is None:
        raise errors.NotFound(f"Archive policy rule {name} does not exist")
    return rule.to_dict()


def update(name: str) -> dict[str, Any]:
    """PATCH: rename a rule."""
    v.require_admin()
    body = v.json_body()
    v.check_schema(PATCH_SCHEMA, body)
    try:
        rule = v.indexer().rename_archive_policy_rule(name, body["name"])
    except idx.IndexerError as exc:
        raise v.index_error(exc) from None
    return rule.to_dict()


def delete(name: str) -> tuple[str, int]:
    """DELETE a rule (204)."""
    v.require_admin()
    try:
        v.indexer().delete_archive_policy_rule(name)
    except idx.IndexerError as exc:
        raise v.index_error(exc) from None
    return "", 204


def register(bp: flask.Blueprint) -> None:
    """Add the routes to the v1 blueprint."""
    bp.add_url_rule(
        "/archive_policy_rule",
        "archive_policy_rule_create",
        create,
        methods=["POST"],
    )
    bp.add_url_rule(
        "/archive_policy_rule",
        "archive_policy_rule_list",
        list_,
        methods=["GET"],
    )
    bp.add_url_rule(
        "/archive_policy_rule/<path:name>",
        "archive_policy_rule_show",
        show,
        methods=["GET"],
    )
    bp.add_url_rule(
        "/archive_policy_rule/<path:name>",
        "archive_policy_rule_update",
        update,
        methods=["PATCH"],
    )
    bp.add_url_rule(
        "/archive_policy_rule/<path:name>",
        "archive_policy_rule_delete",
        delete,
        methods=["DELETE"],
    )
