"""SQL conformance: every verb of the dialect strategy on every backend.

Each test runs on SQLite, PostgreSQL and MariaDB (real servers), on one
migrated database per backend, then the parts built on the verbs: the
delivery queue (expand, claim, record, promote) and the quota check of
the alarm store, with threads racing where it matters.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from alarmer import runtime, timeutils
from alarmer.alarms import store as store_mod
from alarmer.alarms import validation as rules
from alarmer.alarms.tables import Alarm, Notification
from alarmer.channel import LocalChannel
from alarmer.db import Database, UTCDateTime, dialect
from alarmer.metrics.index import Indexer
from alarmer.metrics.series.store import make_store
from notifiers import tables as models
from notifiers.deliver import Deliverer
from notifiers.queue import DELIVERY, OUTBOX_LOCK, DeliveryQueue
from notifiers.retry import RetryPolicy
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import (
    Receiver,
    add_notification,
    deliveries,
    wait_for,
)

BACKENDS = ("sqlite", "postgresql", "mariadb")

#: Scratch tables of this suite (not part of alarmer's schema).
SCRATCH = sa.MetaData()
ITEM = sa.Table(
    "dialect_item",
    SCRATCH,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("grp", sa.String(16), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
)
LOG = sa.Table(
    "dialect_log",
    SCRATCH,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("note", sa.String(32), nullable=False),
)
RECORD = sa.Table(
    "dialect_record",
    SCRATCH,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=True),
    sa.Column("data", sa.JSON, nullable=True),
    sa.Column("flag", sa.Boolean, nullable=True),
)
EXPANSION = models.NotificationExpansion.__table__


def _empty(url: str) -> None:
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


@pytest.fixture(scope="module", params=BACKENDS)
def database(request, tmp_path_factory):
    """A migrated database of each backend, shared by the module."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("dialect") / "alarmer.sqlite"
        url = f"sqlite:///{path}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgresql_server_url")
        _empty(url)
    else:
        url = request.getfixturevalue("mysql_server_url")
        _empty(url)
    db = Database(url)
    db.upgrade()
    SCRATCH.create_all(db.engine)
    yield db
    # The server databases are shared with other modules: leave only
    # alarmer's schema.
    SCRATCH.drop_all(db.engine)
    db.dispose()


@pytest.fixture
def db(database):
    """The database of the backend, with no rows left by other tests."""
    with database.engine.begin() as conn:
        for table in (ITEM, LOG, RECORD):
            conn.execute(table.delete())
        conn.execute(Alarm.__table__.delete())
        conn.execute(Notification.__table__.delete())  # deliveries cascade
    return database


@pytest.fixture
def sql(db):
    return dialect.for_engine(db.engine)


class _Rt:
    """What the notifier helpers read of a runtime."""

    def __init__(self, db: Database) -> None:
        self.db = db


def _items(db, *rows):
    with db.engine.begin() as conn:
        conn.execute(
            ITEM.insert(),
            [
                dict(zip(("id", "grp", "seq", "status"), r, strict=True))
                for r in rows
            ],
        )


def _statuses(db):
    with db.engine.connect() as conn:
        return dict(conn.execute(sa.select(ITEM.c.id, ITEM.c.status)).all())


def _in_thread(target, *args):
    box = {}

    def run():
        try:
            box["value"] = target(*args)
        except BaseException as exc:  # reported by the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _distinct_slot_names(count):
    names, slots = [], set()
    for i in range(10_000):
        name = f"conformance-{i}"
        slot = dialect.lock_key(name) % dialect.LOCK_SLOTS
        if slot not in slots:
            slots.add(slot)
            names.append(name)
        if len(names) == count:
            return names
    raise AssertionError("no distinct slots")


# -- the strategy ------------------------------------------------------------


def test_strategy_is_chosen_from_the_engine(db, sql):
    expected = {
        "sqlite": dialect.SQLiteDialect,
        "postgresql": dialect.PostgreSQLDialect,
        "mysql": dialect.MySQLDialect,
    }[db.engine.dialect.name]
    assert type(sql) is expected
    assert sql.name == db.engine.dialect.name
    assert dialect.for_name("mariadb").name == "mysql"
    with pytest.raises(ValueError, match="unsupported database backend"):
        dialect.for_name("oracle")


