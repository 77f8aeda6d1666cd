"""Group membership: split, rejoin after eviction, backend outage."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import pytest
from tooz import coordination

from alarmer.evaluator.coordination import GROUP, Membership

IDS = [str(uuid.uuid4()) for _ in range(600)]


def wait_for(predicate, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def conf(make_conf):
    def _conf(url="", timeout=2):
        return make_conf(
            coordination={
                "backend_url": url,
                "membership_timeout": timeout,
                "watchdog_interval": 0.2,
                "retry_backoff": 0.1,
                "max_retry_interval": 0.5,
            }
        )

    return _conf


def poll_all(members):
    for m in members:
        m.poll()


def test_members_split_the_alarms_disjointly(conf):
    members = [Membership(conf()) for _ in range(3)]
    try:
        for m in members:
            m.start()

        def converged():
            poll_all(members)
            return all(len(m.members()) == 3 for m in members)

        wait_for(converged)
        shares = [{a for a in IDS if m.owns(a)} for m in members]
        assert set().union(*shares) == set(IDS)
        assert sum(len(s) for s in shares) == len(IDS)
        # 512 partitions: an even split (each within 25 % of a third).
        assert all(abs(len(s) - 200) < 50 for s in shares), [
            len(s) for s in shares
        ]
        members[2].stop()

        def two_left():
            poll_all(members[:2])
            return all(len(m.members()) == 2 for m in members[:2])

        wait_for(two_left)
        kept = [{a for a in IDS if m.owns(a)} for m in members[:2]]
        assert kept[0] | kept[1] == set(IDS)
        assert shares[0] <= kept[0] and shares[1] <= kept[1]
    finally:
        for m in members:
            m.stop()


def test_evicted_member_rejoins_by_itself(conf):
    member = Membership(conf())
    member.start()
    try:
        generation = member.generation
        # The backend forgets us (as after a stall longer than the
        # membership timeout).
        member._coord.leave_group(GROUP).get()

        def back():
            member.poll()
            coord = member._coord
            return (
                member.connected
                and coord is not None
                and member.member_id in coord.get_members(GROUP).get()
            )

        wait_for(back)
        assert member.connected
        assert member.generation > generation
        assert member.owns(IDS[0])
    finally:
        member.stop()


@pytest.mark.parametrize("expired", [False, True], ids=["live", "expired"])
@pytest.mark.parametrize("backend", ["file", "redis"])
def test_rejoin_while_still_listed_keeps_the_entry(
    conf, request, caplog, backend, expired
):
    """A worker back after a blip finds its entry still in the group.

    Joining again reports the member as already there: the worker takes
    that entry over at once (rather than failing until the backend drops
    it) and keeps it alive from then on.  The entry may have expired
    already (a stall longer than the membership timeout) and still be
    stored: the file driver never deletes one, Redis until a member
    lists the group.
    """
    url = ""  # file://<data_dir>/coordination
    if backend == "redis":
        base = request.getfixturevalue("redis_url").rsplit("/", 1)[0]
        url = f"{base}?namespace=alarmer-test-{uuid.uuid4().hex[:8]}"
    timeout = 2
    back = Membership(conf(url, timeout))
    # The entry left by the worker's lost connection: joined, then no
    # heartbeat any more.
    lost = coordination.get_coordinator(back.url, back.member_id)
    lost.start(start_heart=False)
    lost.join_group_create(GROUP, capabilities={"weight": 1})
    if expired:
        time.sleep(timeout + 0.5)
    observer = coordination.get_coordinator(back.url, b"observer")
    observer.start()
    newcomer = Membership(conf(url, timeout))
    try:
        back.start()
        assert back.connected
        assert back.generation > 0
        assert back.members() == [back.member_id]
        assert all(back.owns(a) for a in IDS)
        # Kept alive past the membership timeout, without rejoining.
        deadline = time.monotonic() + 2.5 * timeout
        while time.monotonic() < deadline:
            back.poll()
            time.sleep(0.1)
        assert back.connected
        assert back.member_id in observer.get_members(GROUP).get()
        assert "rejoining" not in caplog.text
        # Its watchers are in place: a member joining later is seen.
        newcomer.start()

        def two_members():
            back.poll()
            return back.members() == sorted(
                [back.member_id, newcomer.member_id]
            )

        wait_for(two_members)
        shares = [{a for a in IDS if m.owns(a)} for m in (back, newcomer)]
        assert shares[0] | shares[1] == set(IDS)
        assert not shares[0] & shares[1]
        # Leaving removes the entry taken over.
        back.stop()
        assert back.member_id not in observer.get_members(GROUP).get()
    finally:
        newcomer.stop()
        back.stop()
        lost.stop()
        observer.stop()


def test_solo_mode_owns_everything(conf):
    member = Membership(conf("none"))
    member.start()
    assert all(member.owns(a) for a in IDS)
    assert member.members() == [member.member_id]
    member.stop()


def test_unreachable_backend_at_start_owns_nothing_and_retries(conf):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    member = Membership(conf(f"redis://127.0.0.1:{port}?timeout=1"))
    member.start()
    try:
        assert not member.connected
        assert not member.owns(IDS[0])
        time.sleep(0.2)
        member.poll()  # retries without raising
        assert not member.connected
    finally:
        member.stop()


class Proxy:
    """A TCP forwarder to Redis that a test can cut and restore."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = 0
        self._conns: list[socket.socket] = []
        self._server: socket.socket | None = None
        self.open()

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        self.port = server.getsockname()[1]
        server.listen(16)
        self._server = server
        threading.Thread(
            target=self._accept, args=(server,), daemon=True
        ).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pipe, args=(a, b), daemon=True
                ).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        if self._server is not None:
            # shutdown() wakes the thread blocked in accept(); close()
            # alone would leave the port listening.
            try:
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._conns = []


def test_backend_outage_keeps_the_last_share(conf, redis_url):
    proxy = Proxy(6379)
    namespace = f"alarmer-test-{uuid.uuid4().hex[:8]}"
    member = Membership(
        conf(f"redis://127.0.0.1:{proxy.port}?namespace={namespace}")
    )
    member.start()
    try:
        assert member.connected
        owned = [a for a in IDS if member.owns(a)]
        assert owned == IDS  # alone in the group
        proxy.cut()
        wait_for(lambda: member.poll() or not member.connected)
        # Still evaluating what it owned in its last view.
        assert all(member.owns(a) for a in IDS)
        proxy.open()
        wait_for(lambda: member.poll() or member.connected, 15)
        assert all(member.owns(a) for a in IDS)
    finally:
        member.stop()
        proxy.cut()
