"""``/v2/silences``: hold the notifications of matching alarms.

Not in Aodh.  ``POST /v2/silences`` with ``matchers`` (a list of
``{field, op, value}``), ``starts_at`` (default: now), ``ends_at`` and/or
a ``recurrence`` (``{start: cron, duration: seconds, timezone}``) and a
``comment``; the creator is recorded.  A member silences the alarms of
its project; an administrator may name another ``project_id``, or
``null`` for every project.  ``DELETE`` ends a silence at once (it stays
readable, with status ``expired``, for the audit trail).  See
:mod:`alarmer.alarms.silences` for the matching rules.
"""

from __future__ import annotations

import flask

from alarmer import timeutils
from alarmer.alarms import silences
from api import context, errors, params
from api.context import require_member, require_reader
from api.identity import Identity
from api.v2 import common

bp = flask.Blueprint("v2_silences", __name__)
errors.AODH.install(bp)

MAX_LIMIT = 1000


def _scope(identity: Identity) -> str | None:
    """The project a caller's silences are limited to (None: admin)."""
    return None if identity.is_admin else identity.project_id


@bp.post("/v2/silences")
def create_silence() -> flask.Response:
    """Create a silence: 201 with its document and Location."""
    identity = require_member()
    now = timeutils.utcnow()
    values = silences.validate(
        params.v2_json_body(),
        project_id=identity.project_id,
        is_admin=identity.is_admin,
        now=now,
    )
    row = silences.create(context.runtime().db, values, identity.user_id)
    response = common.respond(silences.document(row, now), 201)
    response.headers["Location"] = (
        flask.request.host_url.rstrip("/") + f"/v2/silences/{row.silence_id}"
    )
    return response


@bp.get("/v2/silences")
def list_silences() -> flask.Response:
    """The silences in the caller's scope, newest first.

    Query parameters: ``status`` (``active``, ``pending``, ``expired``)
    and ``limit``.
    """
    identity = require_reader()
    status = flask.request.args.get("status")
    allowed = (silences.ACTIVE, silences.PENDING, silences.EXPIRED)
    if status is not None and status not in allowed:
        raise errors.APIError(
            f"Invalid input for field/attribute status. Value: '{status}'. "
            "Value should be one of: active, pending, expired"
        )
    limit = params.v2_limit(MAX_LIMIT)
    now = timeutils.utcnow()
    rows = silences.list_silences(
        context.runtime().db, _scope(identity), limit
    )
    documents = [silences.document(row, now) for row in rows]
    if status is not None:
        documents = [d for d in documents if d["status"] == status]
    return common.respond(documents)


@bp.get("/v2/silences/<silence_id>")
def get_silence(silence_id: str) -> flask.Response:
    """One silence."""
    identity = require_reader()
    try:
        row = silences.get(context.runtime().db, silence_id, _scope(identity))
    except LookupError as exc:
        raise errors.NotFound(str(exc)) from exc
    return common.respond(silences.document(row, timeutils.utcnow()))


@bp.delete("/v2/silences/<silence_id>")
def expire_silence(silence_id: str) -> flask.Response:
    """End a silence now; it is kept, expired, for the audit trail."""
    identity = require_member()
    try:
        row = silences.expire(
            context.runtime().db, silence_id, _scope(identity)
        )
    except LookupError as exc:
        raise errors.NotFound(str(exc)) from exc
    return common.respond(silences.document(row, timeutils.utcnow()))
