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

:meth:`Dialect.insert_rows` and :meth:`Dialect.update_rows` write many
rows in few statements (the hot path of an evaluator's commit): one
``executemany`` through the driver (:func:`execute_many`) by default,
one statement reading the rows from one JSON parameter on PostgreSQL.

Every verb runs inside the caller's transaction, on a
:class:`~sqlalchemy.orm.Session` or a :class:`~sqlalchemy.engine.Connection`
of a writing transaction.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, cast

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


class Prepared(NamedTuple):
    """A statement compiled for one connection's dialect.

    :ivar sql: the statement's text in the driver's parameter style.
    :ivar names: its bound parameters, in the order of the text.
    :ivar processors: how each value is converted for the driver
        (``None``: as is).
    :ivar defaults: the values of the parameters bound in the statement
        itself (a constant such as the ``1`` of ``version + 1``).
    :ivar positional: the driver takes tuples (else mappings).
    """

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: Mapping[str, Any]
    positional: bool


def prepare(
    conn: sa.Connection,
    key: str,
    build: Callable[[], sa.Insert | sa.Update],
    column_keys: Sequence[str] | None = None,
) -> Prepared:
    """Compile ``build()`` once per DB-API connection.

    The result is kept in the connection's ``info`` (it lives as long as
    the pooled DB-API connection) under *key*; *column_keys* are the
    columns an ``INSERT`` is given.
    """
    info = conn.info
    slot = ("alarmer.prepared", key)
    found = info.get(slot)
    if isinstance(found, Prepared):
        return found
    dialect = conn.dialect
    compiled = build().compile(
        dialect=dialect,
        column_keys=list(column_keys) if column_keys is not None else None,
    )
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    positional = bool(compiled.positional)
    names = tuple(compiled.positiontup or ()) if positional else tuple(binds)
    processors = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in names
    )
    defaults = {
        name: bind.value
        for name, bind in binds.items()
        if not bind.required and bind.callable is None
    }
    prepared = Prepared(
        compiled.string, names, processors, defaults, positional
    )
    info[slot] = prepared
    return prepared


def execute_many(conn: sa.Connection, prepared: Prepared, rows: Rows) -> int:
    """Run *prepared* once per row of *rows* in one driver call.

    The rows are converted column by column, each distinct hashable
    value once (a tick's rows share their timestamps), then handed to
    the DB-API ``executemany``, without SQLAlchemy's per-row work.
    Runs in the caller's transaction.

    :returns: the rows matched, summed over *rows* (meaningful where the
        dialect counts the rows of an ``executemany``).
    """
    if not rows:
        return 0
    columns: list[list[Any]] = []
    for name, processor in zip(
        prepared.names, prepared.processors, strict=True
    ):
        if name in prepared.defaults:
            default = prepared.defaults[name]
            values = [row.get(name, default) for row in rows]
        else:
            values = [row[name] for row in rows]
        if processor is not None:
            values = _convert(values, processor)
        columns.append(values)
    params: list[Any]
    if prepared.positional:
        params = list(zip(*columns, strict=True))
    else:
        params = [
            dict(zip(prepared.names, values, strict=True))
            for values in zip(*columns, strict=True)
        ]
    result = conn.exec_driver_sql(prepared.sql, params)
    return rowcount(result)


def execute_one(
    conn: sa.Connection, prepared: Prepared, row: Mapping[str, Any]
) -> int:
    """Run *prepared* once with the values of *row*, through the driver.

    As :func:`execute_many` for one row, with the driver's ``execute``
    (whose row count is the statement's).  Runs in the caller's
    transaction.

    :returns: the rows the statement matched.
    """
    values = []
    for name, processor in zip(
        prepared.names, prepared.processors, strict=True
    ):
        value = (
            row.get(name, prepared.defaults[name])
            if name in prepared.defaults
            else row[name]
        )
        values.append(value if processor is None else processor(value))
    params: Any = (
        tuple(values)
        if prepared.positional
        else dict(zip(prepared.names, values, strict=True))
    )
    return rowcount(conn.exec_driver_sql(prepared.sql, params))


