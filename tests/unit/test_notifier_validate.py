"""Action URLs are checked when an alarm is saved."""

from __future__ import annotations

import ipaddress

import pytest

import notifiers
from notifiers import base


@pytest.fixture
def conf(make_conf):
    return make_conf()


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hook",
        "https://93.184.216.34:8443/hook?aodh-alarm-ssl-verify=0",
        "log://",
        "HTTP://8.8.8.8/x",
        "http://[2001:4860:4860::8888]/x",
    ],
)
def test_valid_actions_are_accepted(conf, url):
    assert notifiers.validate_action(url, conf, None) is None


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "mailto:a@b.c", "zaqar://?topic=x"]
)
def test_unknown_scheme_is_unsupported(conf, url):
    with pytest.raises(notifiers.InvalidAction) as err:
        notifiers.validate_action(url, conf, None)
    assert err.value.message == f"Unsupported action {url}"


@pytest.mark.parametrize(
    "url", ["http://[::1/", "http://host:99999/", "no-scheme", "", "http://"]
)
def test_unparsable_action(conf, url):
    with pytest.raises(notifiers.InvalidAction) as err:
        notifiers.validate_action(url, conf, None)
    assert err.value.message.startswith("Unable to parse action")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1:8080/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://localhost/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
    ],
)
def test_internal_targets_are_refused(conf, url):
    with pytest.raises(notifiers.InvalidAction) as err:
        notifiers.validate_action(url, conf, None)
    message = err.value.message
    assert "allowed_networks" in message
    assert message.startswith(f"Action {url} targets ")


def test_allowed_networks_let_internal_targets_through(make_conf):
    conf = make_conf(
        notifier={"allowed_networks": ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]}
    )
    for url in ("http://127.0.0.1:9/", "http://[::1]/", "http://10.9.8.7/"):
        notifiers.validate_action(url, conf, None)
    with pytest.raises(notifiers.InvalidAction):
        notifiers.validate_action("http://192.168.1.1/", conf, None)


def test_mapped_ipv4_is_checked_against_ipv4_networks(make_conf):
    conf = make_conf(notifier={"allowed_networks": ["127.0.0.0/8"]})
    notifiers.validate_action("http://[::ffff:127.0.0.1]/", conf, None)


def test_unresolvable_host_is_accepted_at_save_time(conf):
    notifiers.validate_action("http://does-not-exist.invalid/", conf, None)


def test_unresolvable_host_is_refused_at_delivery(conf):
    action = notifiers.parse_action("http://does-not-exist.invalid/")
    with pytest.raises(notifiers.InvalidAction) as err:
        base.check_target(action, conf, unresolvable_ok=False)
    assert "Unable to resolve" in err.value.message


def test_every_resolved_address_is_checked(conf, monkeypatch):
    def fake_resolve(host, port, timeout):
        return [
            ipaddress.ip_address("8.8.8.8"),
            ipaddress.ip_address("10.0.0.1"),
        ]

    monkeypatch.setattr(base, "resolve", fake_resolve)
    with pytest.raises(notifiers.InvalidAction) as err:
        notifiers.validate_action("http://mixed.example/", conf, None)
    assert "10.0.0.1" in err.value.message


def test_messages_do_not_echo_passwords(conf):
    url = "http://user:hunter2@10.0.0.1/x?token=abc&a=b"
    with pytest.raises(notifiers.InvalidAction) as err:
        notifiers.validate_action(url, conf, None)
    assert "hunter2" not in err.value.message
    assert "abc" not in err.value.message
    assert "user:***@10.0.0.1" in err.value.message


def test_bad_allowed_network_names_the_option(make_conf):
    conf = make_conf(notifier={"allowed_networks": ["nope"]})
    with pytest.raises(ValueError, match="allowed_networks"):
        notifiers.validate_action("http://10.0.0.1/", conf, None)


def test_plugins_come_from_entry_points():
    classes = notifiers.plugin_classes()
    assert {"http", "https", "log"} <= set(classes)
    assert classes["http"].__module__ == "notifiers.http"


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://a..b/",
        "http://.",
        "http://\u3002/",
        "http://" + "a" * 64 + ".example/",
        "http://" + "a." * 200 + "example/",
        "http://\ud800/",
        "http://a\x00b/",
        "http://exa mple.com/",
        "http://example.com/\x7f",
    ],
)
def test_any_text_parses_or_is_invalid(conf, url):
    # These reached the resolver (an IDNA error in its thread, then a
    # KeyError) or urlsplit's ValueError before.
    with pytest.raises(notifiers.InvalidAction) as err:
        notifiers.validate_action(url, conf, None)
    assert err.value.message.startswith("Unable to parse action")
    with pytest.raises(notifiers.InvalidAction):
        notifiers.parse_action(url)
