"""The SQL database shared by the metric index, alarms and notifications.

One database holds every table; each area of alarmer declares its models
on :class:`Base` and owns an independent alembic branch under
``alarmer/db/migrations/versions`` (``upgrade heads`` applies them all).
SQLite (a file in the data directory) is the default; PostgreSQL and
MySQL/MariaDB are chosen by URL.  The statements whose SQL differs between
them come from :mod:`alarmer.db.dialect`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from oslo_config import cfg
from sqlalchemy import event, orm
from sqlalchemy.engine import Engine

from alarmer import conf as aconf
from alarmer import timeutils

LOG = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(orm.DeclarativeBase):
    """Declarative base of every alarmer table."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A datetime column that only stores and returns aware UTC values.

    Stored as a naive UTC ``DATETIME`` with microseconds on every backend
    (SQLite and MySQL have no zone support), returned aware.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine:
        if dialect.name == "mysql":
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


def database_url(conf: cfg.ConfigOpts) -> str:
    """Return the configured database URL (SQLite file by default)."""
    if conf.database.connection:
        return conf.database.connection
    path = os.path.join(aconf.data_dir(conf), "alarmer.sqlite")
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at BEGIN, so that two of them never
    # deadlock on a lock upgrade (SQLite's deferred transactions do);
    # read-only sessions (``Database.read_session``) begin deferred and run
    # concurrently with the writer thanks to WAL.
    if conn.get_execution_options().get("alarmer_readonly"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings alarmer needs per backend."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return sa.create_engine(url, **kwargs)


class Database:
    """An engine plus a session factory, passed to whoever needs SQL."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.sessionmaker = orm.sessionmaker(
            self.engine, expire_on_commit=False
        )
        self.read_sessionmaker = orm.sessionmaker(
            self.engine.execution_options(alarmer_readonly=True),
            expire_on_commit=False,
        )

    @property
    def dialect(self) -> str:
        """Name of the backend: ``sqlite``, ``postgresql`` or ``mysql``."""
        return self.engine.dialect.name

    def session(self) -> orm.Session:
        """Return a new session (use it as a context manager)."""
        return self.sessionmaker()

    def read_session(self) -> orm.Session:
        """Return a session for reads only (concurrent on SQLite)."""
        return self.read_sessionmaker()

    def upgrade(self) -> None:
        """Create or migrate every table to the newest revision."""
        upgrade(self.engine)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    """Return the alembic configuration of alarmer's migrations."""
    here = os.path.dirname(os.path.abspath(__file__))
    config = AlembicConfig()
    config.set_main_option("script_location", os.path.join(here, "migrations"))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, on_step: Callable[[], None] | None = None) -> None:
    """Apply every pending migration of every branch.

    :param on_step: called after each migration applied (progress).
    """
    LOG.info("migrating database %s", engine.url.render_as_string())
    config = alembic_config(engine)
    if on_step is not None:
        config.attributes["on_version_apply"] = lambda **_kwargs: on_step()
    command.upgrade(config, "heads")


def now() -> dt.datetime:
    """Current time for column defaults (aware UTC)."""
    return timeutils.utcnow()