def test_lock_key_is_stable_and_signed_64_bit():
    key = dialect.lock_key("alarmer-outbox")
    assert key == dialect.lock_key("alarmer-outbox")
    assert key != dialect.lock_key("alarmer-outbox ")
    assert -(2**63) <= key < 2**63


def test_lock_slots_exist(db):
    with db.engine.connect() as conn:
        slots = conn.execute(sa.select(dialect.LOCK_SLOT.c.slot)).scalars()
        assert sorted(slots) == list(range(dialect.LOCK_SLOTS))


# -- insert_ignore, insert_many ----------------------------------------------


def test_insert_ignore_skips_existing_keys_only(db, sql):
    _items(db, (1, "a", 1, "kept"))
    with db.session() as session:
        sql.insert_ignore(
            session,
            ITEM,
            [
                {"id": 1, "grp": "a", "seq": 1, "status": "overwritten"},
                {"id": 2, "grp": "a", "seq": 2, "status": "new"},
            ],
        )
        sql.insert_ignore(session, ITEM, [])
        session.commit()
    assert _statuses(db) == {1: "kept", 2: "new"}
    # Twice the same batch: still no error, nothing changes.
    with db.session() as session:
        sql.insert_ignore(
            session, ITEM, [{"id": 2, "grp": "a", "seq": 2, "status": "x"}]
        )
        session.commit()
    assert _statuses(db) == {1: "kept", 2: "new"}


def test_insert_ignore_still_raises_other_integrity_errors(db, sql):
    row = {"notification_id": 999_999, "expanded_at": timeutils.utcnow()}
    with db.session() as session:
        with pytest.raises(sa.exc.IntegrityError):
            sql.insert_ignore(session, EXPANSION, [row])
        session.rollback()
    with db.engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count(EXPANSION.c.notification_id))
            ).scalar()
            == 0
        )


def test_insert_many_inserts_every_row(db, sql):
    with db.session() as session:
        sql.insert_many(session, LOG, [{"note": f"n{i}"} for i in range(2500)])
        sql.insert_many(session, LOG, [])
        session.commit()
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(LOG.c.id, LOG.c.note)).all()
    assert len(rows) == 2500
    assert len({r.id for r in rows}) == 2500
    assert {r.note for r in rows} == {f"n{i}" for i in range(2500)}


# -- insert_rows, update_rows -------------------------------------------------

T0 = dt.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def _records(db):
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(RECORD).order_by(RECORD.c.id)).all()
    return [tuple(r) for r in rows]


def _record(i):
    """Row *i*: every kind of value, NULLs and an offset timestamp."""
    at = None if i % 5 == 0 else T0 + dt.timedelta(seconds=i)
    if i % 7 == 0 and at is not None:
        at = at.astimezone(dt.timezone(dt.timedelta(hours=2)))
    return {
        "id": i,
        "version": 1,
        "note": f'it\'s "n{i}" %s ?',
        "at": at,
        "data": None if i % 4 == 0 else {"i": i, "l": [1.5, "x"]},
        "flag": (None, True, False)[i % 3],
    }


def test_insert_rows_stores_every_value_as_given(db, sql):
    rows = [_record(i) for i in range(1, 301)]
    with db.session() as session:
        sql.insert_rows(session.connection(), RECORD, rows)
        sql.insert_rows(session.connection(), RECORD, [])
        session.commit()
    assert _records(db) == [tuple(r.values()) for r in rows]
    assert _records(db)[6][3].utcoffset() == dt.timedelta(0)


def _fenced_update(v):
    return (
        sa.update(RECORD)
        .where(RECORD.c.id == v["b_id"], RECORD.c.version == v["b_version"])
        .values(
            version=RECORD.c.version + 1,
            note=v["b_note"],
            at=v["b_at"],
            flag=sa.func.coalesce(v["b_flag"], RECORD.c.flag),
        )
    )


FENCED_TYPES = {
    "b_id": sa.Integer(),
    "b_version": sa.Integer(),
    "b_note": sa.Text(),
    "b_at": UTCDateTime(),
    "b_flag": sa.Boolean(),
}


