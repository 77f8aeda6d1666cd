"""The http plugin against a real receiver: request, answers, pooling.

The last cases answer from a raw TCP server, scripted answer by answer,
so that framings a threaded ``http.server`` never produces (chunks, no
length, folded headers, a close after the answer, an idle close) are
exercised.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable

import pytest

import notifiers
from notifiers import http, wire
from tests.functional.notifier_helpers import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def plugin(make_conf):
    conf = make_conf(
        notifier={
            "allowed_networks": ["127.0.0.0/8"],
            "connect_timeout": 0.5,
            "read_timeout": 0.5,
        }
    )
    p = http.HttpNotifier(conf)
    yield p
    p.close()


def _message(seq: int = 1) -> notifiers.Message:
    return notifiers.Message(
        delivery_id=f"d-{seq}",
        alarm_id="a1",
        seq=seq,
        alarm_name="cpu",
        severity="low",
        previous="ok",
        current="alarm",
        reason="Transition to alarm",
        reason_data={"type": "threshold"},
    )


def test_posts_body_and_headers_on_one_pooled_connection(plugin, receiver):
    action = urllib.parse.urlsplit(
        f"http://user:p%40ss@127.0.0.1:{receiver.port}/hook?x=1&y=2"
    )
    results = [plugin.notify(action, _message(seq)) for seq in (1, 2, 3)]
    assert [r.delivered for r in results] == [True, True, True]
    assert [r.status_code for r in results] == [200, 200, 200]
    got = receiver.bodies("/hook")
    assert [r.headers["webhook-id"] for r in got] == ["d-1", "d-2", "d-3"]
    assert got[0].json["current"] == "alarm"
    assert got[0].json["alarm_id"] == "a1"
    assert got[0].headers["Content-Type"] == "application/json"
    assert got[0].headers["User-Agent"] == http.USER_AGENT
    assert got[0].headers["X-Alarmer-Sequence"] == "1"
    expected = base64.b64encode(b"user:p@ss").decode()
    assert got[0].headers["Authorization"] == f"Basic {expected}"
    assert json.loads(got[2].body)["reason"] == "Transition to alarm"
    pool = plugin._pool(action, ipaddress.ip_address("127.0.0.1"))
    # The three requests went over one kept-alive connection.
    assert pool.num_connections == 1
    assert pool.num_requests == 3


def test_client_error_is_final_and_keeps_the_answer(plugin, receiver):
    receiver.behaviour["/bad"] = 400
    action = urllib.parse.urlsplit(receiver.url("/bad"))
    result = plugin.notify(action, _message())
    assert not result.delivered
    assert not result.retryable
    assert result.status_code == 400
    assert "HTTP 400" in result.error
    assert "answer 400" in result.error


def test_server_error_and_429_are_retryable(plugin, receiver):
    receiver.behaviour["/busy"] = lambda body: (429, {"Retry-After": "7"})
    receiver.behaviour["/err"] = 503
    busy = plugin.notify(
        urllib.parse.urlsplit(receiver.url("/busy")), _message()
    )
    assert busy.retryable and busy.retry_after == 7.0
    assert busy.status_code == 429
    err = plugin.notify(
        urllib.parse.urlsplit(receiver.url("/err")), _message()
    )
    assert err.retryable and err.status_code == 503


def test_refused_connection_and_hang_are_retryable(plugin, receiver):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = plugin.notify(
        urllib.parse.urlsplit(f"http://127.0.0.1:{port}/x"), _message()
    )
    assert not refused.delivered and refused.retryable
    assert "connection error" in refused.error
    receiver.behaviour["/hang"] = "hang"
    receiver.hang_seconds = 2.0
    hung = plugin.notify(
        urllib.parse.urlsplit(receiver.url("/hang")), _message()
    )
    assert not hung.delivered and hung.retryable
    assert "timeout" in hung.error
    assert hung.duration < 1.5


# -- framings, from a scripted raw server ------------------------------

Script = Callable[[socket.socket, bytes], bool]


class RawServer:
    """Answers each request on a connection with the next script.

    A script gets the socket and the request head; it returns False to
    close the connection afterwards.
    """

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = list(scripts)
        self.connections = 0
        #: Released each time the server closed a connection.
        self.closed = threading.Semaphore(0)
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(
                target=self._handle, args=(conn,), daemon=True
            ).start()

    def _handle(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            self._answer(conn, reader)
        finally:
            reader.close()
            conn.close()
            self.closed.release()

    def _answer(self, conn: socket.socket, reader) -> None:
        while self.scripts:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                if not line:
                    return
                head += line
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            reader.read(length)
            self.requests.append(head)
            if not self.scripts.pop(0)(conn, head):
                return

    def stop(self) -> None:
        self.sock.close()


def answer(raw: bytes, keep: bool = True) -> Script:
    def script(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(raw)
        return keep

    return script


def _send(plugin, server: RawServer, path: str = "/h") -> notifiers.Result:
    action = urllib.parse.urlsplit(f"http://127.0.0.1:{server.port}{path}")
    return plugin.notify(action, _message())


def test_chunked_and_folded_answers_keep_the_connection(plugin):
    server = RawServer(
        [
            answer(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n"
                b"Retry-After:\r\n 12\r\n\r\n"
                b"4;ext=1\r\ndown\r\n5\r\n now!\r\n0\r\nX-T: 1\r\n\r\n"
            ),
            answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
        ]
    )
    try:
        busy = _send(plugin, server)
        done = _send(plugin, server)
    finally:
        server.stop()
    assert busy.retryable and busy.status_code == 503
    assert busy.error == "HTTP 503 Busy: down now!"
    assert busy.retry_after == 12.0
    assert done.delivered and done.status_code == 204
    assert server.connections == 1
    head = server.requests[0].decode("latin-1")
    assert head.startswith("POST /h HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "webhook-id: d-1\r\n" in head


def test_close_long_body_and_idle_close_open_a_new_connection(plugin):
    big = b"x" * (http.MAX_BODY + 500)
    server = RawServer(
        [
            # Asks to close: the next request opens another connection.
            answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", False),
            # A body longer than kept: not read to its end, dropped.
            answer(
                b"HTTP/1.1 400 Bad\r\nContent-Length: %d\r\n\r\n%s"
                % (len(big), big)
            ),
            # No length: the body ends with the connection.
            answer(b"HTTP/1.0 500 Oops\r\n\r\nbroken", False),
            # Answers, then closes while the connection is idle.
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]
    )
    try:
        results = [_send(plugin, server) for _ in range(4)]
        for _ in range(4):
            assert server.closed.acquire(timeout=5)
        results.append(_send(plugin, server))
    finally:
        server.stop()
    assert [r.status_code for r in results] == [200, 400, 500, 200, 200]
    assert results[0].delivered and results[4].delivered
    assert results[1].error == "HTTP 400 Bad: " + "x" * http.MAX_BODY
    assert not results[1].retryable
    assert results[2].error == "HTTP 500 Oops: broken"
    # The idle close was seen before the fifth request: no failure.
    assert server.connections == 5


def test_broken_answers_are_retryable_connection_errors(plugin):
    server = RawServer(
        [
            answer(b"SMTP ready\r\n\r\n", False),
            answer(b"", False),
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", False),
        ]
    )
    try:
        garbage, closed, short = (_send(plugin, server) for _ in range(3))
    finally:
        server.stop()
    assert garbage.retryable and "bad status line" in garbage.error
    assert closed.retryable and "without an answer" in closed.error
    assert short.retryable and short.status_code == 200
    assert "error reading the response" in short.error


@pytest.mark.parametrize(
    "target, headers",
    [
        ("/a b", {}),
        ("/a\r\nX: 1", {}),
        ("/a", {"X-Evil": "1\r\nX-Injected: 2"}),
        ("/a", {"Bad Name:": "1"}),
    ],
)
def test_unsendable_requests_are_refused(target, headers):
    with pytest.raises(ValueError):
        wire.request_head(target, headers, 0)


def test_only_an_address_written_in_the_url_keeps_its_check(plugin, receiver):
    by_name = urllib.parse.urlsplit(f"http://localhost:{receiver.port}/n")
    by_address = urllib.parse.urlsplit(receiver.url("/a"))
    for _ in range(2):
        assert plugin.notify(by_name, _message()).delivered
    # A name is resolved and checked again at each attempt.
    assert plugin._literals == {}
    for _ in range(2):
        assert plugin.notify(by_address, _message()).delivered
    assert list(plugin._literals) == [("127.0.0.1", receiver.port)]
    # A refused address is refused at each attempt, never kept.
    internal = urllib.parse.urlsplit("http://10.1.2.3/x")
    for _ in range(2):
        refused = plugin.notify(internal, _message())
        assert not refused.delivered and not refused.retryable
        assert "allowed_networks" in refused.error
    assert ("10.1.2.3", None) not in plugin._literals
