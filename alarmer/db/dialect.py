"""What differs between the SQL backends, behind one small interface.

SQLite, PostgreSQL and MySQL/MariaDB disagree on a few statements that
the delivery queue and the alarm store need.  Instead of branching on
the backend name where the statement is written, callers ask the
:class:`Dialect` of their engine (:func:`for_engine`) for the verb:

* :meth:`Dialect.insert_ignore`: insert rows, skipping those whose
  primary key exists (``ON CONFLICT DO NOTHING`` / ``ON DUPLICATE KEY
  UPDATE`` of the key to itself: only duplicate keys are skipped; any
  other error is raised on every backend);
* :meth:`Dialect.insert_many`: insert many rows in as few statements as
  the driver allows;
* :meth:`Dialect.skip_locked`: a ``SELECT`` that locks the rows it
  returns and skips those another transaction holds;
* :meth:`Dialect.lock`: a named lock held until the transaction ends,
  exclusive or shared (an advisory lock on PostgreSQL, a row of
  :class:`LockSlot` on MySQL, nothing on SQLite where every writing
  transaction already holds the database's write lock);
* :meth:`Dialect.update_in`: an ``UPDATE`` of the rows a ``SELECT`` of
  the same table picks (MySQL cannot read the table it updates);
* :meth:`Dialect.notify` and :meth:`Dialect.commit_counter`: how other
  connections learn about a commit (``NOTIFY`` on PostgreSQL, SQLite's
  ``data_version``).

Every verb runs inside the caller's transaction, on a
:class:`~sqlalchemy.orm.Session` or a :class:`~sqlalchemy.engine.Connection`
of a writing transaction.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Engine

from alarmer.db import Base

#: Rows of :class:`LockSlot`: the named locks of MySQL hash onto them.
LOCK_SLOTS = 1024

#: A session or a connection, in a transaction.
Executor = orm.Session | sa.Connection
Rows = Sequence[Mapping[str, Any]]


class LockSlot(Base):
    """One lockable row per slot, for the named locks of MySQL/MariaDB.

    :data:`LOCK_SLOTS` rows numbered from 0 are created with the table;
    a named lock is ``SELECT ... FOR UPDATE`` (or ``LOCK IN SHARE
    MODE``) of the row its name hashes to, so it is released with the
    transaction whatever happens to the connection.  Two names may share
    a slot: they then exclude each other too, which costs some waiting
    but never correctness.  The other backends do not use the table.
    """

    __tablename__ = "lock_slot"

    slot: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, primary_key=True, autoincrement=False
    )


LOCK_SLOT = cast(sa.Table, LockSlot.__table__)


def rowcount(result: sa.Result[Any]) -> int:
    """Rows matched by the ``UPDATE`` or ``DELETE`` that gave *result*."""
    return int(cast(sa.CursorResult[Any], result).rowcount)


def lock_key(name: str) -> int:
    """Return the signed 64-bit key of the lock called *name*.

    The same on every process and host (unlike :func:`hash`).
    """
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Dialect(abc.ABC):
    """The verbs whose SQL differs between backends; see the module doc."""

    #: Name of the SQLAlchemy dialect(s) served.
    names: ClassVar[tuple[str, ...]] = ()
    #: A :meth:`skip_locked` query joining several tables may be limited
    #: to lock the rows of one of them (``FOR UPDATE OF``).
    locks_one_table: ClassVar[bool] = True
    #: Other connections may wait for :meth:`notify` (``LISTEN``).
    listens: ClassVar[bool] = False
    #: Seconds between two looks of a watcher for commits made by other
    #: connections (the cost of one look decides); ``None`` when they
    #: are announced (:attr:`listens`).
    probe_interval: ClassVar[float | None] = None

    def __init__(self) -> None:
        self._inserts: dict[tuple[str, str], Any] = {}

    @property
    def name(self) -> str:
        """The backend: ``sqlite``, ``postgresql`` or ``mysql``."""
        return self.names[0]

    def insert_ignore(
        self, executor: Executor, table: sa.Table, rows: Rows
    ) -> None:
        """Insert *rows* into *table*, skipping existing primary keys.

        Other integrity errors (a missing foreign row...) are raised.
        """
        if not rows:
            return
        key = ("ignore", table.name)
        statement = self._inserts.get(key)
        if statement is None:
            statement = self._insert_ignore(table)
            self._inserts[key] = statement
        executor.execute(statement, list(rows))

    @abc.abstractmethod
    def _insert_ignore(self, table: sa.Table) -> Any:
        """Build the ``INSERT`` of :meth:`insert_ignore`."""

    def insert_many(
        self, executor: Executor, table: sa.Table, rows: Rows
    ) -> None:
        """Insert *rows* into *table* in as few statements as possible."""
        if rows:
            executor.execute(table.insert(), list(rows))

    @abc.abstractmethod
    def skip_locked(self, query: sa.Select, of: sa.Table) -> sa.Select:
        """Make *query* lock its rows, skipping rows locked by others.

        Where :attr:`locks_one_table`, only the rows of *of* are locked;
        elsewhere every table of the query is.
        """

    @abc.abstractmethod
    def lock(
        self, executor: Executor, name: str, *, shared: bool = False
    ) -> None:
        """Wait for the lock *name*, held until the transaction ends.

        A *shared* holder excludes exclusive ones only.  Take it before
        the first read of the transaction: on MySQL (repeatable read) the
        reads then see what the previous holder committed.
        """

    def update_in(
        self,
        executor: Executor,
        update: sa.Update,
        column: sa.ColumnElement[Any],
        ids: sa.Select,
    ) -> int:
        """Apply *update* to the rows whose *column* is among *ids*.

        *ids* selects one column of the updated table itself; *update*
        should repeat the conditions that must still hold when the rows
        are written.

        :returns: the number of rows updated.
        """
        result = executor.execute(
            update.where(column.in_(ids.scalar_subquery()))
        )
        return rowcount(result)

    def notify(self, executor: Executor, channel: str) -> None:
        """Announce *channel* at commit (where :attr:`listens`)."""
        return None

    def commit_counter(self, dbapi_connection: Any) -> int | None:
        """A number that changes when other connections commit.

        Read on the DB-API connection *dbapi_connection*, outside any
        transaction.  ``None`` when the backend has none: a watcher
        looks at the data itself.
        """
        return None


class SQLiteDialect(Dialect):
    """SQLite: one writer at a time, taken at ``BEGIN IMMEDIATE``."""

    names = ("sqlite",)
    #: ``PRAGMA data_version`` is read from memory: look often (the
    #: thread's wake-ups cost more than the look).
    probe_interval = 0.01

    def _insert_ignore(self, table: sa.Table) -> Any:
        return sqlite.insert(table).on_conflict_do_nothing()

    def skip_locked(self, query: sa.Select, of: sa.Table) -> sa.Select:
        """Return *query*: the writing transaction excludes every other."""
        return query

    def lock(
        self, executor: Executor, name: str, *, shared: bool = False
    ) -> None:
        """Begin the transaction now: it holds the database's write lock.

        (``BEGIN IMMEDIATE``; a read-only session begins deferred and
        takes no lock.)
        """
        if isinstance(executor, orm.Session):
            executor.connection()
        elif not executor.in_transaction():
            executor.begin()

    def commit_counter(self, dbapi_connection: Any) -> int | None:
        """``PRAGMA data_version`` (changes on others' commits only)."""
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA data_version")
            return int(cursor.fetchone()[0])
        finally:
            cursor.close()


class PostgreSQLDialect(Dialect):
    """PostgreSQL: row locks, advisory locks, ``LISTEN``/``NOTIFY``."""

    names = ("postgresql",)
    listens = True

    def _insert_ignore(self, table: sa.Table) -> Any:
        return postgresql.insert(table).on_conflict_do_nothing()

    def insert_many(
        self, executor: Executor, table: sa.Table, rows: Rows
    ) -> None:
        """One multi-row ``INSERT`` per 1,000 rows.

        With ``RETURNING``, SQLAlchemy batches the rows
        ("insertmanyvalues") instead of sending one statement each.
        """
        if not rows:
            return
        key = ("many", table.name)
        statement = self._inserts.get(key)
        if statement is None:
            statement = table.insert().returning(*table.primary_key.columns)
            self._inserts[key] = statement
        executor.execute(statement, list(rows))

    def skip_locked(self, query: sa.Select, of: sa.Table) -> sa.Select:
        """``FOR UPDATE OF <of> SKIP LOCKED``."""
        return query.with_for_update(skip_locked=True, of=of)

    def lock(
        self, executor: Executor, name: str, *, shared: bool = False
    ) -> None:
        """``pg_advisory_xact_lock[_shared]`` of :func:`lock_key`."""
        function = (
            "pg_advisory_xact_lock_shared"
            if shared
            else "pg_advisory_xact_lock"
        )
        executor.execute(
            sa.text(f"SELECT {function}(:key)"), {"key": lock_key(name)}
        )

    def notify(self, executor: Executor, channel: str) -> None:
        """``pg_notify`` (delivered when the transaction commits)."""
        executor.execute(
            sa.text("SELECT pg_notify(:channel, '')"), {"channel": channel}
        )


class MySQLDialect(Dialect):
    """MySQL/MariaDB (InnoDB, repeatable read)."""

    names = ("mysql", "mariadb")
    #: MariaDB has no ``FOR UPDATE OF``: a locking join locks both sides.
    locks_one_table = False
    #: A look is a round trip to the server.
    probe_interval = 0.05

    def _insert_ignore(self, table: sa.Table) -> Any:
        # Not INSERT IGNORE, which also turns other errors (foreign keys,
        # truncation) into warnings.
        insert = mysql.insert(table)
        key = next(iter(table.primary_key.columns))
        return insert.on_duplicate_key_update({key.name: key})

    def skip_locked(self, query: sa.Select, of: sa.Table) -> sa.Select:
        """``FOR UPDATE SKIP LOCKED`` (MariaDB 10.6+, MySQL 8+)."""
        return query.with_for_update(skip_locked=True)

    def lock(
        self, executor: Executor, name: str, *, shared: bool = False
    ) -> None:
        """Lock the :class:`LockSlot` row *name* hashes to."""
        slot = lock_key(name) % LOCK_SLOTS
        found = executor.execute(
            sa.select(LOCK_SLOT.c.slot)
            .where(LOCK_SLOT.c.slot == slot)
            .with_for_update(read=shared)
        ).scalar()
        if found is None:
            raise RuntimeError(
                f"lock_slot row {slot} is missing: run alarmer-dbsync"
            )

    def update_in(
        self,
        executor: Executor,
        update: sa.Update,
        column: sa.ColumnElement[Any],
        ids: sa.Select,
    ) -> int:
        """Read the ids, then update them by chunks of 500."""
        found = list(executor.execute(ids).scalars())
        updated = 0
        for start in range(0, len(found), 500):
            chunk = found[start : start + 500]
            result = executor.execute(update.where(column.in_(chunk)))
            updated += rowcount(result)
        return updated


_DIALECTS: tuple[type[Dialect], ...] = (
    SQLiteDialect,
    PostgreSQLDialect,
    MySQLDialect,
)


def for_name(name: str) -> Dialect:
    """Return the dialect of the SQLAlchemy dialect called *name*.

    :raises ValueError: an unsupported backend.
    """
    for cls in _DIALECTS:
        if name in cls.names:
            return cls()
    raise ValueError(f"unsupported database backend {name!r}")


def for_engine(engine: Engine) -> Dialect:
    """Return the dialect of *engine*."""
    return for_name(engine.dialect.name)
