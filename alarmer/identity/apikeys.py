"""API keys: created by an administrator, stored hashed, sent as bearer.

A key is ``alk_<key_id without dashes>_<secret>``; only the SHA-256 of the
whole key is stored (the secret has 256 bits of entropy, so a fast hash
is enough and lets a request be authenticated with one indexed lookup).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import uuid
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm

from alarmer import timeutils
from alarmer.db import Base, Database, UTCDateTime, now

LOG = logging.getLogger(__name__)
PREFIX = "alk_"


class ApiKey(Base):
    """An API key; only a hash of the secret is stored."""

    __tablename__ = "api_key"

    key_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), primary_key=True
    )
    key_hash: orm.Mapped[str] = orm.mapped_column(sa.String(128), unique=True)
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    roles: orm.Mapped[list[str]] = orm.mapped_column(sa.JSON)
    description: orm.Mapped[str] = orm.mapped_column(sa.Text, default="")
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        UTCDateTime, default=now
    )
    expires_at: orm.Mapped[dt.datetime | None] = orm.mapped_column(UTCDateTime)
    revoked: orm.Mapped[bool] = orm.mapped_column(sa.Boolean, default=False)


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    """What a key grants (never the secret)."""

    key_id: str
    project_id: str
    user_id: str
    roles: tuple[str, ...]
    description: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked: bool


def hash_key(key: str) -> str:
    """Return the stored form of *key*."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        project_id=row.project_id,
        user_id=row.user_id,
        roles=tuple(row.roles),
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked,
    )


def create(
    db: Database,
    *,
    project_id: str,
    user_id: str,
    roles: Sequence[str],
    description: str = "",
    expires_at: dt.datetime | None = None,
) -> tuple[str, KeyInfo]:
    """Create a key; return ``(key, info)``. The key is shown only once."""
    key_id = str(uuid.uuid4())
    key = f"{PREFIX}{key_id.replace('-', '')}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        key_id=key_id,
        key_hash=hash_key(key),
        project_id=project_id,
        user_id=user_id,
        roles=sorted({r.strip().lower() for r in roles if r.strip()}),
        description=description,
        created_at=timeutils.utcnow(),
        expires_at=expires_at,
        revoked=False,
    )
    with db.session() as session, session.begin():
        session.add(row)
    LOG.info("API key %s created for project %s", key_id, project_id)
    return key, _info(row)


def list_keys(db: Database) -> list[KeyInfo]:
    """Every key, oldest first."""
    with db.read_session() as session:
        rows = session.scalars(
            sa.select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id)
        )
        return [_info(r) for r in rows]


def revoke(db: Database, key_id: str) -> bool:
    """Revoke a key; False when there is no such key."""
    with db.session() as session, session.begin():
        result = session.execute(
            sa.update(ApiKey)
            .where(ApiKey.key_id == key_id)
            .values(revoked=True)
        )
    # An UPDATE gives a cursor result (typed as the general Result).
    revoked = cast(sa.CursorResult[Any], result).rowcount
    if revoked:
        LOG.info("API key %s revoked", key_id)
    return bool(revoked)


def authenticate(
    db: Database, key: str, now: dt.datetime | None = None
) -> KeyInfo | None:
    """Return what *key* grants, or None (unknown, revoked or expired)."""
    if not key.startswith(PREFIX):
        return None
    with db.read_session() as session:
        row = session.scalars(
            sa.select(ApiKey).where(ApiKey.key_hash == hash_key(key))
        ).first()
        if row is None or row.revoked:
            return None
        if row.expires_at is not None and row.expires_at <= (
            now or timeutils.utcnow()
        ):
            return None
        return _info(row)