def test_update_rows_writes_each_row_behind_its_own_fence(db, sql):
    with db.session() as session:
        sql.insert_rows(
            session.connection(), RECORD, [_record(i) for i in range(1, 201)]
        )
        session.commit()
    later = T0 + dt.timedelta(days=1)
    updates = [
        {
            "b_id": i,
            # Rows 10, 20, ... are fenced out (another version).
            "b_version": 2 if i % 10 == 0 else 1,
            "b_note": f"u{i} '%s'",
            "b_at": later if i % 2 else None,
            "b_flag": None if i % 3 else True,
        }
        for i in range(1, 201)
    ]
    for attempt in range(2):
        with db.session() as session:
            matched = sql.update_rows(
                session.connection(),
                "dialect_record.fenced",
                _fenced_update,
                FENCED_TYPES,
                updates,
            )
            session.commit()
        assert matched == (180 if attempt == 0 else 20)
        # Once more, fenced by version 1: only the rows fenced out the
        # first time match now (the compiled statement is reused).
        for row in updates:
            row["b_version"] = 1
    stored = {r[0]: r for r in _records(db)}
    for i in range(1, 201):
        before = _record(i)
        version, note, at, _data, flag = stored[i][1:]
        assert version == 2
        assert note == f"u{i} '%s'"
        assert at == (later if i % 2 else None)
        assert flag == (True if i % 3 == 0 else before["flag"])


# -- skip_locked -------------------------------------------------------------


def _pick(sql, limit):
    return sql.skip_locked(
        sa.select(ITEM.c.id).order_by(ITEM.c.id).limit(limit), of=ITEM
    )


def test_skip_locked_never_returns_a_row_another_holds(db, sql):
    _items(db, *[(i, "a", i, "open") for i in range(1, 7)])
    with db.session() as first:
        mine = list(first.execute(_pick(sql, 2)).scalars())
        assert mine == [1, 2]
        if sql.name == "sqlite":
            # No row locks: the first writer holds the whole database,
            # so a second writer cannot even begin meanwhile.
            thread, box = _in_thread(_pick_in_new_session, db, sql, 2)
            thread.join(0.5)
            assert thread.is_alive()
            first.commit()
            thread.join(10)
            assert box["value"] == [1, 2]
            return
        thread, box = _in_thread(_pick_in_new_session, db, sql, 2)
        thread.join(10)
        assert "error" not in box, box.get("error")
        assert box["value"] == [3, 4]
        first.commit()


def _pick_in_new_session(db, sql, limit):
    with db.session() as session:
        picked = list(session.execute(_pick(sql, limit)).scalars())
        session.commit()
        return picked


# -- lock ------------------------------------------------------------------


def _lock_then(db, sql, name, shared, after):
    with db.session() as session:
        sql.lock(session, name, shared=shared)
        acquired = time.monotonic()
        value = after(session)
        session.commit()
        return acquired, value


def test_lock_excludes_until_the_holder_commits(db, sql):
    with db.session() as session:
        sql.lock(session, "conformance-x")
        thread, box = _in_thread(
            _lock_then, db, sql, "conformance-x", False, lambda s: None
        )
        thread.join(0.5)
        assert thread.is_alive()  # waiting
        released = time.monotonic()
        session.commit()
    thread.join(30)
    assert "error" not in box, box.get("error")
    assert box["value"][0] >= released


def test_lock_is_released_by_a_rollback(db, sql):
    with db.session() as session:
        sql.lock(session, "conformance-x")
        thread, box = _in_thread(
            _lock_then, db, sql, "conformance-x", False, lambda s: None
        )
        thread.join(0.3)
        assert thread.is_alive()
        session.rollback()
    thread.join(30)
    assert "value" in box, box.get("error")


def test_reads_after_the_lock_see_what_the_previous_holder_committed(db, sql):
    def count(session):
        return session.execute(sa.select(sa.func.count(ITEM.c.id))).scalar()

    with db.session() as session:
        sql.lock(session, "conformance-x")
        session.execute(
            ITEM.insert(), {"id": 1, "grp": "a", "seq": 1, "status": "new"}
        )
        thread, box = _in_thread(
            _lock_then, db, sql, "conformance-x", False, count
        )
        thread.join(0.3)
        session.commit()
    thread.join(30)
    assert "error" not in box, box.get("error")
    assert box["value"][1] == 1


def test_shared_holders_run_together_and_exclude_exclusive_ones(db, sql):
    if sql.name == "sqlite":
        pytest.skip("SQLite has one lock: the database's write lock")
    with db.session() as first:
        sql.lock(first, "conformance-x", shared=True)
        shared, shared_box = _in_thread(
            _lock_then, db, sql, "conformance-x", True, lambda s: None
        )
        shared.join(10)
        assert "value" in shared_box, shared_box.get("error")
        exclusive, box = _in_thread(
            _lock_then, db, sql, "conformance-x", False, lambda s: None
        )
        exclusive.join(0.5)
        assert exclusive.is_alive()
        released = time.monotonic()
        first.commit()
    exclusive.join(30)
    assert box["value"][0] >= released


