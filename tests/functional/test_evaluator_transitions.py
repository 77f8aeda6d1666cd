"""The fenced transition write, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid

import pytest
import sqlalchemy as sa

from alarmer import runtime
from alarmer.alarms import transitions
from alarmer.alarms.tables import Alarm, AlarmHistory, Notification

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def insert_alarm(db, **fields) -> str:
    """Insert an alarm row directly and return its id."""
    alarm_id = fields.pop("alarm_id", str(uuid.uuid4()))
    values = {
        "name": "cpu-high",
        "type": "gnocchi_resources_threshold",
        "rule": {},
        "ok_actions": ["log://"],
        "alarm_actions": ["http://127.0.0.1:1/alarm"],
        "insufficient_data_actions": [],
        "time_constraints": [],
        "project_id": "p1",
        "user_id": "u1",
        "severity": "critical",
    }
    values.update(fields)
    with db.session() as session:
        session.add(Alarm(alarm_id=alarm_id, **values))
        session.commit()
    return alarm_id


def _alarm(db, alarm_id):
    with db.read_session() as session:
        return session.get(Alarm, alarm_id)


def test_transition_writes_state_history_and_outbox(rt):
    alarm_id = insert_alarm(rt.db)
    data = {
        "type": "threshold",
        "disposition": "outside",
        "count": 3,
        "most_recent": 91.0,
    }
    with rt.db.session() as session:
        assert transitions.record_transition(
            session,
            alarm_id,
            1,
            "alarm",
            "Transition to alarm",
            data,
            now=NOW,
        )
        session.commit()
    alarm = _alarm(rt.db, alarm_id)
    assert (alarm.state, alarm.state_reason) == (
        "alarm",
        "Transition to alarm",
    )
    assert alarm.state_timestamp == NOW
    assert (alarm.version, alarm.seq) == (2, 1)
    with rt.db.read_session() as session:
        history = session.scalars(
            sa.select(AlarmHistory).where(AlarmHistory.alarm_id == alarm_id)
        ).all()
        outbox = session.scalars(
            sa.select(Notification).where(Notification.alarm_id == alarm_id)
        ).all()
    assert len(history) == 1
    assert history[0].type == "state transition"
    assert json.loads(history[0].detail) == {
        "state": "alarm",
        "transition_reason": "Transition to alarm",
    }
    assert history[0].on_behalf_of == "p1"
    assert history[0].severity == "critical"
    assert len(outbox) == 1
    row = outbox[0]
    assert (row.seq, row.previous, row.current) == (
        1,
        "insufficient data",
        "alarm",
    )
    assert row.actions == ["http://127.0.0.1:1/alarm"]
    assert row.reason_data == data
    assert (row.alarm_name, row.severity, row.project_id) == (
        "cpu-high",
        "critical",
        "p1",
    )


def test_stale_version_writes_nothing(rt):
    alarm_id = insert_alarm(rt.db)
    with rt.db.session() as session:
        assert transitions.record_transition(
            session, alarm_id, 1, "alarm", "first", {}, now=NOW
        )
        session.commit()
    # A second worker holding the old view cannot transition again.
    with rt.db.session() as session:
        assert not transitions.record_transition(
            session, alarm_id, 1, "ok", "stale", {}, now=NOW
        )
        session.commit()
    snap = transitions.AlarmSnapshot(
        alarm_id=alarm_id,
        version=1,
        seq=0,
        state="insufficient data",
        name="cpu-high",
        severity="critical",
        project_id="p1",
        alarm_actions=("log://",),
    )
    with rt.db.session() as session:
        assert not transitions.record_transition(
            session, alarm_id, 1, "alarm", "stale2", {}, now=NOW, snapshot=snap
        )
        session.commit()
    alarm = _alarm(rt.db, alarm_id)
    assert (alarm.state, alarm.state_reason, alarm.version, alarm.seq) == (
        "alarm",
        "first",
        2,
        1,
    )
    with rt.db.read_session() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(AlarmHistory)
            )
            == 1
        )
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(Notification)
            )
            == 1
        )


def test_no_actions_no_outbox_row(rt):
    alarm_id = insert_alarm(rt.db)
    with rt.db.session() as session:
        assert transitions.record_transition(
            session, alarm_id, 1, "insufficient data", "why", {}, now=NOW
        )
        session.commit()
    alarm = _alarm(rt.db, alarm_id)
    assert (alarm.version, alarm.seq) == (2, 0)
    with rt.db.read_session() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(Notification)
            )
            == 0
        )
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(AlarmHistory)
            )
            == 1
        )


def test_deleted_alarm_returns_false(rt):
    with rt.db.session() as session:
        assert not transitions.record_transition(
            session, "missing", 1, "alarm", "x", {}, now=NOW
        )


def test_repeat_adds_outbox_row_only(rt):
    alarm_id = insert_alarm(rt.db, state="alarm", state_reason="old")
    with rt.db.session() as session:
        assert transitions.record_repeat(
            session, alarm_id, 1, "Remaining as alarm", {"count": 3}, now=NOW
        )
        session.commit()
    with rt.db.session() as session:
        assert not transitions.record_repeat(
            session, alarm_id, 1, "Remaining as alarm", {}, now=NOW
        )
        session.commit()
    alarm = _alarm(rt.db, alarm_id)
    assert (alarm.state, alarm.state_reason, alarm.version, alarm.seq) == (
        "alarm",
        "old",
        2,
        1,
    )
    with rt.db.read_session() as session:
        rows = session.scalars(sa.select(Notification)).all()
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(AlarmHistory)
            )
            == 0
        )
    assert [(r.seq, r.previous, r.current, r.reason) for r in rows] == [
        (1, "alarm", "alarm", "Remaining as alarm")
    ]


@pytest.fixture
def mysql_rt(make_conf, mysql_server_url):
    """A migrated runtime on the real MariaDB (emptied first)."""
    engine = sa.create_engine(mysql_server_url)
    with engine.begin() as conn:
        meta = sa.MetaData()
        meta.reflect(conn)
        meta.drop_all(conn)
    engine.dispose()
    built = runtime.build(
        make_conf(database={"connection": mysql_server_url}), migrate=True
    )
    try:
        yield built
    finally:
        built.close()


def test_fence_on_mariadb(mysql_rt):
    test_stale_version_writes_nothing(mysql_rt)


def test_race_on_mariadb(mysql_rt):
    test_concurrent_writers_transition_once(mysql_rt)


def test_concurrent_writers_transition_once(rt):
    """Two workers with the same view race: exactly one wins."""
    alarm_id = insert_alarm(rt.db)
    barrier = threading.Barrier(4)
    results = []

    def worker(state):
        barrier.wait()
        with rt.db.session() as session:
            done = transitions.record_transition(
                session, alarm_id, 1, state, f"to {state}", {}, now=NOW
            )
            session.commit()
        results.append(done)

    threads = [
        threading.Thread(target=worker, args=(s,))
        for s in ("alarm", "alarm", "ok", "alarm")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    with rt.db.read_session() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(AlarmHistory)
            )
            == 1
        )
        assert session.get(Alarm, alarm_id).version == 2


def _snapshot(db, alarm_id) -> transitions.AlarmSnapshot:
    with db.read_session() as session:
        snap = transitions.load_snapshot(session, alarm_id)
    assert snap is not None
    return snap


def _history_and_outbox(db, alarm_id):
    with db.read_session() as session:
        history = session.scalars(
            sa.select(AlarmHistory)
            .where(AlarmHistory.alarm_id == alarm_id)
            .order_by(AlarmHistory.timestamp)
        ).all()
        outbox = session.scalars(
            sa.select(Notification)
            .where(Notification.alarm_id == alarm_id)
            .order_by(Notification.seq)
        ).all()
        return (
            [json.loads(h.detail) for h in history],
            [(n.seq, n.previous, n.current, n.reason_data) for n in outbox],
        )


def test_batch_commits_every_fenced_change_together(rt):
    """A tick's changes: transitions, a repeat, a chained second
    transition of one alarm and one stale view, in one batch."""
    ids = [insert_alarm(rt.db) for _ in range(4)]
    quiet = insert_alarm(rt.db, ok_actions=[], alarm_actions=[])
    repeat = insert_alarm(rt.db, state="alarm")
    snaps = {a: _snapshot(rt.db, a) for a in [*ids, quiet, repeat]}
    # Someone else moved ids[3] on: the batch's view of it is stale.
    with rt.db.session() as session:
        assert transitions.record_transition(
            session, ids[3], 1, "ok", "by hand", {}, now=NOW
        )
        session.commit()
    first = transitions.Change(
        snaps[ids[0]], "alarm", "to alarm", {"n": 1}, NOW
    )
    changes = [
        first,
        transitions.Change(
            first.after(),
            "ok",
            "back to ok",
            {"n": 2},
            NOW + dt.timedelta(microseconds=1),
        ),
        transitions.Change(snaps[ids[1]], "alarm", "to alarm", {"n": 3}, NOW),
        transitions.Change(snaps[ids[2]], "ok", "to ok", {"n": 4}, NOW),
        transitions.Change(snaps[ids[3]], "alarm", "stale", {"n": 5}, NOW),
        transitions.Change(snaps[quiet], "alarm", "no actions", {}, NOW),
        transitions.Change(snaps[repeat], None, "still alarm", {"n": 6}, NOW),
    ]
    assert transitions.record_batch(rt.db.session, changes) == [
        True,
        True,
        True,
        True,
        False,
        True,
        True,
    ]
    history, outbox = _history_and_outbox(rt.db, ids[0])
    assert [h["state"] for h in history] == ["alarm", "ok"]
    assert outbox == [
        (1, "insufficient data", "alarm", {"n": 1}),
        (2, "alarm", "ok", {"n": 2}),
    ]
    alarm = _alarm(rt.db, ids[0])
    assert (alarm.state, alarm.state_reason, alarm.version, alarm.seq) == (
        "ok",
        "back to ok",
        3,
        2,
    )
    assert _history_and_outbox(rt.db, ids[1])[1] == [
        (1, "insufficient data", "alarm", {"n": 3})
    ]
    # The stale change wrote nothing: the hand-made transition stays.
    alarm = _alarm(rt.db, ids[3])
    assert (alarm.state, alarm.version) == ("ok", 2)
    history, outbox = _history_and_outbox(rt.db, ids[3])
    assert [h["transition_reason"] for h in history] == ["by hand"]
    assert [row[3] for row in outbox] == [{}]
    # No actions: history, no outbox row, seq unchanged.
    history, outbox = _history_and_outbox(rt.db, quiet)
    assert (len(history), outbox) == (1, [])
    assert (_alarm(rt.db, quiet).state, _alarm(rt.db, quiet).seq) == (
        "alarm",
        0,
    )
    # The repeat: an outbox row, no history, the state kept.
    history, outbox = _history_and_outbox(rt.db, repeat)
    assert history == []
    assert outbox == [(1, "alarm", "alarm", {"n": 6})]
    assert _alarm(rt.db, repeat).version == 2


def test_a_failing_row_falls_back_to_one_commit_per_alarm(rt):
    """One change the database refuses (a reason_data it cannot store)
    fails the batch; every other change is then committed on its own."""
    ids = [insert_alarm(rt.db) for _ in range(3)]
    changes = [
        transitions.Change(
            _snapshot(rt.db, alarm_id),
            "alarm",
            "to alarm",
            {"bad": object()} if i == 1 else {"i": i},
            NOW,
        )
        for i, alarm_id in enumerate(ids)
    ]
    assert transitions.record_batch(rt.db.session, changes) == [
        True,
        None,
        True,
    ]
    assert [_alarm(rt.db, a).state for a in ids] == [
        "alarm",
        "insufficient data",
        "alarm",
    ]
    assert _history_and_outbox(rt.db, ids[1]) == ([], [])
    assert _history_and_outbox(rt.db, ids[2])[1] == [
        (1, "insufficient data", "alarm", {"i": 2})
    ]


def test_batch_on_mariadb(mysql_rt):
    test_batch_commits_every_fenced_change_together(mysql_rt)


def test_batch_fallback_on_mariadb(mysql_rt):
    test_a_failing_row_falls_back_to_one_commit_per_alarm(mysql_rt)


@pytest.fixture
def pg_rt(make_conf, postgresql_server_url):
    """A migrated runtime on the real PostgreSQL (emptied first)."""
    engine = sa.create_engine(postgresql_server_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    built = runtime.build(
        make_conf(database={"connection": postgresql_server_url}),
        migrate=True,
    )
    try:
        yield built
    finally:
        built.close()


def test_fence_on_postgresql(pg_rt):
    test_stale_version_writes_nothing(pg_rt)


def test_batch_on_postgresql(pg_rt):
    test_batch_commits_every_fenced_change_together(pg_rt)


def test_batch_fallback_on_postgresql(pg_rt):
    test_a_failing_row_falls_back_to_one_commit_per_alarm(pg_rt)
