"""The alarm list's name search, and its trigram index on PostgreSQL.

The search text matches literally (``%``, ``_`` and ``\\`` are not
wildcards) and in any case, on SQLite and PostgreSQL.  On PostgreSQL
migration ``t0005`` adds a GIN trigram index, which the search's query
uses; without the privilege to create ``pg_trgm`` the upgrade warns and
goes on without it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from alarmer import db
from alarmer.alarms.tables import Alarm
from api.app import create_app
from api.dashboard.views import name_contains
from tests.conftest import POSTGRESQL_URL
from tests.functional.test_dashboard_browser import BY_METRICS, MEMBER

NAMES = (
    "load 50% high",
    "load 500 high",
    "a_b",
    "axb",
    "A_B upper",
    "back\\slash",
    "backslash",
)


@pytest.fixture
def named(rt) -> Iterator[tuple[object, str]]:
    """A test client of an app holding alarms named :data:`NAMES`."""
    client = create_app(rt).test_client()
    metric = client.post(
        "/v1/metric", json={"archive_policy_name": "high"}, headers=MEMBER
    )
    assert metric.status_code == 201, metric.text
    for name in NAMES:
        body = {
            "name": name,
            "type": BY_METRICS,
            f"{BY_METRICS}_rule": {
                "metrics": [metric.json["id"]],
                "threshold": 1,
                "aggregation_method": "mean",
            },
        }
        r = client.post("/v2/alarms", json=body, headers=MEMBER)
        assert r.status_code == 201, r.text
    yield client, rt.db.dialect


def _found(client, search: str) -> set[str]:
    page = client.get(
        "/dashboard/", query_string={"q": search}, headers=MEMBER
    )
    assert page.status_code == 200
    return {name for name in NAMES if f">{name}<" in page.text}


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("50%", {"load 50% high"}),
        ("a_b", {"a_b", "A_B upper"}),
        ("\\", {"back\\slash"}),
        ("LOAD", {"load 50% high", "load 500 high"}),
        ("%", {"load 50% high"}),
        ("_", {"a_b", "A_B upper"}),
    ],
)
def test_the_search_text_matches_literally_in_any_case(
    named, search, expected
):
    client, _ = named
    assert _found(client, search) == expected


def _explain(conn: sa.Connection, search: str) -> str:
    stmt = sa.select(Alarm.alarm_id).where(name_contains(search, "postgresql"))
    compiled = stmt.compile(
        conn, compile_kwargs={"literal_binds": True}
    )  # the plan of the literal pattern, as the server sees it
    plan = conn.exec_driver_sql(f"EXPLAIN {compiled}").scalars().all()
    return "\n".join(plan)


def test_postgresql_searches_names_through_the_trigram_index(
    postgresql_server_url,
):
    database = db.Database(postgresql_server_url)
    try:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        database.upgrade()
        with database.engine.connect() as conn:
            definition = conn.scalar(
                sa.text(
                    "SELECT indexdef FROM pg_indexes "
                    "WHERE indexname = 'ix_alarm_name_trgm'"
                )
            )
            assert "gin (name gin_trgm_ops)" in definition
            # 5000 alarms, analysed; a full read of the table refused: the
            # search can use the index (its pattern is a constant).
            rows = [
                {
                    "alarm_id": str(uuid.uuid4()),
                    "version": 1,
                    "seq": 0,
                    "name": f"web-{i:05d}-cpu",
                    "description": "",
                    "type": BY_METRICS,
                    "rule": {},
                    "enabled": True,
                    "state": "ok",
                    "state_reason": "",
                    "severity": "low",
                    "ok_actions": [],
                    "alarm_actions": [],
                    "insufficient_data_actions": [],
                    "repeat_actions": False,
                    "time_constraints": [],
                    "project_id": "p1",
                    "user_id": "u1",
                }
                for i in range(5000)
            ]
            conn.execute(sa.insert(Alarm), rows)
            conn.commit()
            # GIN's pending list moved into the index, as autovacuum does.
            vacuum = conn.execution_options(isolation_level="AUTOCOMMIT")
            vacuum.exec_driver_sql("VACUUM ANALYZE alarm")
            conn.exec_driver_sql("SET enable_seqscan = off")
            for search in ("nomatch", "50%", "a_b", "web-01234"):
                assert "ix_alarm_name_trgm" in _explain(conn, search)
    finally:
        database.dispose()


@pytest.fixture
def unprivileged_url(postgresql_server_url) -> Iterator[str]:
    """An empty database whose user may create tables, not extensions."""
    require = sa.make_url(postgresql_server_url)
    admin = sa.create_engine(POSTGRESQL_URL, isolation_level="AUTOCOMMIT")
    suffix = uuid.uuid4().hex[:10]
    role, name = f"alarmer_plain_{suffix}", f"alarmer_plain_{suffix}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    inside = sa.create_engine(
        require.set(database=name), isolation_level="AUTOCOMMIT"
    )
    with inside.connect() as conn:
        conn.exec_driver_sql(f"REVOKE CREATE ON DATABASE {name} FROM PUBLIC")
        conn.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    inside.dispose()
    try:
        yield require.set(database=name, username=role).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def test_without_pg_trgm_the_upgrade_warns_and_goes_on(
    unprivileged_url, caplog
):
    caplog.set_level(logging.WARNING)
    database = db.Database(unprivileged_url)
    try:
        database.upgrade()
        with database.engine.connect() as conn:
            assert (
                conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_indexes "
                        "WHERE indexname = 'ix_alarm_name_trgm'"
                    )
                )
                == 0
            )
            # Every migration ran: the heads are recorded.
            versions = set(
                conn.scalars(
                    sa.text("SELECT version_num FROM alembic_version")
                )
            )
            assert "t0005" in versions
            # The search still answers, without the index.
            stmt = sa.select(sa.func.count()).where(
                name_contains("50%", "postgresql")
            )
            assert conn.scalar(stmt.select_from(Alarm)) == 0
    finally:
        database.dispose()
    (warning,) = [
        r for r in caplog.records if "pg_trgm cannot be created" in r.message
    ]
    assert warning.levelno == logging.WARNING
    assert "permission denied" in warning.message