def test_locks_of_different_names_do_not_wait(db, sql):
    if sql.name == "sqlite":
        pytest.skip("SQLite has one lock: the database's write lock")
    one, two = _distinct_slot_names(2)
    with db.session() as session:
        sql.lock(session, one)
        thread, box = _in_thread(_lock_then, db, sql, two, False, lambda s: 1)
        thread.join(10)
        assert box.get("value", (0, 0))[1] == 1, box.get("error")
        session.commit()


# -- update_in -------------------------------------------------------------


def test_update_in_updates_the_rows_a_select_of_the_same_table_picks(db, sql):
    _items(
        db,
        (1, "a", 1, "open"),
        (2, "a", 2, "waiting"),
        (3, "a", 3, "waiting"),
        (4, "b", 1, "done"),
        (5, "b", 2, "waiting"),
    )
    earlier = ITEM.alias("earlier")
    free = sa.select(ITEM.c.id).where(
        ITEM.c.status == "waiting",
        ~sa.exists().where(
            earlier.c.grp == ITEM.c.grp,
            earlier.c.seq < ITEM.c.seq,
            earlier.c.status.in_(("open", "waiting", "ready")),
        ),
    )
    update = (
        ITEM.update().where(ITEM.c.status == "waiting").values(status="ready")
    )
    with db.session() as session:
        assert sql.update_in(session, update, ITEM.c.id, free) == 1
        session.commit()
    assert _statuses(db) == {
        1: "open",
        2: "waiting",
        3: "waiting",
        4: "done",
        5: "ready",
    }
    with db.session() as session:
        session.execute(
            ITEM.update().where(ITEM.c.id == 1).values(status="done")
        )
        assert sql.update_in(session, update, ITEM.c.id, free) == 1
        assert sql.update_in(session, update, ITEM.c.id, free) == 0
        session.commit()
    assert _statuses(db)[2] == "ready"
    assert _statuses(db)[3] == "waiting"


# -- notify, commit_counter ------------------------------------------------


def test_notify_reaches_listeners_at_commit_only(db, sql):
    if not sql.listens:
        with db.session() as session:
            sql.notify(session, "dialect_probe")  # accepted, no effect
            session.commit()
        return
    import psycopg

    url = sa.make_url(db.url).set(drivername="postgresql")
    with psycopg.connect(
        url.render_as_string(hide_password=False), autocommit=True
    ) as listener:
        listener.execute("LISTEN dialect_probe")
        with db.session() as session:
            sql.notify(session, "dialect_probe")
            early = list(listener.notifies(timeout=0.3, stop_after=1))
            session.commit()
        late = list(listener.notifies(timeout=5, stop_after=1))
    assert early == []
    assert [n.channel for n in late] == ["dialect_probe"]


def test_commit_counter_changes_with_commits_of_other_connections(db, sql):
    with db.engine.connect() as conn:
        raw = conn.connection
        before = sql.commit_counter(raw)
        if sql.name != "sqlite":
            assert before is None
            return
        assert sql.commit_counter(raw) == before
        _items(db, (1, "a", 1, "new"))
        after = sql.commit_counter(raw)
        assert after != before
        assert sql.commit_counter(raw) == after


# -- the delivery queue on every backend -------------------------------------


@pytest.fixture
def opts(make_conf):
    return make_conf(
        notifier={"batch_size": 200, "claim_timeout": 30}
    ).notifier


