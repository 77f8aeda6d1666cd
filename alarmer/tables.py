"""Every table of alarmer's one database, gathered explicitly.

Each capability declares its tables on :class:`alarmer.db.Base` in its
own package; this module, at the top beside the command line, imports
them all, so that :func:`metadata` is complete.  The schema itself comes
from the hand-written migrations under ``alarmer/db/migrations``; a test
compares them with :func:`metadata` on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

import notifiers.tables
from alarmer import db
from alarmer.alarms import counters as alarm_counters
from alarmer.alarms import tables as alarm_tables
from alarmer.db import dialect
from alarmer.identity import apikeys
from alarmer.metrics.index import schema as index_schema

#: The modules declaring tables, in dependency order.
MODEL_MODULES = (
    dialect,
    alarm_tables,
    alarm_counters,
    apikeys,
    index_schema,
    notifiers.tables,
)


def metadata() -> sa.MetaData:
    """Return the metadata holding every table of every capability."""
    return db.Base.metadata


#: Indexes a migration creates only where the database allows (not in
#: the models): ``ix_alarm_name_trgm``, PostgreSQL with ``pg_trgm``
#: (migration ``t0005``).
OPTIONAL_INDEXES = frozenset({"ix_alarm_name_trgm"})


def compared(
    item: Any, name: str | None, kind: str, reflected: bool, other: Any
) -> bool:
    """Alembic's ``include_object``: compare all but :data:`OPTIONAL_INDEXES`.

    The signature is alembic's; *item*, *reflected* and *other* are unused.
    """
    return not (kind == "index" and name in OPTIONAL_INDEXES)
