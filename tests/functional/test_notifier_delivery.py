"""End to end: outbox rows to a real HTTP receiver, through faults."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from alarmer import runtime, timeutils
from notifiers import signing
from notifiers import tables as models
from notifiers.queue import redeliver
from notifiers.service import NotifierService
from notifiers.wakeup import OutboxListener
from tests.functional.notifier_helpers import (
    Receiver,
    add_notification,
    attempts,
    deliveries,
    wait_for,
)

MAX_AGE = 86400.0
FAST = {
    "allowed_networks": ["127.0.0.0/8", "::1/128"],
    "poll_interval": 0.05,
    "retry_initial_delay": 0.05,
    "retry_max_delay": 0.2,
    "retry_jitter": 0.01,
    "connect_timeout": 0.5,
    "read_timeout": 0.5,
    "claim_timeout": 5,
}


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def nrt(make_conf, db_url):
    def _build(**notifier):
        conf = make_conf(
            database={"connection": db_url}, notifier={**FAST, **notifier}
        )
        return runtime.build(conf, migrate=True)

    built = []

    def factory(**notifier):
        rt = _build(**notifier)
        built.append(rt)
        return rt

    yield factory
    for rt in built:
        rt.close()


@pytest.fixture
def run_notifier():
    services = []

    def start(rt, **kwargs):
        service = NotifierService(rt, **kwargs)
        service.start()
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


def test_webhook_carries_aodh_body_and_signed_headers(
    nrt, run_notifier, receiver
):
    rt = nrt(webhook_secret="s3cret")
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, [receiver.url()])
    run_notifier(rt)
    (got,) = wait_for(receiver.bodies)
    assert got.json == {
        "alarm_name": f"name-{alarm_id[:8]}",
        "alarm_id": alarm_id,
        "severity": "low",
        "previous": "ok",
        "current": "alarm",
        "reason": "Transition to alarm #1",
        "reason_data": {"type": "threshold", "seq": 1},
    }
    headers = {k.lower(): v for k, v in got.headers.items()}
    expected_id = models.delivery_id(alarm_id, 1, receiver.url())
    assert headers["webhook-id"] == expected_id
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("alarmer/")
    assert headers["x-alarmer-sequence"] == "1"
    ts = int(headers["webhook-timestamp"])
    assert abs(ts - timeutils.utcnow().timestamp()) < 60
    assert signing.verify(
        "s3cret", expected_id, ts, got.body, headers["webhook-signature"]
    )
    tampered = got.body.replace(b"alarm", b"ok")
    assert not signing.verify(
        "s3cret", expected_id, ts, tampered, headers["webhook-signature"]
    )
    assert not signing.verify(
        "other", expected_id, ts, got.body, headers["webhook-signature"]
    )
    (row,) = wait_for(
        lambda: [d for d in deliveries(rt) if d.status == "delivered"]
    )
    assert row.id == expected_id
    assert row.attempts == 1
    (attempt,) = attempts(rt, row.id)
    assert attempt.status_code == 200
    assert attempt.outcome == "delivered"


def test_per_alarm_secret_wins_and_is_not_logged(
    nrt, run_notifier, receiver, caplog
):
    alarm_id = str(uuid.uuid4())
    rt = nrt(
        webhook_secret="global-secret",
        alarm_secrets={alarm_id: "alarm-secret"},
    )
    add_notification(rt, alarm_id, 1, [receiver.url()])
    add_notification(rt, str(uuid.uuid4()), 1, [receiver.url("/other")])
    caplog.set_level(logging.DEBUG)
    run_notifier(rt)
    wait_for(lambda: len(receiver.bodies()) == 2)
    for got in receiver.bodies():
        headers = {k.lower(): v for k, v in got.headers.items()}
        secret = "alarm-secret" if got.path == "/hook" else "global-secret"
        assert signing.verify(
            secret,
            headers["webhook-id"],
            int(headers["webhook-timestamp"]),
            got.body,
            headers["webhook-signature"],
        )
    assert "alarm-secret" not in caplog.text
    assert "global-secret" not in caplog.text


def test_unsigned_without_secret(nrt, run_notifier, receiver):
    rt = nrt()
    add_notification(rt, str(uuid.uuid4()), 1, [receiver.url()])
    run_notifier(rt)
    (got,) = wait_for(receiver.bodies)
    assert "webhook-signature" not in {k.lower() for k in got.headers}


def test_order_per_alarm_survives_intermittent_errors(
    nrt, run_notifier, receiver
):
    rt = nrt()
    calls = {"n": 0}

    def flaky(body):
        calls["n"] += 1
        return (503 if calls["n"] % 3 == 0 else 200), {}

    receiver.behaviour["/hook"] = flaky
    alarm_id = str(uuid.uuid4())
    for seq in range(1, 16):
        add_notification(
            rt, alarm_id, seq, [receiver.url()], current=f"s{seq}"
        )
    run_notifier(rt)
    wait_for(lambda: len(receiver.bodies()) >= 15)
    seen = [r.json["current"] for r in receiver.bodies()]
    assert seen == [f"s{seq}" for seq in range(1, 16)]
    wait_for(lambda: all(d.status == "delivered" for d in deliveries(rt)))


def test_receiver_down_then_back_loses_nothing(nrt, run_notifier):
    receiver = Receiver()
    port = receiver.port
    receiver.stop()
    rt = nrt()
    alarm_ids = [str(uuid.uuid4()) for _ in range(5)]
    url = f"http://127.0.0.1:{port}/hook"
    for alarm_id in alarm_ids:
        for seq in (1, 2):
            add_notification(rt, alarm_id, seq, [url], current=f"s{seq}")
    run_notifier(rt)

    def retried() -> bool:
        rows = deliveries(rt)
        return len(rows) == 10 and all(
            d.attempts >= 2 for d in rows if d.seq == 1
        )

    wait_for(retried)
    assert all(d.status != "delivered" for d in deliveries(rt))
    back = Receiver(port=port)
    try:
        wait_for(lambda: len(back.bodies()) >= 10, timeout=20)
        got = back.bodies()
        ids = [
            {k.lower(): v for k, v in r.headers.items()}["webhook-id"]
            for r in got
        ]
        expected = {
            models.delivery_id(a, s, url) for a in alarm_ids for s in (1, 2)
        }
        assert set(ids) == expected
        for alarm_id in alarm_ids:
            order = [
                r.json["current"]
                for r in got
                if r.json["alarm_id"] == alarm_id
            ]
            assert order == ["s1", "s2"]
        wait_for(lambda: all(d.status == "delivered" for d in deliveries(rt)))
        first = next(d for d in deliveries(rt) if d.seq == 1)
        history = attempts(rt, first.id)
        assert len(history) == first.attempts >= 2
        assert "connection error" in history[0].error
        assert history[-1].status_code == 200
    finally:
        back.stop()


def test_400_is_dead_lettered_with_response_then_redelivered(
    nrt, run_notifier, receiver
):
    rt = nrt()
    receiver.behaviour["/hook"] = 400
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, [receiver.url()])
    run_notifier(rt)
    (dead,) = wait_for(
        lambda: [d for d in deliveries(rt) if d.status == "dead"]
    )
    assert dead.attempts == 1
    assert dead.last_status_code == 400
    assert "HTTP 400" in dead.last_error
    assert "answer 400" in dead.last_error
    (attempt,) = attempts(rt, dead.id)
    assert attempt.outcome == "failed"
    assert attempt.status_code == 400
    receiver.behaviour["/hook"] = 200
    assert redeliver(rt.db, dead.id, MAX_AGE)
    (got,) = wait_for(receiver.bodies)
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["webhook-id"] == dead.id
    (done,) = wait_for(
        lambda: [d for d in deliveries(rt) if d.status == "delivered"]
    )
    assert done.id == dead.id
    assert len(attempts(rt, dead.id)) == 2


def test_redeliver_only_applies_to_dead(nrt, run_notifier, receiver):
    rt = nrt()
    add_notification(rt, str(uuid.uuid4()), 1, [receiver.url()])
    run_notifier(rt)
    (row,) = wait_for(
        lambda: [d for d in deliveries(rt) if d.status == "delivered"]
    )
    assert redeliver(rt.db, row.id, MAX_AGE) is False
    assert redeliver(rt.db, "no-such-id", MAX_AGE) is False


def test_hanging_receiver_times_out_and_others_keep_receiving(
    nrt, run_notifier, receiver
):
    rt = nrt(
        workers=4,
        max_inflight_per_host=2,
        inline_attempts=1,
        read_timeout=2.0,
    )
    receiver.hang_seconds = 6.0
    receiver.behaviour["/hang"] = "hang"
    hung = [str(uuid.uuid4()) for _ in range(8)]
    for alarm_id in hung:
        add_notification(
            rt, alarm_id, 1, [f"http://localhost:{receiver.port}/hang"]
        )
    fine = [str(uuid.uuid4()) for _ in range(20)]
    for alarm_id in fine:
        add_notification(rt, alarm_id, 1, [receiver.url("/fine")])
    run_notifier(rt)
    # The hung host never holds more than 2 of the 4 workers: the other
    # target is served while the hung requests wait for their timeout.
    wait_for(lambda: len(receiver.bodies("/fine")) == 20, timeout=1.8)
    assert not any(
        a.error and "timeout" in a.error
        for d in deliveries(rt)
        for a in attempts(rt, d.id)
    )
    wait_for(
        lambda: any(
            a.error and "timeout" in a.error
            for d in deliveries(rt)
            if d.target.endswith("/hang")
            for a in attempts(rt, d.id)
        )
    )


def test_429_retry_after_is_honoured(nrt, run_notifier, receiver):
    rt = nrt(max_retry_after=120)
    receiver.behaviour["/hook"] = lambda body: (429, {"Retry-After": "30"})
    add_notification(rt, str(uuid.uuid4()), 1, [receiver.url()])
    run_notifier(rt)
    (row,) = wait_for(lambda: [d for d in deliveries(rt) if d.attempts >= 1])
    assert row.status == "pending"
    assert row.last_status_code == 429
    wait = (row.next_attempt_at - timeutils.utcnow()).total_seconds()
    assert 20 < wait <= 30


def test_max_attempts_dead_letters(nrt, run_notifier, receiver):
    rt = nrt(max_attempts=3)
    receiver.behaviour["/hook"] = 500
    add_notification(rt, str(uuid.uuid4()), 1, [receiver.url()])
    run_notifier(rt)
    (row,) = wait_for(
        lambda: [d for d in deliveries(rt) if d.status == "dead"]
    )
    assert row.attempts == 3
    assert [a.status_code for a in attempts(rt, row.id)] == [500] * 3


def test_internal_target_refused_at_delivery(nrt, run_notifier, receiver):
    rt = nrt(allowed_networks=[])
    add_notification(rt, str(uuid.uuid4()), 1, [receiver.url()])
    run_notifier(rt)
    (row,) = wait_for(
        lambda: [d for d in deliveries(rt) if d.status == "dead"]
    )
    assert "allowed_networks" in row.last_error
    assert receiver.bodies() == []


def test_log_action_writes_one_line(nrt, run_notifier, caplog):
    rt = nrt()
    alarm_id = str(uuid.uuid4())
    caplog.set_level(logging.INFO, logger="notifiers.log")
    add_notification(rt, alarm_id, 1, ["log://"])
    run_notifier(rt)
    wait_for(lambda: [d for d in deliveries(rt) if d.status == "delivered"])
    lines = [r for r in caplog.records if r.name == "notifiers.log"]
    assert len(lines) == 1
    assert alarm_id in lines[0].getMessage()
    assert "from ok to alarm" in lines[0].getMessage()
    assert lines[0].alarm_id == alarm_id


def test_commit_in_same_process_wakes_the_notifier(
    nrt, run_notifier, receiver
):
    rt = nrt(poll_interval=60)
    service = run_notifier(rt)
    for watcher in service.watchers:
        assert watcher.ready.wait(10)
    # Past the dispatcher's first look: only a watcher can see this commit.
    time.sleep(0.2)
    add_notification(rt, str(uuid.uuid4()), 1, [receiver.url()])
    wait_for(receiver.bodies, timeout=10)


def test_two_notifiers_share_work_without_breaking_order(
    nrt, run_notifier, receiver
):
    rt1 = nrt()
    rt2 = nrt()
    alarm_ids = [str(uuid.uuid4()) for _ in range(10)]
    for seq in range(1, 6):
        for alarm_id in alarm_ids:
            add_notification(
                rt1, alarm_id, seq, [receiver.url()], current=f"s{seq}"
            )
    run_notifier(rt1)
    run_notifier(rt2)
    wait_for(lambda: len(receiver.bodies()) >= 50, timeout=20)
    for alarm_id in alarm_ids:
        order = [
            r.json["current"]
            for r in receiver.bodies()
            if r.json["alarm_id"] == alarm_id
        ]
        assert order == [f"s{s}" for s in range(1, 6)]


def test_postgresql_notify_wakes_notifiers_of_other_processes(
    nrt, run_notifier, receiver, db_url
):
    if not db_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    writer = nrt()
    # Another Database object, as in another process: only NOTIFY tells
    # the notifier about the writer's commits.
    reader = nrt(poll_interval=60)
    service = run_notifier(reader)
    (listener,) = service.watchers
    assert isinstance(listener, OutboxListener)
    assert listener.ready.wait(10)  # LISTEN runs
    add_notification(writer, str(uuid.uuid4()), 1, [receiver.url()])
    wait_for(receiver.bodies, timeout=10)