def test_queue_expands_claims_records_and_promotes(db, opts, make_conf):
    rt = _Rt(db)
    alarm_id = str(uuid.uuid4())
    for seq in (1, 2, 3):
        add_notification(rt, alarm_id, seq, ["log://a", "log://b"])
    queue = DeliveryQueue(db, opts, "worker-1")
    assert queue.expand() == 3
    assert queue.expand() == 0
    status = {(d.seq, d.target): d.status for d in deliveries(rt)}
    assert status == {
        (1, "log://a"): "pending",
        (1, "log://b"): "pending",
        (2, "log://a"): "waiting",
        (2, "log://b"): "waiting",
        (3, "log://a"): "waiting",
        (3, "log://b"): "waiting",
    }
    jobs = queue.claim(10)
    assert sorted((j.message.seq, j.target) for j in jobs) == [
        (1, "log://a"),
        (1, "log://b"),
    ]
    assert all(j.message.alarm_id == alarm_id for j in jobs)
    assert queue.claim(10) == []
    conf = make_conf()
    deliverer = Deliverer(conf, RetryPolicy(), threading.Event())
    job = next(j for j in jobs if j.target == "log://a")
    queue.record([deliverer.deliver(job)])
    status = {(d.seq, d.target): d.status for d in deliveries(rt)}
    assert status[(1, "log://a")] == "delivered"
    assert status[(1, "log://b")] == "in_flight"
    assert status[(2, "log://a")] == "pending"
    assert status[(2, "log://b")] == "waiting"
    assert status[(3, "log://a")] == "waiting"
    (row,) = [d for d in deliveries(rt) if d.id == job.id]
    assert row.attempts == 1
    assert row.claim_token is None


def test_record_waits_for_an_expansion_in_progress(db, opts, make_conf):
    """A delivery expanded as waiting while the one before it ends is
    promoted by the recorder, which waits for the expansion to commit."""
    rt = _Rt(db)
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, ["log://"])
    queue = DeliveryQueue(db, opts, "worker-1")
    queue.expand()
    (job,) = queue.claim(10)
    outcome = Deliverer(make_conf(), RetryPolicy(), threading.Event()).deliver(
        job
    )
    add_notification(rt, alarm_id, 2, ["log://"])
    (second,) = _outbox_ids(db, alarm_id, seq=2)
    with db.session() as expansion:
        # What an expansion of seq 2 does while seq 1 is in flight.
        queue.sql.lock(expansion, OUTBOX_LOCK)
        now = timeutils.utcnow()
        expansion.execute(
            DELIVERY.insert(),
            {
                "id": models.delivery_id(alarm_id, 2, "log://"),
                "notification_id": second,
                "alarm_id": alarm_id,
                "seq": 2,
                "stream": models.stream_id(alarm_id, "log://"),
                "target": "log://",
                "status": models.WAITING,
                "attempts": 0,
                "next_attempt_at": now,
                "dead_after": now,
                "created_at": now,
                "updated_at": now,
            },
        )
        thread, box = _in_thread(queue.record, [outcome])
        thread.join(0.5)
        assert thread.is_alive()  # the recorder waits for the expansion
        expansion.commit()
    thread.join(30)
    assert "error" not in box, box.get("error")
    status = {d.seq: d.status for d in deliveries(rt)}
    assert status == {1: "delivered", 2: "pending"}


def _outbox_ids(db, alarm_id, seq):
    with db.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(Notification.id).where(
                    Notification.alarm_id == alarm_id, Notification.seq == seq
                )
            ).scalars()
        )


def test_concurrent_claimers_never_get_the_same_delivery(db, opts):
    rt = _Rt(db)
    total = 120
    with db.session() as session:
        for _ in range(total):
            session.add(_notification(str(uuid.uuid4()), 1, ["log://"]))
        session.commit()
    assert DeliveryQueue(db, opts, "expander").expand() == total
    claimers = 4
    barrier = threading.Barrier(claimers)
    claimed: dict[str, list[str]] = {f"w{i}": [] for i in range(claimers)}
    errors: list[BaseException] = []
    deadline = time.monotonic() + 60

    def claim(worker_id):
        queue = DeliveryQueue(db, opts, worker_id)
        barrier.wait()
        try:
            while time.monotonic() < deadline:
                if sum(len(v) for v in claimed.values()) >= total:
                    return
                jobs = queue.claim(7)
                claimed[worker_id].extend(j.id for j in jobs)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=claim, args=(w,)) for w in list(claimed)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert errors == []
    every = [i for ids in claimed.values() for i in ids]
    assert len(every) == len(set(every)) == total
    by_id = {d.id: d for d in deliveries(rt)}
    for worker_id, ids in claimed.items():
        assert {by_id[i].claimed_by for i in ids} <= {worker_id}
    assert {d.status for d in by_id.values()} == {"in_flight"}


