"""A restarted notifier sends its crashed predecessor's deliveries at once.

Claims carry the owner of a notifier slot (:mod:`notifiers.owner`); the
next process of the slot requeues them when it starts, long before
``claim_timeout`` (left at its 60 s default here), while the claims of
another live notifier are left alone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from alarmer import runtime
from alarmer.db import Database
from notifiers import owner as owner_mod
from notifiers import tables as models
from notifiers.queue import DeliveryQueue
from notifiers.service import NotifierService
from tests.conftest import _empty_database
from tests.functional.notifier_helpers import (
    Receiver,
    add_notification,
    deliveries,
    wait_for,
)

LOG = logging.getLogger(__name__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


class _Rt:
    def __init__(self, db: Database) -> None:
        self.db = db


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def any_db(request, tmp_path):
    """A migrated database of each of the three backends."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'alarmer.sqlite'}"
    else:
        url = request.getfixturevalue(f"{request.param}_server_url")
        _empty_database(url)
    db = Database(url)
    db.upgrade()
    yield db
    db.dispose()


def test_reclaim_takes_back_the_owners_claims_only(any_db, make_conf):
    db = any_db
    rt = _Rt(db)
    opts = make_conf(notifier={"claim_timeout": 60}).notifier
    for _ in range(4):
        add_notification(rt, str(uuid.uuid4()), 1, ["log://"])
    crashed = DeliveryQueue(db, opts, "host:1:aaaa", owner="host:0")
    assert crashed.expand() == 4
    mine = {j.id for j in crashed.claim(2)}
    live = DeliveryQueue(db, opts, "host:2:bbbb", owner="host:1")
    theirs = {j.id for j in live.claim(2)}
    assert len(mine) == len(theirs) == 2
    rows = {d.id: d for d in deliveries(rt)}
    assert {rows[i].claim_owner for i in mine} == {"host:0"}
    # The next process of slot 0 (the first is dead).
    restarted = DeliveryQueue(db, opts, "host:3:cccc", owner="host:0")
    assert restarted.reclaim() == 2
    assert restarted.reclaim() == 0
    rows = {d.id: d for d in deliveries(rt)}
    for i in mine:
        assert rows[i].status == models.PENDING
        assert rows[i].claimed_by is None and rows[i].claim_owner is None
    for i in theirs:
        assert rows[i].status == models.IN_FLIGHT
        assert rows[i].claimed_by == "host:2:bbbb"
        assert rows[i].claim_owner == "host:1"
    # Claimed again at once, with the same delivery ids.
    assert {j.id for j in restarted.claim(10)} == mine
    # Without an owner nothing is reclaimed.
    assert DeliveryQueue(db, opts, "x").reclaim() == 0


def test_slots_are_distinct_while_held_and_reused_after(make_conf):
    conf = make_conf(notifier={"worker_name": "n"})
    first = owner_mod.take_slot(conf)
    second = owner_mod.take_slot(conf)
    assert first is not None and second is not None
    assert (first.owner, second.owner) == ("n:0", "n:1")
    first.release()
    third = owner_mod.take_slot(conf)
    assert third is not None and third.owner == "n:0"
    second.release()
    third.release()


# -- real processes killed with SIGKILL ---------------------------------------


