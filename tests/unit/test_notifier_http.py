"""The http(s) plugin's options and answer parsing."""

from __future__ import annotations

import email.utils

import pytest

import notifiers
from alarmer import conf as aconf
from alarmer import timeutils
from notifiers import http


def test_retry_after_seconds_and_http_date():
    assert http.parse_retry_after("30") == 30.0
    assert http.parse_retry_after(" 2.5 ") == 2.5
    assert http.parse_retry_after("-4") == 0.0
    assert http.parse_retry_after(None) is None
    assert http.parse_retry_after("soon") is None
    when = timeutils.utcnow() + timeutils.dt.timedelta(seconds=120)
    value = http.parse_retry_after(email.utils.format_datetime(when))
    assert 100 < value <= 120


@pytest.mark.parametrize(
    ("query", "option", "expected"),
    [
        ("", True, True),
        ("", False, False),
        ("?aodh-alarm-ssl-verify=0", True, False),
        ("?aodh-alarm-ssl-verify=1", False, True),
        ("?x=1&aodh-alarm-ssl-verify=false", True, False),
    ],
)
def test_ssl_verify_option_and_per_url_override(
    make_conf, query, option, expected
):
    conf = make_conf(notifier={"rest_notifier_ssl_verify": option})
    plugin = http.HttpNotifier(conf)
    try:
        action = notifiers.parse_action(f"https://93.184.216.34/{query}")
        assert plugin._verify(action) is expected
    finally:
        plugin.close()


def test_ca_bundle_is_used_when_verifying(make_conf):
    conf = make_conf(
        notifier={"rest_notifier_ca_bundle_certificate_path": "/etc/ca.pem"}
    )
    plugin = http.HttpNotifier(conf)
    try:
        on = notifiers.parse_action("https://93.184.216.34/")
        off = notifiers.parse_action(
            "https://93.184.216.34/?aodh-alarm-ssl-verify=0"
        )
        assert plugin._verify(on) == "/etc/ca.pem"
        assert plugin._verify(off) is False
    finally:
        plugin.close()


def test_aodh_default_section_options_carry_over(tmp_path):
    path = tmp_path / "aodh-style.conf"
    path.write_text(
        "[DEFAULT]\n"
        f"data_dir = {tmp_path}\n"
        "rest_notifier_ssl_verify = false\n"
        "rest_notifier_certificate_file = /etc/client.pem\n"
    )
    conf = aconf.make_conf(config_files=[str(path)])
    assert conf.notifier.rest_notifier_ssl_verify is False
    assert conf.notifier.rest_notifier_certificate_file == "/etc/client.pem"


def test_secrets_are_masked_when_options_are_logged(make_conf, caplog):
    import logging

    conf = make_conf(
        notifier={
            "webhook_secret": "hunter2-global",
            "alarm_secrets": {"a1": "hunter2-alarm"},
        }
    )
    logger = logging.getLogger("test.options")
    with caplog.at_level(logging.DEBUG, logger="test.options"):
        conf.log_opt_values(logger, logging.DEBUG)
    assert "webhook_secret" in caplog.text
    assert "hunter2" not in caplog.text
