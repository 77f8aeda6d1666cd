"""``/v2/quotas``: per-project alarm limits (Aodh's shape)."""

from __future__ import annotations

import flask
from jsonschema import Draft202012Validator

from alarmer.alarms import store as store_mod
from alarmer.alarms.errors import invalid
from api import context, errors, params
from api.context import require_admin, require_reader
from api.v2 import common, types

bp = flask.Blueprint("v2_quotas", __name__)
errors.AODH.install(bp)

RESOURCES = ("alarms",)
#: Largest quota: the limit column is a 32-bit INTEGER on PostgreSQL and
#: MySQL (SQLite would hold more; the bound is the same everywhere).
MAX_QUOTA = 2**31 - 1
QUOTA_SCHEMA = {
    "type": "object",
    "properties": {
        "project_id": {"type": "string", "minLength": 1, "maxLength": 255},
        "quotas": {
            "type": "array",
            "maxItems": 16,
            "items": {
                "type": "object",
                "properties": {
                    "resource": {"enum": list(RESOURCES)},
                    "limit": {
                        "type": "integer",
                        "minimum": -1,
                        "maximum": MAX_QUOTA,
                        "description": "Most alarms (-1: no limit).",
                    },
                },
                "required": ["resource", "limit"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["project_id", "quotas"],
    "additionalProperties": False,
}


def _document(project_id: str) -> dict:
    rt = context.runtime()
    stored = store_mod.AlarmStore(rt.db).get_quotas(project_id)
    default = rt.conf.api.project_alarm_quota
    quotas = types.Quotas(
        project_id=project_id,
        quotas=[
            types.Quota(resource=r, limit=stored.get(r, default))
            for r in RESOURCES
        ],
    )
    return types.render(types.Quotas, quotas)


@bp.get("/v2/quotas")
def get_quotas() -> flask.Response:
    """Quotas of ``?project_id=`` (default: the caller's project)."""
    identity = require_reader()
    project_id = flask.request.args.get("project_id") or identity.project_id
    if not project_id:
        raise errors.APIError(
            "Invalid input for field/attribute project_id. Value: 'None'. "
            "Mandatory field missing."
        )
    common.check_project_access(identity, project_id)
    return common.respond(_document(project_id))


@bp.post("/v2/quotas")
def set_quotas() -> flask.Response:
    """Set quotas of a project (administrators only): 201."""
    require_admin()
    body = params.v2_json_body()
    errs = sorted(
        Draft202012Validator(QUOTA_SCHEMA).iter_errors(body),
        key=lambda e: len(e.absolute_path),
    )
    if errs:
        error = errs[0]
        field = ".".join(str(p) for p in error.absolute_path) or "data"
        raise invalid(field, error.instance, error.message)
    quotas = types.parse(types.Quotas, body)
    limits = {q.resource: q.limit for q in quotas.quotas}
    store_mod.AlarmStore(context.runtime().db).set_quotas(
        quotas.project_id, limits
    )
    return common.respond(_document(quotas.project_id), 201)


@bp.delete("/v2/quotas/<project_id>")
def delete_quotas(project_id: str) -> flask.Response:
    """Forget a project's quotas (back to the configured default): 204."""
    require_admin()
    store_mod.AlarmStore(context.runtime().db).delete_quotas(project_id)
    return flask.Response(status=204)
