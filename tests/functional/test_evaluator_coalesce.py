"""Coalesced, batched and late event-driven evaluation.

The real service on the embedded defaults (SQLite, file series driver,
in-process channel), with measures written to the engine and announced
on the channel as the API does.  The engine the evaluator reads through
is wrapped to count its reads and, for the late-worker cases, to sleep
before each of them: the worker is deliberately slower than the data.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from alarmer import runtime
from alarmer.alarms.tables import Alarm, AlarmHistory, Notification
from alarmer.evaluator.service import (
    EvaluatorService,
    as_of_instants,
    first_instant,
)
from alarmer.metrics import policy as ap
from alarmer.metrics.index import Caller
from alarmer.metrics.series import store as series_mod

NS = 1_000_000_000
OWNER = {"user_id": "u1", "project_id": "p1"}


class SlowReader:
    """The engine, read after *delay* seconds; reads are counted."""

    def __init__(self, inner, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _note(self, kind: str, count: int) -> None:
        with self._lock:
            self.calls.append((kind, count))
        if self.delay:
            time.sleep(self.delay)

    def last_buckets(self, metric_id, *args, **kwargs):
        self._note("one", 1)
        return self.inner.last_buckets(metric_id, *args, **kwargs)

    def last_buckets_many(self, metric_ids, *args, **kwargs):
        self._note("many", len(metric_ids))
        return self.inner.last_buckets_many(metric_ids, *args, **kwargs)


@pytest.fixture
def world(make_conf):
    conf = make_conf(
        coordination={"backend_url": "none"},
        evaluator={
            "evaluation_interval": 3600,
            "refresh_interval": 0.05,
            "coalesce_interval": 0.05,
        },
    )
    rt = runtime.build(conf, migrate=True)
    policy = ap.ArchivePolicy("second", (ap.PolicyItem(NS, 3600),), ("mean",))
    rt.index.create_archive_policy(policy)
    engine = rt.series
    reader = SlowReader(engine)
    rt.series = reader
    try:
        yield rt, engine, reader, policy
    finally:
        rt.series = engine
        rt.close()


def make_metrics(rt, count: int) -> list[tuple[str, str]]:
    resource_ids = [str(uuid.uuid4()) for _ in range(count)]
    with rt.db.session() as session, session.begin():
        rt.index.import_resources(
            session,
            rt.index.get_type(session, "generic"),
            [{"id": rid} for rid in resource_ids],
            Caller(OWNER["user_id"], OWNER["project_id"]),
        )
    return [
        (
            rid,
            rt.index.create_metric(
                archive_policy_name="second",
                name="cpu",
                resource_id=rid,
                **OWNER,
            ).id,
        )
        for rid in resource_ids
    ]


def insert_alarm(rt, resource_id: str, periods: int, state: str) -> str:
    alarm_id = str(uuid.uuid4())
    rule = {
        "metric": "cpu",
        "resource_id": resource_id,
        "resource_type": "generic",
        "aggregation_method": "mean",
        "threshold": 50.0,
        "comparison_operator": "gt",
        "granularity": 1,
        "evaluation_periods": periods,
    }
    with rt.db.session() as session:
        session.execute(
            sa.insert(Alarm),
            [
                {
                    "alarm_id": alarm_id,
                    "name": "late",
                    "description": "",
                    "type": "gnocchi_resources_threshold",
                    "rule": rule,
                    "enabled": True,
                    "state": state,
                    "state_reason": "Not evaluated yet",
                    "severity": "low",
                    "ok_actions": ["log://"],
                    "alarm_actions": ["log://"],
                    "insufficient_data_actions": [],
                    "repeat_actions": False,
                    "time_constraints": [],
                    **OWNER,
                }
            ],
        )
        session.commit()
    return alarm_id


def write(rt, engine, policy, metric_id: str, stamp_ns: int, value: float):
    """Store one measure and announce it, as the API does."""
    engine.add_measures(
        series_mod.MetricRef(metric_id, policy),
        np.array([stamp_ns], dtype=np.int64),
        np.array([value]),
    )
    rt.channel.publish([metric_id])


def history(rt, alarm_id: str) -> list[dict]:
    with rt.db.read_session() as session:
        rows = session.scalars(
            sa.select(AlarmHistory)
            .where(AlarmHistory.alarm_id == alarm_id)
            .order_by(AlarmHistory.timestamp)
        ).all()
    return [json.loads(r.detail) for r in rows]


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def test_crossing_held_for_its_periods_is_detected_by_a_late_worker(world):
    """Each read takes longer than two buckets: evaluated only as of its
    wall clock, the worker would see the crossing already pushed out of
    the window by the normal points that followed it."""
    rt, engine, reader, policy = world
    ((resource_id, metric_id),) = make_metrics(rt, 1)
    alarm_id = insert_alarm(rt, resource_id, periods=2, state="ok")
    base = (time.time_ns() // NS + 1) * NS
    for k in range(-10, 0):  # a quiet past
        engine.add_measures(
            series_mod.MetricRef(metric_id, policy),
            np.array([base + k * NS], dtype=np.int64),
            np.array([10.0]),
        )
    service = EvaluatorService(rt)
    service.start()
    try:
        reader.delay = 2.5
        # Two breaching seconds (the rule's 2 periods), then normal ones.
        values = [90.0, 95.0, 10.0, 10.0, 10.0, 10.0]
        for k, value in enumerate(values):
            stamp = base + k * NS + NS // 5
            time.sleep(max(0.0, (stamp - time.time_ns()) / NS))
            write(rt, engine, policy, metric_id, stamp, value)
        wait_for(lambda: len(history(rt, alarm_id)) >= 2, timeout=30)
    finally:
        reader.delay = 0.0
        service.stop()
    states = [h["state"] for h in history(rt, alarm_id)]
    assert states[:2] == ["alarm", "ok"], states
    with rt.db.read_session() as session:
        first = session.scalars(
            sa.select(Notification)
            .where(Notification.alarm_id == alarm_id)
            .order_by(Notification.seq)
        ).first()
    assert first.current == "alarm"
    assert first.reason_data["most_recent"] == 95.0
    # Both times are recorded: the window's instant and the evaluation's.
    as_of = first.reason_data["as_of"]
    evaluated = first.reason_data["evaluated_at"]
    assert as_of < evaluated
    assert service.stats.errors == 0


def test_an_alarm_touched_many_times_in_a_tick_is_evaluated_once(world):
    """Many announcements during one slow read: the next tick evaluates
    each touched alarm once, all of them from one engine call."""
    rt, engine, reader, policy = world
    made = make_metrics(rt, 20)
    ids = [insert_alarm(rt, rid, periods=1, state="ok") for rid, _ in made]
    service = EvaluatorService(rt)
    service.start()
    try:
        # Occupy the worker with a slow tick of the first metric.
        reader.delay = 3.0
        now = time.time_ns()
        write(rt, engine, policy, made[0][1], now, 10.0)
        wait_for(lambda: reader.calls)
        before = service.stats.event_evaluations
        calls = len(reader.calls)
        # Meanwhile 10 points for each of the 20 metrics, the last one
        # crossing the threshold for every metric.
        for i in range(10):
            for _, metric_id in made:
                write(rt, engine, policy, metric_id, now + i, 60.0 + i)
        reader.delay = 0.0
        # Evaluated late: as of the announcements (the crossing), then
        # as of now (no point left in the 1 s window).
        wait_for(
            lambda: all(len(history(rt, alarm_id)) == 2 for alarm_id in ids),
            timeout=20,
        )
    finally:
        service.stop()
    # One evaluation per alarm for the 200 announcements (the slow tick
    # of the first metric may still have been running).
    assert service.stats.event_evaluations - before <= 20
    tick = reader.calls[calls:]
    assert tick[0] == ("many", 20), tick
    for alarm_id in ids:
        assert [h["state"] for h in history(rt, alarm_id)] == [
            "alarm",
            "insufficient data",
        ]


def test_a_write_announced_late_is_assessed_as_of_its_data(world):
    """A crossing stored and announced only after its bucket has left
    the window (a slow write, a long batch): the announcement carries
    the point's timestamp and the worker assesses the window the point
    was meant for, then the window of now."""
    rt, engine, _reader, policy = world
    ((resource_id, metric_id),) = make_metrics(rt, 1)
    alarm_id = insert_alarm(rt, resource_id, periods=1, state="ok")
    service = EvaluatorService(rt)
    service.start()
    try:
        stamp = time.time_ns() - 3 * NS
        engine.add_measures(
            series_mod.MetricRef(metric_id, policy),
            np.array([stamp], dtype=np.int64),
            np.array([90.0]),
        )
        rt.channel.publish({metric_id: stamp})
        wait_for(lambda: len(history(rt, alarm_id)) >= 2)
    finally:
        service.stop()
    rows = history(rt, alarm_id)
    assert [h["state"] for h in rows] == ["alarm", "insufficient data"]
    with rt.db.read_session() as session:
        first = session.scalars(
            sa.select(Notification)
            .where(Notification.alarm_id == alarm_id)
            .order_by(Notification.seq)
        ).first()
    assert first.current == "alarm"
    assert first.reason_data["most_recent"] == 90.0
    # Assessed as of the point's own time, not of the announcement's.
    as_of = dt.datetime.fromisoformat(first.reason_data["as_of"])
    data_time = dt.datetime.fromisoformat(first.reason_data["data_timestamp"])
    evaluated = dt.datetime.fromisoformat(first.reason_data["evaluated_at"])
    assert abs(as_of - data_time) < dt.timedelta(milliseconds=1)
    assert evaluated - as_of > dt.timedelta(seconds=2)


def test_instants_of_a_late_evaluation():
    gran = NS
    # Same bucket: only now.
    assert as_of_instants(10 * NS + 1, 10 * NS + 900, gran) == [10 * NS + 900]
    # Late by 2.5 buckets: the announcement, each step after, now.
    got = as_of_instants(10 * NS + 5, 12 * NS + NS // 2, gran)
    assert got == [10 * NS + 5, 11 * NS + 5, 12 * NS + 5, 12 * NS + NS // 2]
    # Bounded however late.
    assert len(as_of_instants(0, 10_000 * NS, gran)) == 64
    assert as_of_instants(0, 5 * NS, 0) == [5 * NS]


def test_first_instant_is_the_data_time_when_older():
    # The data's newest point, older than the announcement: just after it.
    assert first_instant(12 * NS, 9 * NS) == 9 * NS + 1
    # No timestamp, or one ahead of the arrival: the arrival.
    assert first_instant(12 * NS, 0) == 12 * NS
    assert first_instant(12 * NS, 13 * NS) == 12 * NS
