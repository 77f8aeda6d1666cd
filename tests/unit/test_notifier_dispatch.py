"""Per-host limits and the worker pool, without a database."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time

from notifiers.base import Message, Result
from notifiers.dispatch import Admission, HostSlots, WorkerPool
from notifiers.jobs import Attempt, DeliveryOutcome, Job, host_of

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def job(target: str, n: int = 0) -> Job:
    return Job(
        id=f"{target}#{n}",
        token="t",
        target=target,
        stream=target,
        attempts=0,
        dead_after=NOW,
        message=Message(
            delivery_id=f"{target}#{n}",
            alarm_id="a",
            seq=n,
            alarm_name="n",
            severity="low",
            previous="ok",
            current="alarm",
            reason="r",
            reason_data={},
        ),
    )


def test_host_of_ignores_credentials_case_and_path():
    assert host_of("http://u:p@Example.COM:8080/x?y=1") == (
        "http://example.com:8080"
    )
    assert host_of("https://example.com/a") == "https://example.com"
    assert host_of("log://") == "log://"
    assert host_of("http://[::1") == ""


def test_slots_per_host_then_queue_then_refusal():
    slots = HostSlots(per_host=2, max_waiting=1)
    a = "http://a.example"
    assert slots.admit(job(a, 1)) is Admission.RUN
    assert slots.admit(job(a, 2)) is Admission.RUN
    assert slots.admit(job(a, 3)) is Admission.QUEUED
    assert slots.admit(job(a, 4)) is Admission.REFUSED
    # Another host is not affected by a's saturation.
    assert slots.admit(job("http://b.example", 1)) is Admission.RUN
    assert slots.load() == (4, 1)


def test_finished_job_hands_its_slot_to_the_next_of_its_host():
    slots = HostSlots(per_host=1, max_waiting=5)
    a = "http://a.example"
    first, second, third = job(a, 1), job(a, 2), job(a, 3)
    assert slots.admit(first) is Admission.RUN
    assert slots.admit(second) is Admission.QUEUED
    assert slots.admit(third) is Admission.QUEUED
    assert slots.finish(first) is second
    assert slots.load() == (2, 1)
    assert slots.finish(second) is third
    assert slots.finish(third) is None
    assert slots.load() == (0, 0)
    # The slot is free again.
    assert slots.admit(job(a, 4)) is Admission.RUN
    assert slots.inflight == 1 and slots.backlog == 0


def test_pool_never_runs_more_than_the_per_host_limit():
    lock = threading.Lock()
    running: collections.Counter[str] = collections.Counter()
    peak: collections.Counter[str] = collections.Counter()
    done: list[DeliveryOutcome] = []

    def work(j: Job) -> DeliveryOutcome:
        with lock:
            running[j.host] += 1
            peak[j.host] = max(peak[j.host], running[j.host])
        time.sleep(0.01)
        with lock:
            running[j.host] -= 1
        result = Result(delivered=True)
        return DeliveryOutcome(j, "delivered", [Attempt(NOW, result)], NOW)

    def record(outcome: DeliveryOutcome) -> None:
        with lock:
            done.append(outcome)

    pool = WorkerPool(workers=6, per_host=2, work=work, done=record)
    pool.start()
    jobs = [job(f"http://h{h}.example", n) for h in range(3) for n in range(6)]
    try:
        assert all(pool.submit(j) for j in jobs)
    finally:
        pool.stop()
    assert sorted(o.job.id for o in done) == sorted(j.id for j in jobs)
    assert max(peak.values()) == 2
    assert pool.load() == (0, 0)


def test_pool_refuses_a_job_of_a_host_whose_queue_is_full():
    release = threading.Event()

    def work(j: Job) -> DeliveryOutcome:
        release.wait(10)
        return DeliveryOutcome(j, "delivered", [], NOW)

    pool = WorkerPool(
        workers=2, per_host=1, work=work, done=lambda o: None, max_waiting=1
    )
    pool.start()
    try:
        a = "http://a.example"
        assert pool.submit(job(a, 1))
        assert pool.submit(job(a, 2))
        assert not pool.submit(job(a, 3))
        assert pool.submit(job("http://b.example", 1))
    finally:
        release.set()
        pool.stop()


def test_a_host_queue_holds_what_the_host_takes_within_the_budget():
    # 2 running per host; up to 30 s of waiting; never more than 50.
    slots = HostSlots(
        per_host=2, max_waiting=4, wait_budget=30.0, max_queue=50
    )
    fast, slow = "http://fast.example", "http://slow.example"
    # Not measured yet: the fixed limit.
    assert slots.queue_limit(fast) == 4
    for n in range(2):
        slots.admit(job(fast, n))
        slots.admit(job(slow, n))
    slots.finish(job(fast, 0), 0.01)
    slots.finish(job(slow, 0), 20.0)
    # 2 at a time, 10 ms each: 6,000 in 30 s, capped at 50.
    assert slots.queue_limit(fast) == 50
    # 20 s each: 3 in 30 s.
    assert slots.queue_limit(slow) == 3
    # A hanging host: never fewer than its running slots.
    slots.finish(job(slow, 1), 600.0)
    assert slots.queue_limit(slow) == 2
    admitted = [slots.admit(job(slow, n)) for n in range(10, 15)]
    run, queued, refused = Admission.RUN, Admission.QUEUED, Admission.REFUSED
    assert admitted == [run, run, queued, queued, refused]
    # The pace follows the recent jobs (a moving mean).
    for _ in range(40):
        slots.finish(job(fast, 0), 1.0)
        slots.admit(job(fast, 0))
    assert slots.queue_limit(fast) == 50
    for _ in range(40):
        slots.finish(job(fast, 0), 10.0)
        slots.admit(job(fast, 0))
    assert slots.queue_limit(fast) == 6
