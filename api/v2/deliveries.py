"""``/v2/alarms/<id>/deliveries``: the delivery log of an alarm's webhooks.

Not in Aodh (which keeps no delivery state).  Each delivery is one
notification to one action URL, with its status (``waiting`` behind an
earlier notification to the same target, ``pending``, ``in_flight``,
``delivered``, ``dead``), attempt count, last answer and,
on the detail view, every attempt.  A dead-lettered delivery can be
queued again with ``POST .../deliveries/<delivery_id>/redeliver``; it
keeps its delivery id.  Action URLs are shown without passwords or
sensitive query values; signing secrets are never shown.
"""

from __future__ import annotations

from typing import Any

import flask
import sqlalchemy as sa

import notifiers
from alarmer import timeutils
from alarmer.alarms.tables import Alarm, Notification
from api import context, errors, params
from api.context import require_member, require_reader
from api.identity import Identity
from api.v2 import common
from notifiers import queue
from notifiers import tables as models

bp = flask.Blueprint("v2_deliveries", __name__)
errors.AODH.install(bp)

MAX_LIMIT = 1000
_STATUSES = ", ".join(models.STATUSES)


def _document(delivery: Any, notification: Any) -> dict[str, Any]:
    return {
        "delivery_id": delivery.id,
        "alarm_id": delivery.alarm_id,
        "seq": delivery.seq,
        "target": notifiers.redact(delivery.target),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "previous": notification.previous,
        "current": notification.current,
        "next_attempt_at": timeutils.isoformat(delivery.next_attempt_at)
        if delivery.status == models.PENDING
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": timeutils.isoformat(delivery.created_at),
        "updated_at": timeutils.isoformat(delivery.updated_at),
        "delivered_at": timeutils.isoformat(delivery.delivered_at),
    }


def _attempt_document(attempt: models.DeliveryAttempt) -> dict[str, Any]:
    return {
        "attempted_at": timeutils.isoformat(attempt.attempted_at),
        "status_code": attempt.status_code,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
        "outcome": attempt.outcome,
    }


def _scope(identity: Identity, query: sa.Select) -> sa.Select:
    if identity.is_admin:
        return query
    return query.where(Notification.project_id == identity.project_id)


def _base(identity: Identity, alarm_id: str) -> sa.Select:
    query = (
        sa.select(models.Delivery, Notification)
        .join(Notification, Notification.id == models.Delivery.notification_id)
        .where(models.Delivery.alarm_id == alarm_id)
    )
    return _scope(identity, query)


def _alarm_visible(identity: Identity, alarm_id: str) -> bool:
    query = sa.select(Alarm.project_id).where(Alarm.alarm_id == alarm_id)
    with context.runtime().db.read_session() as session:
        project_id = session.execute(query).scalar()
    if project_id is None:
        return False
    return identity.is_admin or project_id == identity.project_id


@bp.get("/v2/alarms/<alarm_id>/deliveries")
def list_deliveries(alarm_id: str) -> flask.Response:
    """List the deliveries of an alarm, latest notification first.

    Query parameters: ``status`` (one of the statuses) and ``limit``.
    """
    identity = require_reader()
    status = flask.request.args.get("status")
    if status is not None and status not in models.STATUSES:
        raise errors.APIError(
            f"Invalid input for field/attribute status. Value: '{status}'. "
            f"Value should be one of: {_STATUSES}"
        )
    limit = params.v2_limit(MAX_LIMIT)
    query = _base(identity, alarm_id)
    if status is not None:
        query = query.where(models.Delivery.status == status)
    query = query.order_by(
        models.Delivery.seq.desc(), models.Delivery.id
    ).limit(limit)
    with context.runtime().db.read_session() as session:
        rows = session.execute(query).all()
    if not rows and not _alarm_visible(identity, alarm_id):
        raise errors.NotFound(f"Alarm {alarm_id} not found")
    return common.respond([_document(d, n) for d, n in rows])


def _get(identity: Identity, alarm_id: str, delivery_id: str) -> Any:
    query = _base(identity, alarm_id).where(models.Delivery.id == delivery_id)
    with context.runtime().db.read_session() as session:
        row = session.execute(query).first()
    if row is None:
        raise errors.NotFound(
            f"Delivery {delivery_id} of alarm {alarm_id} not found"
        )
    return row


@bp.get("/v2/alarms/<alarm_id>/deliveries/<delivery_id>")
def get_delivery(alarm_id: str, delivery_id: str) -> flask.Response:
    """Return one delivery with every attempt, oldest first."""
    identity = require_reader()
    delivery, notification = _get(identity, alarm_id, delivery_id)
    with context.runtime().db.read_session() as session:
        attempts = session.execute(
            sa.select(models.DeliveryAttempt)
            .where(models.DeliveryAttempt.delivery_id == delivery_id)
            .order_by(models.DeliveryAttempt.id)
        ).scalars()
        body = _document(delivery, notification)
        body["attempt_log"] = [_attempt_document(a) for a in attempts]
    return common.respond(body)


@bp.post("/v2/alarms/<alarm_id>/deliveries/<delivery_id>/redeliver")
def redeliver(alarm_id: str, delivery_id: str) -> flask.Response:
    """Queue a dead-lettered delivery again (202); 409 if not dead."""
    identity = require_member()
    delivery, _ = _get(identity, alarm_id, delivery_id)
    rt = context.runtime()
    if not queue.redeliver(rt.db, delivery_id, rt.conf.notifier.max_age):
        raise errors.Conflict(
            f"Delivery {delivery_id} is {delivery.status}, not dead: "
            "only dead-lettered deliveries can be redelivered"
        )
    delivery, notification = _get(identity, alarm_id, delivery_id)
    return common.respond(_document(delivery, notification), 202)
