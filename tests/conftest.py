"""Shared fixtures: configuration, databases, real servers, the app.

Real backends (PostgreSQL, Redis, MariaDB) are used when reachable.  On a
machine without them the tests that need them are skipped with the
reason; with ``ALARMER_REQUIRE_BACKENDS=1`` (set by CI) an unreachable
server fails those tests instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from alarmer import conf as aconf
from alarmer import runtime

POSTGRESQL_URL = os.environ.get(
    "ALARMER_TEST_POSTGRESQL_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
)
MYSQL_URL = os.environ.get(
    "ALARMER_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
REDIS_URL = os.environ.get(
    "ALARMER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
)
REQUIRE_BACKENDS = os.environ.get("ALARMER_REQUIRE_BACKENDS") == "1"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_server(name: str, url: str, default_port: int) -> None:
    """Skip (or fail under CI) when the server behind *url* is down."""
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}"
    if REQUIRE_BACKENDS:
        pytest.fail(message + " (ALARMER_REQUIRE_BACKENDS=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgresql_server_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped after the session."""
    require_server("PostgreSQL", POSTGRESQL_URL, 5432)
    admin = sa.create_engine(POSTGRESQL_URL, isolation_level="AUTOCOMMIT")
    name = f"alarmer_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(POSTGRESQL_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )
        admin.dispose()


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """URL of a fresh MariaDB/MySQL database, dropped after the session."""
    require_server("MariaDB", MYSQL_URL, 3306)
    admin = sa.create_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    name = f"alarmer_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    url = sa.make_url(MYSQL_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


@pytest.fixture
def mysql_url(mysql_server_url: str) -> str:
    """The MariaDB/MySQL database of the session, emptied before the test."""
    _empty_database(mysql_server_url)
    return mysql_server_url


@pytest.fixture
def redis_url() -> str:
    """URL of the Redis server (tests namespace their keys)."""
    require_server("Redis", REDIS_URL, 6379)
    return REDIS_URL


def _empty_database(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        else:
            meta = sa.MetaData()
            meta.reflect(conn)
            meta.drop_all(conn)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A database URL: a SQLite file, then the real PostgreSQL.

    The PostgreSQL database is emptied before each test.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'alarmer.sqlite'}"
        return
    url = request.getfixturevalue("postgresql_server_url")
    _empty_database(url)
    yield url


@pytest.fixture
def make_conf(tmp_path):
    """Return a function building a configuration rooted in tmp_path."""

    def _make(**sections: dict[str, object]):
        overrides: dict[str, dict[str, object]] = {
            "DEFAULT": {"data_dir": str(tmp_path / "data")}
        }
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return aconf.make_conf(overrides=overrides)

    return _make


@pytest.fixture
def rt(make_conf, db_url) -> Iterator[runtime.Runtime]:
    """A migrated runtime on each database backend."""
    conf = make_conf(database={"connection": db_url})
    built = runtime.build(conf, migrate=True)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def sqlite_rt(make_conf) -> Iterator[runtime.Runtime]:
    """A migrated runtime on the default SQLite file."""
    built = runtime.build(make_conf(), migrate=True)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(rt):
    """A Flask test client of the whole API, on each database backend."""
    from api.app import create_app

    return create_app(rt).test_client()


@pytest.fixture
def live_api(sqlite_rt) -> Iterator[str]:
    """A real HTTP server on a free loopback port; yields its base URL."""
    from api.server import ApiServer

    sqlite_rt.conf.set_override("port", 0, group="api")
    server = ApiServer(sqlite_rt)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


#: The files that take a minute or more (real OpenStack peers, whole
#: services started several times).  They are collected first, so that
#: with the tests spread over processes (``-n``, one file per process at
#: a time) none of them is left to run alone at the end.
LONG_FILES = (
    "test_readme.py",
    "test_api_fuzz.py",
    "test_heat.py",
    "test_keystone.py",
    "test_openstack_cli.py",
    "test_trust_keystone.py",
    "test_dashboard_keystone.py",
    "test_aodhclient.py",
    "test_evaluator_faults.py",
    "test_serve_processes.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of :data:`LONG_FILES` first, in that order."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
