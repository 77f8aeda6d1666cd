"""The database gauges of ``/metrics``: right, and never waited for.

``alarmer_alarms`` (and the delivery gauges) are read in the
background of the API process: a scrape answers with the last reading
and starts the next one.  These tests drive the gauge with the API's
own actions (create, transition, disable, delete) and poll the scrape,
parsed with prometheus-client's text parser, until it shows the new
counts; and they hold a real lock on the alarm table of PostgreSQL so
that a count cannot finish, and show that scrapes still answer at once,
with the old counts and a growing age, and that closing the runtime
waits for the count running.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from alarmer import runtime
from api.app import create_app
from tests.functional.notifier_helpers import wait_for
from tests.functional.v2_helpers import MEMBER, alarm_body

pytestmark = pytest.mark.slow

AGE = "alarmer_database_gauges_age_seconds"


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels).

    Buffered: the answer is closed as a server closes it once sent,
    which is when a reading found due starts.
    """
    r = client.get("/metrics", buffered=True)
    assert r.status_code == 200, r.text
    samples = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape_within(client, seconds: float):
    """:func:`scrape`, failing if it takes longer than *seconds*.

    The scrape runs in a thread of its own, so that a scrape stuck
    behind the test's lock fails the test instead of hanging it.
    """
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(scrape, client).result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"the scrape took more than {seconds} s")
    finally:
        pool.shutdown(wait=False)


def alarms(samples) -> dict[tuple[str, str], float]:
    """``alarmer_alarms`` by (state, enabled), the zeros left out."""
    found = {}
    for (name, labels), value in samples.items():
        if name == "alarmer_alarms" and value:
            lab = dict(labels)
            found[(lab["state"], lab["enabled"])] = value
    return found


def shows(client, wanted: dict[tuple[str, str], float]) -> bool:
    return alarms(scrape(client)) == wanted


@pytest.fixture
def fresh_rt(make_conf, db_url) -> Iterator[runtime.Runtime]:
    """A runtime on each backend, the gauges read again at every scrape."""
    conf = make_conf(
        database={"connection": db_url}, api={"metrics_count_max_age": 0}
    )
    built = runtime.build(conf, migrate=True)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def fresh_client(fresh_rt):
    """The API of :func:`fresh_rt`."""
    return create_app(fresh_rt).test_client()


@contextlib.contextmanager
def alarm_table_locked(db_url: str) -> Iterator[sa.Engine]:
    """Hold PostgreSQL's strongest lock on the alarm table: every reader
    of it waits until the block ends.  Yields an engine to look with."""
    admin = sa.create_engine(db_url)
    locker = admin.connect()
    try:
        trans = locker.begin()
        locker.exec_driver_sql("LOCK TABLE alarm IN ACCESS EXCLUSIVE MODE")
        yield admin
        trans.rollback()
    finally:
        locker.close()
        admin.dispose()


def test_alarm_gauge_follows_create_transition_disable_delete(fresh_client):
    client = fresh_client
    first = scrape(client)
    # The first scrape read the database before answering.
    assert alarms(first) == {}
    assert 0 <= first[(AGE, ())] < 5
    assert first[("alarmer_dead_letters", ())] == 0
    assert {
        dict(labels)["status"]
        for (name, labels) in first
        if name == "alarmer_delivery_queue_depth"
    } == {"waiting", "pending", "in_flight"}
    ids = []
    for name in ("a", "b", "c"):
        r = client.post(
            "/v2/alarms", json=alarm_body(name=name), headers=MEMBER
        )
        assert r.status_code == 201, r.text
        ids.append(r.get_json()["alarm_id"])
    wait_for(lambda: shows(client, {("insufficient data", "true"): 3}))
    r = client.put(f"/v2/alarms/{ids[0]}/state", json="alarm", headers=MEMBER)
    assert r.status_code == 200, r.text
    wait_for(
        lambda: shows(
            client,
            {("insufficient data", "true"): 2, ("alarm", "true"): 1},
        )
    )
    r = client.put(
        f"/v2/alarms/{ids[1]}",
        json=alarm_body(name="b", enabled=False),
        headers=MEMBER,
    )
    assert r.status_code == 200, r.text
    wait_for(
        lambda: shows(
            client,
            {
                ("insufficient data", "true"): 1,
                ("insufficient data", "false"): 1,
                ("alarm", "true"): 1,
            },
        )
    )
    assert client.delete(f"/v2/alarms/{ids[0]}", headers=MEMBER).status_code
    assert client.delete(f"/v2/alarms/{ids[2]}", headers=MEMBER).status_code
    wait_for(lambda: shows(client, {("insufficient data", "false"): 1}))
    last = scrape(client)
    assert 0 <= last[(AGE, ())] < 5
    # Every state and flag is a series, the zeros too.
    assert sum(1 for name, _ in last if name == "alarmer_alarms") == 6


def _waiting_counts(admin: sa.Engine) -> int:
    """How many sessions wait for a lock to count the alarms."""
    with admin.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' "
                "AND query ILIKE '%count(*)%' AND query ILIKE '%alarm.state%' "
                "AND datname = current_database()"
            )
        ).scalar_one()
    return int(found)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_scrape_never_waits_for_a_count(fresh_client, db_url):
    client = fresh_client
    assert alarms(scrape(client)) == {}
    r = client.post("/v2/alarms", json=alarm_body(), headers=MEMBER)
    assert r.status_code == 201, r.text
    with alarm_table_locked(db_url) as admin:
        locked = time.monotonic()
        # A scrape sees the change and starts a count that cannot end.
        scrape_within(client, 1.0)
        wait_for(lambda: _waiting_counts(admin) == 1, timeout=10)
        for _ in range(5):
            time.sleep(0.2)
            started = time.monotonic()
            # Answered at once, with the reading from before the lock,
            # and its age says so.
            during = scrape_within(client, 1.0)
            assert alarms(during) == {}
            assert during[(AGE, ())] >= started - locked
        # Still the one count, waiting: scrapes started no second one.
        assert _waiting_counts(admin) == 1
    wait_for(lambda: shows(client, {("insufficient data", "true"): 1}))
    assert scrape(client)[(AGE, ())] < 5


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_closing_the_runtime_waits_for_a_running_count(fresh_rt, db_url):
    client = create_app(fresh_rt).test_client()
    scrape(client)
    r = client.post("/v2/alarms", json=alarm_body(), headers=MEMBER)
    assert r.status_code == 201, r.text
    with alarm_table_locked(db_url) as admin:
        scrape_within(client, 1.0)
        wait_for(lambda: _waiting_counts(admin) == 1, timeout=10)
        closer = threading.Thread(target=fresh_rt.telemetry.close)
        closer.start()
        closer.join(0.5)
        # The count cannot end while the lock is held: close waits.
        assert closer.is_alive()
    closer.join(10)
    assert not closer.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "metrics-count"]
    # Closed: a scrape answers and starts no reading.
    scrape(client)
    scrape(client)
    assert not [t for t in threading.enumerate() if t.name == "metrics-count"]
