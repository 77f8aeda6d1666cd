"""Telemetry: on PostgreSQL, a trigram index of the alarm names.

The dashboard's name search (``ILIKE '%...%'`` on PostgreSQL) cannot
seek in a B-tree; a GIN index of the name's trigrams (``pg_trgm``)
answers it from the index, however many alarms there are.  Creating the
extension needs the ``CREATE`` privilege on the database (``pg_trgm`` is
a trusted extension): without it this step logs a warning and creates no
index, and the search reads the list's indexes (t0003) as before.  The
index can be added later by someone allowed to::

    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX ix_alarm_name_trgm ON alarm USING gin (name gin_trgm_ops);

Other databases are left as they are.

Revision ID: t0005
Revises: t0004
Create Date: 2026-12-03
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "t0005"
down_revision: str | None = "t0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

LOG = logging.getLogger(__name__)

#: The index (see :data:`alarmer.tables.OPTIONAL_INDEXES`).
INDEX = "ix_alarm_name_trgm"


def _has_trigrams(bind: sa.Connection) -> bool:
    """True once ``pg_trgm`` is installed (created here if allowed)."""
    installed = sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
    if bind.execute(installed).first() is not None:
        return True
    try:
        # A savepoint: a refusal must not abort the upgrade's transaction.
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        LOG.warning(
            "PostgreSQL extension pg_trgm cannot be created (%s): the "
            "alarm name search will not use a trigram index; see the "
            "migration t0005 to add it later",
            str(exc.orig).strip().splitlines()[0],
        )
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _has_trigrams(bind):
        return
    op.create_index(
        INDEX,
        "alarm",
        ["name"],
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")
