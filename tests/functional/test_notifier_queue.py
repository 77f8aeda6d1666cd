"""The delivery queue alone: expand, claim, record, sweep, promote."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import uuid

import pytest

from alarmer import runtime, timeutils
from alarmer.alarms.tables import Notification
from notifiers import queue as queue_mod
from notifiers import tables as models
from notifiers.deliver import Deliverer
from notifiers.jobs import DeliveryOutcome
from notifiers.queue import DeliveryQueue, redeliver
from notifiers.retry import RetryPolicy
from notifiers.wakeup import Wakeup
from tests.functional.notifier_helpers import (
    Receiver,
    add_notification,
    deliveries,
)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def rt(make_conf, db_url):
    conf = make_conf(
        database={"connection": db_url},
        notifier={"allowed_networks": ["127.0.0.0/8"], "claim_timeout": 5},
    )
    built = runtime.build(conf, migrate=True)
    yield built
    built.close()


def make_queue(rt, worker_id="worker-1"):
    return DeliveryQueue(rt.db, rt.conf.notifier, worker_id)


def deliverer(rt):
    return Deliverer(
        rt.conf, RetryPolicy.from_conf(rt.conf.notifier), threading.Event()
    )


def test_expansion_is_idempotent(rt, receiver):
    alarm_id = str(uuid.uuid4())
    add_notification(
        rt, alarm_id, 1, [receiver.url(), receiver.url(), "log://"]
    )
    add_notification(rt, alarm_id, 2, [])
    queue = make_queue(rt)
    assert queue.expand() == 2
    assert queue.expand() == 0
    rows = deliveries(rt)
    assert sorted(d.target for d in rows) == sorted([receiver.url(), "log://"])
    assert json.dumps(sorted(d.id for d in rows))


def test_late_commit_below_the_floor_is_found_by_the_full_scan(
    rt, receiver, monkeypatch
):
    monkeypatch.setattr(queue_mod, "FLOOR_DELAY", 0.0)
    queue = make_queue(rt)

    def add(row_id):
        with rt.db.session() as session:
            session.add(
                Notification(
                    id=row_id,
                    alarm_id=str(uuid.uuid4()),
                    seq=1,
                    alarm_name="n",
                    severity="low",
                    previous="ok",
                    current="alarm",
                    reason="r",
                    reason_data={},
                    actions=[receiver.url()],
                    project_id="p",
                    created_at=timeutils.utcnow(),
                )
            )
            session.commit()

    add(100)
    assert queue.expand() == 1  # full scan, floor candidate = 100
    assert queue.expand() == 0  # floor moves to 100
    assert queue._floor == 100
    add(50)  # a transaction that got a lower id but committed late
    assert queue.expand() == 0  # above the floor: not seen yet
    queue._next_full_scan = 0.0
    assert queue.expand() == 1  # the full scan finds it
    assert len(deliveries(rt)) == 2


def test_later_deliveries_wait_for_the_earlier_one(rt, receiver):
    alarm_id = str(uuid.uuid4())
    for seq in (1, 2, 3):
        add_notification(rt, alarm_id, seq, [receiver.url(), "log://"])
    queue = make_queue(rt)
    queue.expand()
    status = {(d.seq, d.target): d.status for d in deliveries(rt)}
    assert status == {
        (1, receiver.url()): "pending",
        (1, "log://"): "pending",
        (2, receiver.url()): "waiting",
        (2, "log://"): "waiting",
        (3, receiver.url()): "waiting",
        (3, "log://"): "waiting",
    }
    jobs = queue.claim(10)
    assert sorted(j.message.seq for j in jobs) == [1, 1]
    # The first one to the receiver ends: only its successor is freed.
    job = next(j for j in jobs if j.target == receiver.url())
    queue.record([deliverer(rt).deliver(job)])
    status = {(d.seq, d.target): d.status for d in deliveries(rt)}
    assert status[(1, receiver.url())] == "delivered"
    assert status[(2, receiver.url())] == "pending"
    assert status[(2, "log://")] == "waiting"
    assert status[(3, receiver.url())] == "waiting"


def test_claim_marks_in_flight_and_a_second_claim_gets_nothing(rt):
    alarm_ids = [str(uuid.uuid4()) for _ in range(3)]
    for alarm_id in alarm_ids:
        add_notification(rt, alarm_id, 1, ["log://"])
    first, second = make_queue(rt, "w1"), make_queue(rt, "w2")
    first.expand()
    jobs = first.claim(10)
    assert sorted(j.message.alarm_id for j in jobs) == sorted(alarm_ids)
    assert len({j.token for j in jobs}) == 1
    assert second.claim(10) == []
    rows = deliveries(rt)
    assert {d.status for d in rows} == {"in_flight"}
    assert {d.claimed_by for d in rows} == {"w1"}
    assert {d.claim_token for d in rows} == {jobs[0].token}


def test_outcome_of_a_lost_claim_is_not_written(rt):
    add_notification(rt, str(uuid.uuid4()), 1, ["log://"])
    queue = make_queue(rt)
    queue.expand()
    (job,) = queue.claim(10)
    stale = DeliveryOutcome(
        job=dataclasses.replace(job, token="another-claim"),
        status=models.DELIVERED,
        attempts=[],
        next_attempt_at=timeutils.utcnow(),
    )
    queue.record([stale])
    (row,) = deliveries(rt)
    assert row.status == "in_flight"
    assert row.attempts == 0


def test_sweep_puts_back_expired_claims_and_keeps_the_token(rt):
    add_notification(rt, str(uuid.uuid4()), 1, ["log://"])
    queue = make_queue(rt)
    queue.expand()
    (job,) = queue.claim(10)
    later = timeutils.utcnow() + dt.timedelta(seconds=60)
    with rt.db.session() as session:
        assert queue.sweep(session, later) == 1
        session.commit()
    (row,) = deliveries(rt)
    assert row.status == "pending"
    assert row.claimed_by is None
    assert row.claim_token == job.token
    # The slow notifier's outcome still lands: nobody claimed it since.
    queue.record([deliverer(rt).deliver(job)])
    (row,) = deliveries(rt)
    assert row.status == "delivered"
    assert row.attempts == 1


def test_sweep_promotes_waiting_deliveries_nothing_holds_back(rt):
    alarm_id = str(uuid.uuid4())
    for seq in (1, 2):
        add_notification(rt, alarm_id, seq, ["log://"])
    queue = make_queue(rt)
    queue.expand()
    # As if seq 1 ended while seq 2 was being expanded as waiting.
    with rt.db.session() as session:
        session.execute(
            queue_mod.DELIVERY.update()
            .where(queue_mod.DELIVERY.c.seq == 1)
            .values(status=models.DELIVERED)
        )
        session.commit()
    with rt.db.session() as session:
        assert queue.sweep(session, timeutils.utcnow()) == 0
        session.commit()
    status = {d.seq: d.status for d in deliveries(rt)}
    assert status == {1: "delivered", 2: "pending"}


def test_redeliver_resets_a_dead_delivery_and_pokes_the_wakeup(rt):
    add_notification(rt, str(uuid.uuid4()), 1, ["nope://x"])
    queue = make_queue(rt)
    queue.expand()
    (job,) = queue.claim(10)
    queue.record([deliverer(rt).deliver(job)])
    (dead,) = deliveries(rt)
    assert dead.status == "dead"
    assert "Unsupported action" in dead.last_error
    wakeup = Wakeup()
    wakeup.clear()
    assert redeliver(rt.db, dead.id, 3600.0, wakeup)
    assert wakeup.wait(0)
    (row,) = deliveries(rt)
    assert row.status == "pending"
    assert row.attempts == 0
    assert row.id == dead.id
    remaining = (row.dead_after - timeutils.utcnow()).total_seconds()
    assert 3500 < remaining <= 3600
    assert not redeliver(rt.db, dead.id, 3600.0)


# -- claims at expansion and at promotion ------------------------------


def test_expansion_claims_what_nothing_holds_back_up_to_the_limit(rt):
    alarm_ids = [str(uuid.uuid4()) for _ in range(3)]
    for seq in (1, 2):
        for alarm_id in alarm_ids:
            add_notification(rt, alarm_id, seq, ["log://"])
    queue = make_queue(rt, "w1")
    queue.owner = "slot-1"
    # Room for 2: at most 2 outbox rows are expanded, both claimed.
    expanded, jobs, left = queue.expand_claiming(2)
    assert (expanded, left) == (2, 0)
    assert sorted(j.message.alarm_id for j in jobs) == sorted(alarm_ids[:2])
    assert {j.message.seq for j in jobs} == {1}
    assert len({j.token for j in jobs}) == 1
    rows = {d.id: d for d in deliveries(rt)}
    assert set(rows) == {j.id for j in jobs}
    for job in jobs:
        row = rows[job.id]
        assert row.status == "in_flight"
        assert (row.claimed_by, row.claim_owner) == ("w1", "slot-1")
        assert row.claim_token == job.token
        assert row.claim_expires_at > timeutils.utcnow()
        assert job.message.alarm_name == f"name-{job.message.alarm_id[:8]}"
        assert job.dead_after == row.dead_after
    # The rest: the third alarm's first row is claimed, and the second
    # rows wait behind the in-flight first ones.
    expanded, more, left = queue.expand_claiming(10)
    assert expanded == 4 and left == 0
    assert [(j.message.alarm_id, j.message.seq) for j in more] == [
        (alarm_ids[2], 1)
    ]
    status = {(d.alarm_id, d.seq): d.status for d in deliveries(rt)}
    assert [status[(a, 2)] for a in alarm_ids] == ["waiting"] * 3
    # A second notifier finds nothing to claim.
    assert make_queue(rt, "w2").claim(10) == []


def test_expansion_leaves_pending_past_the_limit(rt):
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, ["log://", "log://a", "log://b"])
    queue = make_queue(rt)
    expanded, jobs, left = queue.expand_claiming(1)
    assert (expanded, len(jobs), left) == (1, 1, 2)
    status = sorted(d.status for d in deliveries(rt))
    assert status == ["in_flight", "pending", "pending"]
    assert len(queue.claim(10)) == 2


def test_recording_claims_the_next_of_the_stream_in_its_transaction(
    rt, receiver
):
    alarm_id = str(uuid.uuid4())
    for seq in (1, 2, 3):
        add_notification(rt, alarm_id, seq, [receiver.url()])
    queue = make_queue(rt)
    _, (first,), _ = queue.expand_claiming(10)
    outcome = deliverer(rt).deliver(first)
    assert outcome.status == models.DELIVERED
    jobs, promoted = queue.record([outcome], claim=5)
    assert promoted == 0
    (second,) = jobs
    assert second.message.seq == 2 and second.token != first.token
    status = {d.seq: (d.status, d.claim_token) for d in deliveries(rt)}
    assert status == {
        1: ("delivered", None),
        2: ("in_flight", second.token),
        3: ("waiting", None),
    }
    # Without room, the next one is made pending for a later claim.
    jobs, promoted = queue.record([deliverer(rt).deliver(second)], claim=0)
    assert (jobs, promoted) == ([], 1)
    (third,) = queue.claim(10)
    assert third.message.seq == 3
    assert [b.headers["X-Alarmer-Sequence"] for b in receiver.bodies()] == [
        "1",
        "2",
    ]


def test_claims_at_expansion_and_promotion_are_swept_when_they_expire(rt):
    alarm_id = str(uuid.uuid4())
    for seq in (1, 2):
        add_notification(rt, alarm_id, seq, ["log://"])
    queue = make_queue(rt)
    _, (job,), _ = queue.expand_claiming(10)
    # Its notifier died: the claim expires, the delivery is queued again
    # with the same id; the second still waits.
    later = timeutils.utcnow() + dt.timedelta(seconds=60)
    with rt.db.session() as session:
        assert queue.sweep(session, later) == 1
        session.commit()
    status = {d.seq: d.status for d in deliveries(rt)}
    assert status == {1: "pending", 2: "waiting"}
    (again,) = queue.claim(10)
    assert again.id == job.id


def test_expansion_stops_at_the_row_that_would_exceed_the_room(rt):
    alarm_ids = [str(uuid.uuid4()) for _ in range(3)]
    for alarm_id in alarm_ids:
        add_notification(rt, alarm_id, 1, ["log://a", "log://b"])
    queue = make_queue(rt)
    # Room for 3: the first row's 2 deliveries; the second row's would
    # make 4, so it waits in the outbox (not written pending).
    expanded, jobs, left = queue.expand_claiming(3)
    assert (expanded, len(jobs), left) == (1, 2, 0)
    assert {d.alarm_id for d in deliveries(rt)} == {alarm_ids[0]}
    expanded, jobs, left = queue.expand_claiming(4)
    assert (expanded, len(jobs), left) == (2, 4, 0)
    assert len(deliveries(rt)) == 6
    assert queue.expand() == 0