def test_concurrent_expansions_keep_one_open_delivery_per_stream(
    db, make_conf
):
    rt = _Rt(db)
    alarm_ids = [str(uuid.uuid4()) for _ in range(6)]
    with db.session() as session:
        for seq in range(1, 9):
            for alarm_id in alarm_ids:
                session.add(_notification(alarm_id, seq, ["log://"]))
        session.commit()
    small = make_conf(notifier={"batch_size": 5}).notifier
    expanders = 3
    barrier = threading.Barrier(expanders)
    errors: list[BaseException] = []

    def expand(worker_id):
        queue = DeliveryQueue(db, small, worker_id)
        barrier.wait()
        try:
            while queue.expand():
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=expand, args=(f"e{i}",))
        for i in range(expanders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert errors == []
    rows = deliveries(rt)
    assert len(rows) == len(alarm_ids) * 8
    for alarm_id in alarm_ids:
        statuses = [d.status for d in rows if d.alarm_id == alarm_id]
        # Ordered by seq: the first is pending, every later one waits.
        assert statuses == ["pending"] + ["waiting"] * 7


def _notification(alarm_id, seq, actions):
    return Notification(
        alarm_id=alarm_id,
        seq=seq,
        alarm_name="conformance",
        severity="low",
        previous="ok",
        current="alarm",
        reason="r",
        reason_data={},
        actions=actions,
        project_id="p1",
        created_at=timeutils.utcnow(),
    )


# -- the quota check on every backend ----------------------------------------


def _alarm_values(project_id):
    values = rules.validate_alarm(
        {
            "name": "quota",
            "type": "gnocchi_aggregation_by_metrics_threshold",
            "gnocchi_aggregation_by_metrics_threshold_rule": {
                "metrics": ["m1"],
                "aggregation_method": "mean",
                "threshold": 1,
            },
        }
    )
    values.update(project_id=project_id, user_id="u1")
    return values


def _race_creates(db, project_id, callers, **quota):
    store = store_mod.AlarmStore(db)
    barrier = threading.Barrier(callers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create():
        barrier.wait()
        try:
            store.create(
                _alarm_values(project_id),
                store_mod.Actor("u1", project_id),
                **quota,
            )
            result = "created"
        except store_mod.QuotaExceeded:
            result = "refused"
        except BaseException as exc:
            result = repr(exc)
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return sorted(outcomes), store.count(project_id)


def test_quota_without_a_quota_row_holds_under_a_race(db):
    project_id = f"p-{uuid.uuid4().hex[:8]}"
    outcomes, count = _race_creates(db, project_id, 6, project_quota=3)
    assert outcomes == ["created"] * 3 + ["refused"] * 3
    assert count == 3


def test_stored_quota_holds_under_a_race(db):
    project_id = f"p-{uuid.uuid4().hex[:8]}"
    store_mod.AlarmStore(db).set_quotas(project_id, {"alarms": 2})
    outcomes, count = _race_creates(db, project_id, 5, project_quota=10)
    assert outcomes == ["created"] * 2 + ["refused"] * 3
    assert count == 2


def test_service_wakes_up_for_commits_of_another_process(db, make_conf):
    """Deliveries within seconds although the notifier polls every
    minute: NOTIFY on PostgreSQL, the outbox probe elsewhere."""
    receiver = Receiver()
    conf = make_conf(
        notifier={"allowed_networks": ["127.0.0.0/8"], "poll_interval": 60}
    )
    rt = runtime.Runtime(
        conf=conf,
        db=db,
        channel=LocalChannel(),
        index=Indexer(db),
        series=make_store(conf),
    )
    service = NotifierService(rt)
    # Another Database object: as another process, the writer shares
    # nothing with the notifier but the database.
    writer = _Rt(Database(db.url))
    try:
        service.start()
        (watcher,) = service.watchers
        assert watcher.ready.wait(10)
        alarm_ids = [str(uuid.uuid4()) for _ in range(3)]
        for seq in (1, 2, 3):
            for alarm_id in alarm_ids:
                add_notification(
                    writer, alarm_id, seq, [receiver.url()], current=f"s{seq}"
                )
        wait_for(lambda: len(receiver.bodies()) == 9, timeout=10)
        for alarm_id in alarm_ids:
            order = [
                r.json["current"]
                for r in receiver.bodies()
                if r.json["alarm_id"] == alarm_id
            ]
            assert order == ["s1", "s2", "s3"]
    finally:
        service.stop()
        rt.series.close()
        writer.db.dispose()
        receiver.stop()
