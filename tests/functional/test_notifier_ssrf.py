"""Webhook targets: wrapped internal addresses and DNS rebinding.

Every IPv6 wrapper of an internal IPv4 address is refused when an alarm
is saved and again at delivery, even when loopback is allowed; the name
of a target is resolved once per attempt and the connection goes to the
address that was checked, with the name kept in the ``Host`` header and,
for https, in the TLS handshake and the certificate check.
"""

from __future__ import annotations

import http.server
import ipaddress
import socket
import ssl
import threading
import uuid
from typing import Any

import pytest
import trustme

import notifiers
from notifiers import http as http_plugin
from notifiers import status as statuses
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import (
    Receiver,
    add_notification,
    attempts,
    deliveries,
    wait_for,
)
from tests.functional.v2_helpers import (
    MEMBER,
    alarm_body,
    assert_envelope,
    count_alarms,
)

#: IPv6 wrappers of loopback and of the metadata address.
WRAPPERS = [
    "::127.0.0.1",  # IPv4-compatible
    "::169.254.169.254",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::7f00:1",  # NAT64, well-known prefix
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::7f00:1",  # NAT64, local-use prefix as a /96
    "64:ff9b:1:7f00:0:100::",  # NAT64, local-use prefix as a /48
    "2002:7f00:1::",  # 6to4
    "2002:a9fe:a9fe::",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254...
]

LOOPBACK_ALLOWED = ["127.0.0.0/8", "::1/128"]


def _ip(text: str) -> Any:
    return ipaddress.ip_address(text)


