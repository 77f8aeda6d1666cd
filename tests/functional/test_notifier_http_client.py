"""The http plugin against a real receiver: request, answers, pooling."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import urllib.parse

import pytest

import notifiers
from notifiers import http
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
