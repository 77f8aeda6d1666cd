"""The datagram channel and outbox wake-up between real processes."""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
import uuid

import pytest

from alarmer import conf as aconf
from alarmer.channel import (
    DatagramChannel,
    MetricChanges,
    PostgresChannel,
    make_channel,
)
from notifiers.wakeup import DatagramWatcher, OutboxAnnouncer, Wakeup

CTX = multiprocessing.get_context("spawn")


def _publish(directory: str, payload, ready, done) -> None:
    ready.wait(30)
    channel = DatagramChannel(directory)
    channel.publish(payload)
    channel.close()
    done.set()


def _subscribe_forever(directory: str, bound) -> None:
    channel = DatagramChannel(directory)
    channel.subscribe(lambda changes: None)
    bound.set()
    time.sleep(600)


def _announce(directory: str) -> None:
    announcer = OutboxAnnouncer(directory)
    announcer()
    announcer.close()


def _collect(channel):
    got: list[MetricChanges] = []
    arrived = threading.Event()

    def on_changes(changes):
        got.append(changes)
        arrived.set()

    channel.subscribe(on_changes)
    return got, arrived


def test_ids_and_timestamps_cross_a_process(tmp_path):
    directory = str(tmp_path / "metrics")
    channel = DatagramChannel(directory)
    got, arrived = _collect(channel)
    ready, done = CTX.Event(), CTX.Event()
    ready.set()
    payload = {"m-1": 1_700_000_000_123_456_789, "m-2": None}
    proc = CTX.Process(target=_publish, args=(directory, payload, ready, done))
    proc.start()
    try:
        assert arrived.wait(30)
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        channel.close()
    assert got[0] == ["m-1", "m-2"]
    assert got[0].newest == {"m-1": 1_700_000_000_123_456_789}
    # The subscriber's socket goes with it.
    assert os.listdir(directory) == []


def test_plain_ids_and_large_batches_arrive_whole(tmp_path):
    directory = str(tmp_path / "metrics")
    channel = DatagramChannel(directory)
    got, _arrived = _collect(channel)
    ids = [f"{k:08d}-0000-0000-0000-000000000000" for k in range(5000)]
    ready, done = CTX.Event(), CTX.Event()
    ready.set()
    proc = CTX.Process(target=_publish, args=(directory, ids, ready, done))
    proc.start()
    try:
        proc.join(60)
        assert proc.exitcode == 0

        def received():
            return sum(len(batch) for batch in got)

        deadline = time.monotonic() + 10
        while received() < len(ids) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        channel.close()
    # Several datagrams (one is at most about 60 kB), nothing lost.
    assert len(got) > 1
    assert [i for batch in got for i in batch] == ids
    assert all(batch.newest == {} for batch in got)


def test_a_subscriber_that_falls_behind_slows_publishers_loses_nothing(
    tmp_path,
):
    """The subscriber stops reading for 3 s while 40 announcements are
    sent, more than a socket queues: the publisher waits, none is lost."""
    directory = str(tmp_path / "metrics")
    channel = DatagramChannel(directory)
    got: list[MetricChanges] = []
    stalled = threading.Event()

    def on_changes(changes):
        if not stalled.is_set():
            stalled.set()
            time.sleep(3.0)
        got.append(changes)

    channel.subscribe(on_changes)
    publisher = DatagramChannel(directory)
    try:
        sent = [[f"m{k}-{j}" for j in range(50)] for k in range(40)]
        started = time.monotonic()
        for ids in sent:
            publisher.publish(ids)
        waited = time.monotonic() - started
        deadline = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        publisher.close()
        channel.close()
    assert [list(batch) for batch in got] == sent
    assert waited > 1.0  # it did wait for the stalled subscriber


def test_a_dead_subscribers_socket_is_removed(tmp_path):
    directory = str(tmp_path / "metrics")
    bound = CTX.Event()
    proc = CTX.Process(target=_subscribe_forever, args=(directory, bound))
    proc.start()
    assert bound.wait(60)
    assert len(os.listdir(directory)) == 1
    proc.kill()
    proc.join(10)
    publisher = DatagramChannel(directory)
    try:
        publisher.publish(["m-1"])
    finally:
        publisher.close()
    assert os.listdir(directory) == []


