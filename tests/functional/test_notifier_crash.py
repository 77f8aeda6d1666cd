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
    Receiver,
    add_notification,
    wait_for,
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


def test_kill_9_then_restart_delivers_everything(make_conf, db_url, tmp_path):
    receiver = Receiver()
    receiver.delay = 0.01
    config = tmp_path / "alarmer.conf"
    config.write_text(
        "[DEFAULT]\n"
        f"data_dir = {tmp_path / 'data'}\n"
        "[database]\n"
        f"connection = {db_url}\n"
        "[notifier]\n"
        "allowed_networks = 127.0.0.0/8\n"
        "claim_timeout = 2\n"
        "poll_interval = 0.05\n"
        "workers = 4\n"
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

        def ids():
            return [
                {k.lower(): v for k, v in r.headers.items()}["webhook-id"]
                for r in receiver.bodies()
            ]

        wait_for(lambda: set(ids()) >= expected, timeout=60)
        # Duplicates are possible, always with a delivery id of the set.
        assert set(ids()) == expected
        # Per alarm, the first arrival of each notification is in order.
        for alarm_id in alarm_ids:
            firsts: list[str] = []
            for r in receiver.bodies():
                body = r.json
                if (
                    body["alarm_id"] == alarm_id
                    and body["current"] not in firsts
                ):
                    firsts.append(body["current"])
            assert firsts == [f"s{s}" for s in range(1, 11)]

        def all_delivered():
            with rt.db.read_session() as session:
                return session.execute(
                    sa.select(sa.func.count()).where(
                        models.Delivery.status == "delivered"
                    )
                ).scalar() == len(expected)

        wait_for(all_delivered, timeout=30)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        receiver.stop()
        rt.close()