class ScriptedResolver:
    """Answers the addresses of its script in turn, then the last one."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = [[_ip(a) for a in answer] for answer in answers]
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, host: str, port: int | None, timeout: float):
        with self.lock:
            index = min(len(self.calls), len(self.answers) - 1)
            self.calls.append(host)
            return list(self.answers[index])


def _http_plugins(resolver):
    def build(conf):
        return http_plugin.HttpNotifier(conf, resolver=resolver)

    return {"http": build, "https": build}


def _final(rt, alarm_id, count=1):
    def check():
        rows = deliveries(rt, alarm_id)
        done = [r for r in rows if r.status in statuses.FINAL]
        return rows if len(done) >= count else None

    return wait_for(check, timeout=20)


@pytest.fixture
def api_client(sqlite_rt):
    from api.app import create_app

    return create_app(sqlite_rt).test_client()


# -- at save time -------------------------------------------------------


@pytest.mark.parametrize("allowed", [[], LOOPBACK_ALLOWED])
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_wrapped_internal_addresses_are_refused_at_save_time(
    sqlite_rt, api_client, wrapper, allowed
):
    sqlite_rt.conf.set_override("allowed_networks", allowed, group="notifier")
    url = f"http://[{wrapper}]:8080/hook"
    response = api_client.post(
        "/v2/alarms", json=alarm_body(alarm_actions=[url]), headers=MEMBER
    )
    message = assert_envelope(
        response, 400, f"Action {url} targets ", "allowed_networks"
    )
    assert "wrapping" in message or wrapper.startswith("2001:")
    assert count_alarms(api_client) == 0


def test_wrapped_public_addresses_are_accepted(sqlite_rt, api_client):
    for url in (
        "http://[64:ff9b::808:808]/hook",
        "http://[2002:808:808::]/hook",
        "http://[::ffff:8.8.8.8]/hook",
    ):
        response = api_client.post(
            "/v2/alarms", json=alarm_body(alarm_actions=[url]), headers=MEMBER
        )
        assert response.status_code == 201, response.get_data(as_text=True)


def test_a_name_resolving_to_a_wrapper_is_refused(make_conf):
    conf = make_conf(notifier={"allowed_networks": LOOPBACK_ALLOWED})
    resolver = ScriptedResolver(["93.184.216.34", "64:ff9b::a9fe:a9fe"])
    action = notifiers.parse_action("http://hooks.example.test/x")
    with pytest.raises(notifiers.InvalidAction) as err:
        notifiers.base.check_target(
            action, conf, unresolvable_ok=True, resolver=resolver
        )
    assert "64:ff9b::a9fe:a9fe (wrapping 169.254.169.254)" in str(
        err.value.message
    )


# -- at delivery --------------------------------------------------------


def test_wrappers_are_refused_at_delivery_without_a_connection(sqlite_rt):
    rt = sqlite_rt
    rt.conf.set_override("allowed_networks", LOOPBACK_ALLOWED, "notifier")
    rt.conf.set_override("poll_interval", 0.05, group="notifier")
    receiver = Receiver()
    # Names resolved by the test's resolver to each wrapper, and the
    # wrappers as literal addresses; the receiver's own URL as control.
    names = {f"w{i}.example.test": w for i, w in enumerate(WRAPPERS)}
    table = {name: [_ip(w)] for name, w in names.items()}

    def resolver(host, port, timeout):
        if host in table:
            return table[host]
        return [_ip(host)]

    port = receiver.port
    actions = [f"http://{name}:{port}/hook" for name in names]
    actions += [f"http://[{w}]:{port}/hook" for w in WRAPPERS]
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, actions)
    control = str(uuid.uuid4())
    add_notification(rt, control, 1, [receiver.url("/control")])
    service = NotifierService(rt, plugins=_http_plugins(resolver))
    service.start()
    try:
        rows = _final(rt, alarm_id, len(actions))
        _final(rt, control)
    finally:
        service.stop()
        receiver.stop()
    assert {r.status for r in rows} == {statuses.DEAD}
    for row in rows:
        (attempt,) = attempts(rt, row.id)
        assert attempt.outcome == "failed"
        assert attempt.status_code is None
        assert "allowed_networks" in attempt.error, attempt.error
    assert [r.path for r in receiver.bodies()] == ["/control"]


def _rebinding_receivers():
    good = Receiver(host="127.0.0.2")
    try:
        evil = Receiver(port=good.port, host="127.0.0.1")
    except OSError:
        good.stop()
        raise
    return good, evil


def test_rebinding_with_an_injected_resolver(sqlite_rt):
    rt = sqlite_rt
    rt.conf.set_override("allowed_networks", ["127.0.0.2/32"], "notifier")
    rt.conf.set_override("poll_interval", 0.05, group="notifier")
    good, evil = _rebinding_receivers()
    # A public-looking first answer would not be reachable here: the
    # first answer is the allowed 127.0.0.2, every later one 127.0.0.1.
    resolver = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    url = f"http://rebind.example.test:{good.port}/hook"
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    add_notification(rt, first, 1, [url])
    service = NotifierService(rt, plugins=_http_plugins(resolver))
    service.start()
    try:
        (delivered,) = _final(rt, first)
        add_notification(rt, second, 1, [url])
        (refused,) = _final(rt, second)
    finally:
        service.stop()
        good.stop()
        evil.stop()
    assert delivered.status == statuses.DELIVERED
    (received,) = good.bodies()
    assert received.headers["Host"] == f"rebind.example.test:{good.port}"
    assert received.json["alarm_id"] == first
    # The second attempt resolved to 127.0.0.1: refused, not sent.
    assert refused.status == statuses.DEAD
    assert "targets 127.0.0.1" in refused.last_error
    assert evil.bodies() == []
    # One resolution per attempt, by the injected resolver only.
    assert resolver.calls == ["rebind.example.test"] * 2


def test_rebinding_with_the_system_resolver(sqlite_rt, monkeypatch):
    """The check and the connection do not resolve the name twice."""
    rt = sqlite_rt
    rt.conf.set_override("allowed_networks", ["127.0.0.2/32"], "notifier")
    rt.conf.set_override("poll_interval", 0.05, group="notifier")
    good, evil = _rebinding_receivers()
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.2" if len(lookups) == 1 else "127.0.0.1"
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://rebind.example.test:{good.port}/hook"
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, [url])
    service = NotifierService(rt)
    service.start()
    try:
        (row,) = _final(rt, alarm_id)
    finally:
        service.stop()
        good.stop()
        evil.stop()
    assert evil.bodies() == []
    assert row.status == statuses.DELIVERED
    assert len(good.bodies()) == 1
    assert lookups == ["rebind.example.test"]


# -- https by name, connected by address ----------------------------------


class TlsReceiver:
    """An https server on 127.0.0.1 with a certificate for *names*."""

    def __init__(self, ca: trustme.CA, *names: str) -> None:
        self.server_names: list[str | None] = []
        self.hosts: list[str] = []
        cert = ca.issue_cert(*names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)

        def sni(sock: Any, name: str | None, ctx: Any) -> None:
            self.server_names.append(name)

        context.sni_callback = sni
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                receiver.hosts.append(self.headers["Host"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> Any:
                sock, addr = super().get_request()
                return context.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request: Any, client_address: Any):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("cert_name", ["hooks.example.test", "other.test"])
def test_https_by_name_to_the_checked_address(sqlite_rt, tmp_path, cert_name):
    rt = sqlite_rt
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    rt.conf.set_override("allowed_networks", ["127.0.0.0/8"], "notifier")
    rt.conf.set_override("poll_interval", 0.05, group="notifier")
    rt.conf.set_override(
        "rest_notifier_ca_bundle_certificate_path", str(bundle), "notifier"
    )
    rt.conf.set_override("max_attempts", 1, group="notifier")
    server = TlsReceiver(ca, cert_name)
    resolver = ScriptedResolver(["127.0.0.1"])
    url = f"https://hooks.example.test:{server.port}/hook"
    alarm_id = str(uuid.uuid4())
    add_notification(rt, alarm_id, 1, [url])
    service = NotifierService(rt, plugins=_http_plugins(resolver))
    service.start()
    try:
        if cert_name == "hooks.example.test":
            (row,) = _final(rt, alarm_id)
        else:

            def failed():
                rows = deliveries(rt, alarm_id)
                return rows and rows[0].attempts >= 1 and rows

            (row,) = wait_for(failed, timeout=20)
    finally:
        service.stop()
        server.stop()
    assert server.server_names[:1] == ["hooks.example.test"]
    if cert_name == "hooks.example.test":
        assert row.status == statuses.DELIVERED
        assert server.hosts == [f"hooks.example.test:{server.port}"]
    else:
        assert row.status != statuses.DELIVERED
        assert server.hosts == []
        assert "doesn't match 'other.test'" in (row.last_error or "")
    assert set(resolver.calls) == {"hooks.example.test"}