def test_a_long_directory_path_works(tmp_path):
    # Longer than a Unix socket path may be: reached through /proc.
    directory = str(tmp_path / ("d" * 120))
    channel = DatagramChannel(directory)
    got, arrived = _collect(channel)
    try:
        other = DatagramChannel(directory)
        other.publish(["m-9"])
        other.close()
        assert arrived.wait(10)
    finally:
        channel.close()
    assert got == [["m-9"]]


def test_outbox_announcement_wakes_a_notifier_of_another_process(tmp_path):
    directory = str(tmp_path / "outbox")
    wakeup = Wakeup()
    assert wakeup.take_outbox()  # the first turn looks anyway
    wakeup.clear()
    watcher = DatagramWatcher(directory, wakeup)
    watcher.start()
    try:
        assert watcher.ready.is_set()
        assert not wakeup.wait(0.05)
        proc = CTX.Process(target=_announce, args=(directory,))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
        assert wakeup.wait(10)
        assert wakeup.take_outbox()
    finally:
        watcher.stop()
    assert os.listdir(directory) == []


@pytest.mark.parametrize(
    ("setting", "several", "kind"),
    [
        ("", False, "LocalChannel"),
        ("", True, "DatagramChannel"),
        ("local", True, "DatagramChannel"),
        ("datagram", False, "DatagramChannel"),
    ],
)
def test_the_channel_serve_picks(tmp_path, setting, several, kind):
    conf = aconf.make_conf(
        overrides={
            "DEFAULT": {"data_dir": str(tmp_path / "data")},
            "evaluator": {"metric_channel": setting},
        }
    )
    channel = make_channel(conf, several_processes=several)
    try:
        assert type(channel).__name__ == kind
        if kind == "DatagramChannel":
            assert channel.directory == str(
                tmp_path / "data" / "run" / "metrics"
            )
    finally:
        channel.close()


def test_a_relative_datagram_url_is_refused(tmp_path):
    conf = aconf.make_conf(
        overrides={"evaluator": {"metric_channel": "datagram://relative/dir"}}
    )
    with pytest.raises(ValueError, match="absolute directory"):
        make_channel(conf)


def test_a_subscriber_bound_just_after_a_publish_hears_the_next(tmp_path):
    # The directory's time stamp moves in coarse ticks: it may not move
    # between the publisher's listing and the new socket.  The next
    # publish must still find the socket.
    directory = tmp_path / "metrics"
    publisher = DatagramChannel(str(directory))
    try:
        for round_ in range(50):
            publisher.publish([f"before-{round_}"])
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                path = directory / f"{round_}-test.sock"
                sock.bind(str(path))
                sock.settimeout(5)
                publisher.publish([f"after-{round_}"])
                assert sock.recv(1000) == f"after-{round_}".encode()
            path.unlink()
    finally:
        publisher.close()


def test_postgresql_channel_carries_ids_and_timestamps(postgresql_server_url):
    name = f"alarmer_test_{uuid.uuid4().hex[:8]}"
    subscriber = PostgresChannel(postgresql_server_url, name=name)
    publisher = PostgresChannel(postgresql_server_url, name=name)
    got, arrived = _collect(subscriber)
    try:
        publisher.publish({"m-1": 1_700_000_000_000_000_001, "m-2": None})
        assert arrived.wait(10)
        assert got[0] == ["m-1", "m-2"]
        assert got[0].newest == {"m-1": 1_700_000_000_000_000_001}
        # More than one NOTIFY payload (8000 bytes) holds.
        ids = [str(uuid.uuid4()) for _ in range(1000)]
        publisher.publish(ids)
        wait = time.monotonic() + 10
        while sum(map(len, got[1:])) < len(ids) and time.monotonic() < wait:
            time.sleep(0.02)
        assert len(got) > 2
        assert [i for batch in got[1:] for i in batch] == ids
    finally:
        publisher.close()
        subscriber.close()


def test_postgresql_url_picks_the_postgresql_channel(tmp_path):
    conf = aconf.make_conf(
        overrides={
            "DEFAULT": {"data_dir": str(tmp_path)},
            "evaluator": {
                "metric_channel": "postgresql+psycopg://u@127.0.0.1/db"
            },
        }
    )
    channel = make_channel(conf, several_processes=True)
    try:
        assert isinstance(channel, PostgresChannel)
        assert channel.dsn == "postgresql://u@127.0.0.1/db"
    finally:
        channel.close()
