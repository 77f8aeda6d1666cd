"""kill -9 of a notifier process in the middle of deliveries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from alarmer import runtime
from notifiers import tables as models
from tests.functional.notifier_helpers import (
    Received,
    Receiver,
    add_notification,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow


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
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )


def _ids(receiver: Receiver) -> list[str]:
    """The ``webhook-id`` of every request received, in order."""
    return [
        {k.lower(): v for k, v in r.headers.items()}["webhook-id"]
        for r in receiver.bodies()
    ]


def _firsts(bodies: list[Received], alarm_id: str) -> list[str]:
    """The states of *alarm_id*'s notifications, by first arrival."""
    firsts: list[str] = []
    for r in bodies:
        body = r.json
        if body["alarm_id"] == alarm_id and body["current"] not in firsts:
            firsts.append(body["current"])
    return firsts


def _delivered(rt) -> int:
    with rt.db.read_session() as session:
        return session.execute(
            sa.select(sa.func.count()).where(
                models.Delivery.status == "delivered"
            )
        ).scalar()


def _stop(procs: list[subprocess.Popen], receiver: Receiver, rt) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    receiver.stop()
    rt.close()


def test_kill_9_then_restart_delivers_everything(make_conf, db_url, tmp_path):
    receiver = Receiver()
    receiver.delay = 0.01
    config = write_config(
        tmp_path, db_url, claim_timeout=2, poll_interval=0.05, workers=4
    )
    rt = runtime.build(
        make_conf(database={"connection": db_url}), migrate=True
    )
    procs = []
    try:
        alarm_ids = [str(uuid.uuid4()) for _ in range(20)]
        for seq in range(1, 11):
            for alarm_id in alarm_ids:
                add_notification(
                    rt, alarm_id, seq, [receiver.url()], current=f"s{seq}"
                )
        expected = {
            models.delivery_id(a, s, receiver.url())
            for a in alarm_ids
            for s in range(1, 11)
        }
        first = _start(config, tmp_path, "first")
        procs.append(first)
        wait_for(lambda: len(receiver.bodies()) >= 40, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        with rt.db.read_session() as session:
            counts = dict(
                session.execute(
                    sa.select(
                        models.Delivery.status, sa.func.count()
                    ).group_by(models.Delivery.status)
                ).all()
            )
        assert counts.get("delivered", 0) < len(expected)
        second = _start(config, tmp_path, "second")
        procs.append(second)

        wait_for(lambda: set(_ids(receiver)) >= expected, timeout=60)
        # Duplicates are possible, always with a delivery id of the set.
        assert set(_ids(receiver)) == expected
        # Per alarm, the first arrival of each notification is in order.
        for alarm_id in alarm_ids:
            assert _firsts(receiver.bodies(), alarm_id) == [
                f"s{s}" for s in range(1, 11)
            ]

        wait_for(lambda: _delivered(rt) == len(expected), timeout=30)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        _stop(procs, receiver, rt)


def test_kill_9_mid_wave_loses_nothing_and_repeats_only_unrecorded(
    make_conf, db_url, tmp_path
):
    """A wave: outbox rows expanded as room frees, claimed at expansion.

    Killed mid-wave, the next process delivers every notification; the
    only repeats are deliveries not yet recorded as delivered at the
    kill, and per alarm and target the notifications arrive in order.
    """
    receiver = Receiver()
    config = write_config(tmp_path, db_url, poll_interval=0.05, workers=4)
    rt = runtime.build(
        make_conf(database={"connection": db_url}), migrate=True
    )
    targets = [receiver.url("/a"), receiver.url("/b")]
    procs = []
    try:
        alarm_ids = [str(uuid.uuid4()) for _ in range(300)]
        for seq in (1, 2):
            for alarm_id in alarm_ids:
                add_notification(rt, alarm_id, seq, targets, current=f"s{seq}")
        expected = {
            models.delivery_id(a, s, t)
            for a in alarm_ids
            for s in (1, 2)
            for t in targets
        }
        first = _start(config, tmp_path, "first")
        procs.append(first)
        wait_for(lambda: len(receiver.bodies()) >= 60, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        with rt.db.read_session() as session:
            status = dict(
                session.execute(
                    sa.select(models.Delivery.id, models.Delivery.status)
                ).all()
            )
            expanded = session.execute(
                sa.select(sa.func.count()).select_from(
                    models.NotificationExpansion
                )
            ).scalar()
        recorded = {i for i, s in status.items() if s == "delivered"}
        # Outbox rows were expanded as room freed, not all at once.
        assert expanded < 2 * len(alarm_ids)
        assert recorded < expected
        second = _start(config, tmp_path, "second")
        procs.append(second)

        wait_for(lambda: set(_ids(receiver)) >= expected, timeout=90)
        got = _ids(receiver)
        assert set(got) == expected
        repeated = {i for i in got if got.count(i) > 1}
        assert not repeated & recorded
        for alarm_id in alarm_ids:
            for path in ("/a", "/b"):
                bodies = receiver.bodies(path)
                assert _firsts(bodies, alarm_id) == ["s1", "s2"]

        wait_for(lambda: _delivered(rt) == len(expected), timeout=30)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        _stop(procs, receiver, rt)
