"""``[api] auth_mode = keystone`` against a real Keystone.

alarmer's service user has only the ``service`` role (enough for
keystonemiddleware to validate tokens); users get ``member`` or
``reader`` on project ``demo``.  alarmer is registered in Keystone's
catalog as ``alarming`` and ``metric``, and the real aodhclient and
gnocchiclient find it there with a user's password.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pytest.importorskip("keystonemiddleware")

from tests.functional.peers import (  # noqa: F401
    Keystone,
    keystone,
    keystone_alarmer,
    peer_venv,
)

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


def _rule(metric_id: str) -> dict[str, Any]:
    return {
        "name": "cpu-high",
        "type": "gnocchi_resources_threshold",
        "gnocchi_resources_threshold_rule": {
            "metric": "cpu",
            "resource_id": metric_id,
            "resource_type": "generic",
            "threshold": 80,
            "comparison_operator": "gt",
            "aggregation_method": "mean",
            "granularity": 60,
        },
    }


class Cloud:
    """Keystone with alarmer registered, and the users of the tests."""

    def __init__(self, ks: Keystone, url: str) -> None:
        self.ks = ks
        self.url = url
        self.users: dict[str, str] = {}

    def token(self, user: str) -> str:
        """A token of *user* on project ``demo``."""
        token, _ = self.ks.token(user, f"{user}-pw", "demo")
        return token

    def session(self, user: str) -> Any:
        """A keystoneauth1 session of *user* on ``demo``."""
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        auth = v3.Password(
            auth_url=f"{self.ks.url}/v3",
            username=user,
            password=f"{user}-pw",
            project_name="demo",
            user_domain_id="default",
            project_domain_id="default",
        )
        return session.Session(auth=auth)


@pytest.fixture(scope="module")
def cloud(
    keystone: Keystone,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cloud]:
    root = tmp_path_factory.mktemp("alarmer-keystone")
    with keystone_alarmer(
        keystone, root, "alarmer", catalog=("alarming", "metric")
    ) as alarmer:
        made = Cloud(keystone, alarmer.url)
        for user, roles in (("alice", ["member"]), ("rita", ["reader"])):
            made.users[user] = keystone.user(user, f"{user}-pw", "demo", roles)
        made.users["bob"] = keystone.user("bob", "bob-pw", "other", ["member"])
        yield made


def _call(cloud: Cloud, method: str, path: str, token: str | None, **kw):
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["X-Auth-Token"] = token
    return requests.request(
        method, cloud.url + path, headers=headers, timeout=30, **kw
    )


@pytest.mark.parametrize(
    "token", [None, "not-a-token", "gAAAAABbogus-fernet-token"]
)
def test_without_a_valid_token_each_dialect_answers_401(cloud, token):
    for path, method, body in (
        ("/v2/alarms", "POST", _rule("m")),
        ("/v2/alarms", "GET", None),
        ("/v1/metric", "POST", {"name": "cpu"}),
        ("/v1/metric", "GET", None),
    ):
        response = _call(cloud, method, path, token, json=body)
        assert response.status_code == 401, response.text
        assert "Keystone uri=" in response.headers["WWW-Authenticate"]
        answer = response.json()
        if path.startswith("/v1"):
            assert answer["code"] == 401
            assert answer["title"] == "Unauthorized"
        else:
            assert answer["error_message"]["faultcode"] == "Client"
    # Nothing was created.
    alice = cloud.token("alice")
    assert _call(cloud, "GET", "/v2/alarms", alice).json() == []
    assert _call(cloud, "GET", "/v1/metric", alice).json() == []
    # The discovery documents stay public.
    root = _call(cloud, "GET", "/", None)
    assert root.status_code == 200 and root.json()["build"]


def test_an_expired_token_is_refused_in_each_dialect(tmp_path_factory):
    # A Keystone whose tokens live 15 s: a token valid when issued is
    # refused once it expired, and what it asks for is not done.
    root = tmp_path_factory.mktemp("expiring")
    (root / "keystone").mkdir()
    venv = peer_venv("keystone")
    ks = Keystone(venv, root / "keystone", token_expiration=15)
    ks.start()
    try:
        (root / "alarmer").mkdir()
        with keystone_alarmer(ks, root / "alarmer", "alarmer-exp") as alarmer:
            ks.user("erin", "erin-pw", "demo", ["member"])
            token, body = ks.token("erin", "erin-pw", "demo")
            expires = dt.datetime.fromisoformat(body["expires_at"])
            cloud = Cloud(ks, alarmer.url)
            # Valid while it lasts.
            listed = _call(cloud, "GET", "/v2/alarms", token)
            assert listed.status_code == 200, listed.text
            wait = (expires - dt.datetime.now(dt.UTC)).total_seconds()
            time.sleep(max(wait, 0) + 1.5)
            for path, method, body_ in (
                ("/v2/alarms", "POST", _rule("m")),
                ("/v1/metric", "POST", {"name": "cpu"}),
            ):
                refused = _call(cloud, method, path, token, json=body_)
                assert refused.status_code == 401, refused.text
                answer = refused.json()
                if path.startswith("/v1"):
                    assert answer["code"] == 401
                else:
                    assert answer["error_message"]["faultcode"] == "Client"
            fresh, _ = ks.token("erin", "erin-pw", "demo")
            assert _call(cloud, "GET", "/v2/alarms", fresh).json() == []
            assert _call(cloud, "GET", "/v1/metric", fresh).json() == []
    finally:
        ks.stop()


def test_identity_and_roles_come_from_the_token(cloud):
    alice = cloud.token("alice")
    demo = cloud.ks.project("demo")
    # Identity headers a client adds are dropped by auth_token.
    spoofed = {"X-Roles": "admin", "X-Project-Id": "someone-else"}
    metric = _call(
        cloud, "POST", "/v1/metric", alice, json={"name": "cpu"},
        headers=spoofed,
    )  # fmt: skip
    assert metric.status_code == 201, metric.text
    assert metric.json()["created_by_project_id"] == demo
    assert metric.json()["created_by_user_id"] == cloud.users["alice"]
    created = _call(
        cloud, "POST", "/v2/alarms", alice, json=_rule(metric.json()["id"])
    )
    assert created.status_code == 201, created.text
    alarm = created.json()
    assert (alarm["project_id"], alarm["user_id"]) == (
        demo,
        cloud.users["alice"],
    )
    status = _call(cloud, "GET", "/v1/status", alice, headers=spoofed)
    assert status.status_code == 403

    rita = cloud.token("rita")
    listed = _call(cloud, "GET", "/v2/alarms", rita).json()
    assert [a["alarm_id"] for a in listed] == [alarm["alarm_id"]]
    refused = _call(cloud, "POST", "/v2/alarms", rita, json=_rule("m"))
    assert refused.status_code == 403
    assert refused.json()["error_message"]["faultstring"] == (
        "RBAC Authorization Failed"
    )
    # Another project sees none of it.
    bob, _ = cloud.ks.token("bob", "bob-pw", "other")
    assert _call(cloud, "GET", "/v2/alarms", bob).json() == []
    missing = _call(cloud, "GET", f"/v2/alarms/{alarm['alarm_id']}", bob)
    assert missing.status_code == 404
    _call(cloud, "DELETE", f"/v2/alarms/{alarm['alarm_id']}", alice)


def test_real_clients_find_alarmer_in_the_catalog(cloud):
    from aodhclient import client as aodh_client
    from gnocchiclient import client as gnocchi_client

    gn = gnocchi_client.Client("1", session=cloud.session("alice"))
    metric = gn.metric.create(name="mem", archive_policy_name="medium")
    gn.metric.add_measures(
        metric["id"], [{"timestamp": T0.isoformat(), "value": 7.0}]
    )
    measures = gn.metric.get_measures(metric["id"], granularity=60)
    assert measures == [(T0, 60.0, 7.0)]
    assert gn.build.get() >= "4.2"

    aodh = aodh_client.Client("2", session=cloud.session("alice"))
    alarm = aodh.alarm.create(_rule(metric["id"]))
    assert aodh.alarm.get(alarm["alarm_id"])["name"] == "cpu-high"
    aodh.alarm.delete(alarm["alarm_id"])
    assert aodh.alarm.list() == []


def test_ceilometer_publishes_through_keystone(cloud, tmp_path):
    """Ceilometer with Keystone credentials (the service role only)."""
    from tests.functional import test_ceilometer as ceilo

    venv = ceilo.peer_venv("ceilometer")
    conf = ceilo.keystone_conf(tmp_path, cloud.url, cloud.ks, "ceilometer")
    token, _ = cloud.ks.token("ceilometer", "ceilometer-pw", "service")
    ceilo.upgrade_and_publish(venv, conf, cloud.url, {"X-Auth-Token": token})


def test_the_gnocchi_and_aodh_clis_with_keystone_credentials(cloud):
    """The real ``gnocchi`` and ``aodh`` CLIs, found through the catalog."""
    import json
    import os
    import pathlib
    import subprocess
    import sys

    bin_dir = pathlib.Path(sys.executable).parent
    env = {
        **os.environ,
        "OS_AUTH_TYPE": "password",
        "OS_AUTH_URL": f"{cloud.ks.url}/v3",
        "OS_USERNAME": "alice",
        "OS_PASSWORD": "alice-pw",
        "OS_PROJECT_NAME": "demo",
        "OS_USER_DOMAIN_ID": "default",
        "OS_PROJECT_DOMAIN_ID": "default",
        "OS_REGION_NAME": "RegionOne",
    }

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [str(bin_dir / args[0]), *args[1:], "-f", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    metric = cli("gnocchi", "metric", "create", "cli-metric")
    assert metric["name"] == "cli-metric"
    assert any(
        m["id"] == metric["id"] for m in cli("gnocchi", "metric", "list")
    )
    alarm = cli(
        "aodh", "alarm", "create", "--name", "cli-alarm",
        "--type", "gnocchi_resources_threshold", "--metric", "cpu",
        "--resource-id", metric["id"], "--resource-type", "generic",
        "--threshold", "5", "--aggregation-method", "mean",
    )  # fmt: skip
    shown = cli("aodh", "alarm", "show", alarm["alarm_id"])
    assert shown["name"] == "cli-alarm"
    assert shown["project_id"] == cloud.ks.project("demo")