def _convert(values: list[Any], processor: Callable[[Any], Any]) -> list[Any]:
    """Apply *processor* to *values*, once per distinct hashable value."""
    seen: dict[Any, Any] = {}
    out: list[Any] = []
    for value in values:
        if isinstance(value, (dict, list)):
            out.append(processor(value))
            continue
        try:
            out.append(seen[value])
        except KeyError:
            seen[value] = converted = processor(value)
            out.append(converted)
    return out


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

    def insert_rows(
        self, conn: sa.Connection, table: sa.Table, rows: Rows
    ) -> None:
        """Insert *rows* (mappings with the same keys) into *table*.

        Column defaults computed in Python are not applied: every row
        gives every column that needs a value.  By default one driver
        ``executemany`` (:func:`execute_many`).
        """
        if not rows:
            return
        prepared = prepare(
            conn,
            f"{table.name}.insert",
            lambda: sa.insert(table).inline(),
            column_keys=list(rows[0]),
        )
        execute_many(conn, prepared, rows)

    def insert_rows_ignore(
        self, conn: sa.Connection, table: sa.Table, rows: Rows
    ) -> int:
        """:meth:`insert_rows`, skipping existing primary keys.

        One driver ``executemany`` of the compiled :meth:`insert_ignore`
        statement (:func:`execute_many`), on every backend.

        :returns: the driver's count of the rows written (on MySQL, an
            existing row may count too).
        """
        if not rows:
            return 0
        prepared = prepare(
            conn,
            f"{table.name}.insert_ignore",
            lambda: self._insert_ignore(table),
            column_keys=list(rows[0]),
        )
        return execute_many(conn, prepared, rows)

    def update_rows(
        self,
        conn: sa.Connection,
        key: str,
        update: Callable[[Mapping[str, Any]], sa.Update],
        types: Mapping[str, sa.types.TypeEngine[Any]],
        rows: Rows,
    ) -> int:
        """Run an ``UPDATE`` once for each of *rows*, in few statements.

        ``update(source)`` builds the statement from the row values in
        *source*, one column expression per name of *types* (the values'
        types); its ``WHERE`` clause must match each row's own target
        (a key and a version fence, say).  By default the expressions
        are bound parameters and the rows go through one driver
        ``executemany``; *key* names the compiled statement.

        :returns: the rows updated, in total.
        """
        prepared = prepare(
            conn,
            key,
            lambda: update(
                {
                    name: sa.bindparam(name, type_=t)
                    for name, t in types.items()
                }
            ),
        )
        return execute_many(conn, prepared, rows)

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

    def insert_rows(
        self, conn: sa.Connection, table: sa.Table, rows: Rows
    ) -> None:
        """One ``INSERT ... SELECT`` of the rows sent as one JSON document.

        The statement is compiled once per DB-API connection and set of
        columns (:func:`prepare`); each call only encodes the document.
        """
        if not rows:
            return
        names = list(rows[0])
        types = {name: table.c[name].type for name in names}
        prepared = prepare(
            conn,
            f"{table.name}.insert_select:{','.join(names)}",
            lambda: (
                sa.insert(table)
                .inline()
                .from_select(names, sa.select(*_recordset(types).c))
            ),
        )
        execute_one(conn, prepared, {_ROWS: _document(names, rows)})

    def update_rows(
        self,
        conn: sa.Connection,
        key: str,
        update: Callable[[Mapping[str, Any]], sa.Update],
        types: Mapping[str, sa.types.TypeEngine[Any]],
        rows: Rows,
    ) -> int:
        """One ``UPDATE ... FROM (<the rows, one JSON document>) AS v``.

        Compiled once per DB-API connection, *key* and set of columns
        (:func:`prepare`); each call only encodes the document.
        """
        if not rows:
            return 0
        prepared = prepare(
            conn,
            f"{key}.from_rows:{','.join(types)}",
            lambda: update({c.name: c for c in _recordset(types).c}),
        )
        return execute_one(
            conn, prepared, {_ROWS: _document(list(types), rows)}
        )

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


#: The parameter of :func:`_recordset`: the rows, one JSON document.
_ROWS = "u_rows"


def _recordset(types: Mapping[str, sa.types.TypeEngine[Any]]) -> sa.Subquery:
    """``(SELECT CAST(r.value ->> 0 AS <type>) AS a, ... FROM
    json_array_elements(:u_rows) AS r) AS v``: rows as a subquery.

    PostgreSQL only.  The rows travel as one JSON document (the
    parameter ``u_rows``, see :func:`_document`) instead of one
    parameter per value.
    """
    names = list(types)
    objects = (
        sa.func.json_array_elements(
            sa.cast(sa.bindparam(_ROWS, type_=sa.Text), sa.JSON)
        )
        .table_valued("value")
        .render_derived(name="r")
    )
    return (
        sa.select(
            *(
                _element(objects.c.value, index, types[name]).label(name)
                for index, name in enumerate(names)
            )
        )
        .select_from(objects)
        .subquery("v")
    )


def _document(names: Sequence[str], rows: Rows) -> str:
    """The value of :func:`_recordset`'s parameter for *rows*.

    Encoded by the standard library's C encoder; datetimes go as ISO
    8601 text of their UTC time, naive (as :class:`alarmer.db.UTCDateTime`
    stores them).
    """
    return json.dumps([[_plain(row[name]) for name in names] for row in rows])


def _element(
    array: Any, index: int, type_: sa.types.TypeEngine[Any]
) -> sa.ColumnElement[Any]:
    """Item *index* of a JSON array, as a value of *type_*."""
    if isinstance(type_, sa.JSON):
        return sa.type_coerce(array.op("->")(index), type_)
    return sa.cast(array.op("->>")(index), type_)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat()
    return value


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