class Holding:
    """Records every arrival; holds the first one of each alarm."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = {}
        self.receiver.behaviour["/hold"] = self._answer

    def _answer(self, body: bytes) -> tuple[int, dict[str, str]]:
        alarm_id = json.loads(body)["alarm_id"]
        with self.lock:
            times = self.arrivals.setdefault(alarm_id, [])
            times.append(time.monotonic())
            first = len(times) == 1
        if first:
            self.release.wait(40)
        return 200, {}

    def count(self, alarm_id: str) -> int:
        with self.lock:
            return len(self.arrivals.get(alarm_id, []))

    def ids_of_repeats(self) -> dict[str, str]:
        """Alarm id -> webhook-id of the answered (repeated) arrivals."""
        return {
            r.json["alarm_id"]: {k.lower(): v for k, v in r.headers.items()}[
                "webhook-id"
            ]
            for r in self.receiver.bodies("/hold")
        }


def _start(config_file, tmp_path, name):
    log = open(tmp_path / f"{name}.log", "wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alarmer.cli",
            "notifier",
            "--config-file",
            str(config_file),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def _claimers(rt, alarm_ids):
    """Alarm id -> claimed_by of its in-flight delivery."""
    with rt.db.read_session() as session:
        rows = session.execute(
            sa.select(models.Delivery.alarm_id, models.Delivery.claimed_by)
            .where(models.Delivery.alarm_id.in_(alarm_ids))
            .where(models.Delivery.status == models.IN_FLIGHT)
        ).all()
    return {row.alarm_id: row.claimed_by for row in rows}


@pytest.mark.slow
def test_sigkill_then_restart_redelivers_at_once(make_conf, db_url, tmp_path):
    holding = Holding()
    hook = holding.receiver.url("/hold")
    config = tmp_path / "alarmer.conf"
    # claim_timeout stays at its default (60 s); long read timeout: the
    # receiver holds requests.
    settings = {
        "allowed_networks": ["127.0.0.0/8"],
        "poll_interval": 0.05,
        "read_timeout": 60.0,
        "workers": 4,
    }
    config.write_text(
        "[DEFAULT]\n"
        f"data_dir = {tmp_path / 'data'}\n"
        "[database]\n"
        f"connection = {db_url}\n"
        "[notifier]\n"
        "allowed_networks = 127.0.0.0/8\n"
        "poll_interval = 0.05\n"
        "read_timeout = 60\n"
        "workers = 4\n"
    )
    rt = runtime.build(
        make_conf(database={"connection": db_url}, notifier=settings),
        migrate=True,
    )
    assert rt.conf.notifier.claim_timeout == 60.0
    procs: dict[str, subprocess.Popen] = {}
    # The other live notifier, of the same data directory (another
    # slot): it claims Y, then takes no new work, so that X goes to the
    # process killed below.
    live = NotifierService(rt)
    live.start()
    claim = live.queue.claim
    try:
        y, x = str(uuid.uuid4()), str(uuid.uuid4())
        add_notification(rt, y, 1, [hook])
        wait_for(lambda: holding.count(y) == 1, timeout=30)
        # No claim, nor claim at expansion (it still expands).
        live.queue.claim = lambda limit: []  # type: ignore[method-assign]
        expand = live.queue.expand_claiming
        live.queue.expand_claiming = (  # type: ignore[method-assign]
            lambda limit: expand(0)
        )
        procs["first"] = _start(config, tmp_path, "first")
        first_pid = procs["first"].pid
        add_notification(rt, x, 1, [hook])
        wait_for(lambda: holding.count(x) == 1, timeout=30)
        claimers = _claimers(rt, [x, y])
        assert claimers[y] == live.worker_id
        assert f":{first_pid}:" in claimers[x]
        procs["first"].send_signal(signal.SIGKILL)
        procs["first"].wait(timeout=10)
        start = time.monotonic()
        procs["restarted"] = _start(config, tmp_path, "restarted")
        wait_for(lambda: holding.count(x) >= 2, timeout=10)
        elapsed = time.monotonic() - start
        assert elapsed < 10
        # Same delivery id (the webhook-id header) as the first sending.
        repeats = holding.ids_of_repeats()
        assert repeats[x] == models.delivery_id(x, 1, hook)
        # The live notifier's claim was not taken over early.
        time.sleep(2)
        assert holding.count(y) == 1
        assert _claimers(rt, [y]) == {y: live.worker_id}
        live.queue.claim = claim  # type: ignore[method-assign]
        live.queue.expand_claiming = expand  # type: ignore[method-assign]
        holding.release.set()

        def all_delivered():
            rows = deliveries(rt)
            return len(rows) == 2 and all(
                r.status == models.DELIVERED for r in rows
            )

        wait_for(all_delivered, timeout=30)
        LOG.info("redelivered %.2fs after the restart", elapsed)
        procs["restarted"].send_signal(signal.SIGTERM)
        assert procs["restarted"].wait(timeout=30) == 0
    finally:
        holding.release.set()
        live.stop()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        holding.receiver.stop()
        rt.close()
