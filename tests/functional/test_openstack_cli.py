"""The ``openstack``, ``aodh`` and ``gnocchi`` CLIs as operators run them.

python-openstackclient with the aodhclient and gnocchiclient plugins,
from their own virtualenv (:mod:`tests.functional.peers`), against
alarmer in ``[api] auth_mode = keystone``, registered in a real
Keystone's catalog as ``alarming`` and ``metric``.  Every command reads
its credentials from ``OS_*`` variables, finds alarmer through the
catalog and sends the user's token; what it writes is read back.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pytest.importorskip("keystonemiddleware")

from tests.functional import peers

#: The project each user of the tests is a member of.
PROJECTS = {"alice": "demo", "bob": "other"}
T0 = "2024-03-01T12:00:00+00:00"


class Site:
    """Keystone, alarmer in its catalog, and the CLIs' virtualenv."""

    def __init__(
        self, ks: peers.Keystone, url: str, venv: pathlib.Path
    ) -> None:
        self.ks = ks
        self.url = url
        self.venv = venv

    def env(self, user: str) -> dict[str, str]:
        """``OS_*`` variables of *user*'s password on its project."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("OS_")
        }
        env.pop("PYTHONPATH", None)
        env.update(
            OS_AUTH_TYPE="password",
            OS_AUTH_URL=f"{self.ks.url}/v3",
            OS_USERNAME=user,
            OS_PASSWORD=f"{user}-pw",
            OS_PROJECT_NAME=PROJECTS[user],
            OS_USER_DOMAIN_ID="default",
            OS_PROJECT_DOMAIN_ID="default",
            OS_REGION_NAME="RegionOne",
            OS_INTERFACE="public",
        )
        return env

    def run(
        self, env: dict[str, str], *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a CLI of the virtualenv (``args[0]``) with *env*."""
        done = subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def json(self, user: str, *args: str) -> Any:
        """Run a CLI as *user* with ``-f json``; the decoded output."""
        return json.loads(self.run(self.env(user), *args, "-f", "json").stdout)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    try:
        venv = peers.peer_venv("openstackclient")
    except (OSError, subprocess.CalledProcessError) as exc:
        peers._unavailable(f"the OpenStack CLIs cannot be installed: {exc}")
    root = tmp_path_factory.mktemp("openstack-cli")
    (root / "keystone").mkdir()
    (root / "alarmer").mkdir()
    with (
        peers.running_keystone(root / "keystone") as ks,
        peers.keystone_alarmer(
            ks, root / "alarmer", "alarmer", catalog=("alarming", "metric")
        ) as alarmer,
    ):
        ks.user("alice", "alice-pw", "demo", ["member"])
        ks.user("bob", "bob-pw", "other", ["member"])
        yield Site(ks, alarmer.url, venv)


def test_operators_drive_metrics_and_alarms_with_openstack(site):
    demo = site.ks.project("demo")
    policies = site.json("alice", "openstack", "metric", "archive-policy",
                         "list")  # fmt: skip
    assert {p["name"] for p in policies} >= {"low", "medium", "high", "bool"}

    resource = site.json(
        "alice", "openstack", "metric", "resource", "create",
        "--type", "generic", "vm-cli",
    )  # fmt: skip
    assert resource["original_resource_id"] == "vm-cli"
    assert resource["created_by_project_id"] == demo
    listed = site.json("alice", "openstack", "metric", "resource", "list")
    assert [r["id"] for r in listed] == [resource["id"]]

    metric = site.json(
        "alice", "openstack", "metric", "create", "--resource-id", "vm-cli",
        "--archive-policy-name", "medium", "--unit", "%", "cpu",
    )  # fmt: skip
    assert (metric["name"], metric["unit"]) == ("cpu", "%")
    assert metric["resource_id"] == resource["id"]
    site.run(
        site.env("alice"),
        "openstack", "metric", "measures", "add", "--resource-id", "vm-cli",
        "-m", f"{T0}@10", "-m", "2024-03-01T12:00:30+00:00@20",
        "-m", "2024-03-01T12:01:10+00:00@90", "cpu",
    )  # fmt: skip
    rows = site.json(
        "alice", "openstack", "metric", "measures", "show",
        "--resource-id", "vm-cli", "--granularity", "60", "--utc", "cpu",
    )  # fmt: skip
    assert [(r["granularity"], r["value"]) for r in rows] == [
        (60.0, 15.0),
        (60.0, 90.0),
    ]
    assert rows[0]["timestamp"].startswith("2024-03-01T12:00:00")
    by_gnocchi = site.json("alice", "gnocchi", "metric", "list")
    assert [m["id"] for m in by_gnocchi] == [metric["id"]]

    alarm = site.json(
        "alice", "openstack", "alarm", "create", "--name", "cpu-high",
        "--type", "gnocchi_resources_threshold", "--metric", "cpu",
        "--resource-id", resource["id"], "--resource-type", "generic",
        "--threshold", "80", "--comparison-operator", "gt",
        "--aggregation-method", "mean", "--granularity", "60",
        "--severity", "critical",
    )  # fmt: skip
    alarm_id = alarm["alarm_id"]
    assert alarm["project_id"] == demo
    shown = site.json("alice", "openstack", "alarm", "show", alarm_id)
    assert (shown["name"], shown["threshold"]) == ("cpu-high", 80.0)
    assert (shown["severity"], shown["granularity"]) == ("critical", 60)
    assert shown["resource_id"] == resource["id"]
    listed = site.json("alice", "openstack", "alarm", "list")
    assert [a["alarm_id"] for a in listed] == [alarm_id]
    by_aodh = site.json("alice", "aodh", "alarm", "list")
    assert [a["alarm_id"] for a in by_aodh] == [alarm_id]

    state = site.json("alice", "openstack", "alarm", "state", "get", alarm_id)
    assert state["state"] == "insufficient data"
    site.run(
        site.env("alice"),
        "openstack", "alarm", "state", "set", "--state", "alarm", alarm_id,
    )  # fmt: skip
    state = site.json("alice", "openstack", "alarm", "state", "get", alarm_id)
    assert state["state"] == "alarm"
    assert site.json("alice", "aodh", "alarm", "show", alarm_id)["state"] == (
        "alarm"
    )

    # Another project's member sees none of it.
    assert site.json("bob", "openstack", "alarm", "list") == []
    assert site.json("bob", "openstack", "metric", "list") == []
    hidden = site.run(
        site.env("bob"), "openstack", "alarm", "show", alarm_id,
        check=False,
    )  # fmt: skip
    assert hidden.returncode != 0 and "not found" in hidden.stderr.lower()

    site.run(site.env("alice"), "openstack", "alarm", "delete", alarm_id)
    assert site.json("alice", "openstack", "alarm", "list") == []
    gone = site.run(
        site.env("alice"), "openstack", "alarm", "show", alarm_id, check=False
    )
    assert gone.returncode != 0


def _revoked_token(site: Site) -> str:
    """A token of alice that Keystone has revoked (never used before)."""
    token, _ = site.ks.token("alice", "alice-pw", "demo")
    site.ks.revoke(token)
    return token


def test_a_bad_or_revoked_token_changes_nothing(site):
    alice = site.env("alice")
    before_alarms = site.json("alice", "openstack", "alarm", "list")
    before_metrics = site.json("alice", "openstack", "metric", "list")
    for token in ("not-a-token", "gAAAAABbogus", _revoked_token(site)):
        env = {
            key: value
            for key, value in alice.items()
            if key not in ("OS_USERNAME", "OS_PASSWORD", "OS_AUTH_URL",
                           "OS_PROJECT_NAME", "OS_USER_DOMAIN_ID",
                           "OS_PROJECT_DOMAIN_ID")
        }  # fmt: skip
        env.update(
            OS_AUTH_TYPE="admin_token", OS_TOKEN=token, OS_ENDPOINT=site.url
        )
        for args in (
            ("openstack", "alarm", "create", "--name", "x",
             "--type", "gnocchi_resources_threshold", "--metric", "cpu",
             "--resource-id", "r", "--resource-type", "generic",
             "--threshold", "1", "--aggregation-method", "mean"),
            ("openstack", "metric", "create", "sneaky"),
            ("aodh", "alarm", "list"),
            ("gnocchi", "metric", "list"),
        ):  # fmt: skip
            done = site.run(env, *args, check=False)
            assert done.returncode != 0, done.stdout
            assert "401" in done.stderr or "Unauthorized" in done.stderr, (
                done.stderr
            )
        # The same requests over HTTP: each dialect's envelope.
        headers = {"X-Auth-Token": token}
        v2 = requests.post(
            f"{site.url}/v2/alarms", json={"name": "x"}, headers=headers,
            timeout=30,
        )  # fmt: skip
        assert v2.status_code == 401
        assert "Keystone uri=" in v2.headers["WWW-Authenticate"]
        assert v2.json()["error_message"]["faultcode"] == "Client"
        v1 = requests.post(
            f"{site.url}/v1/metric", json={"name": "sneaky"},
            headers=headers, timeout=30,
        )  # fmt: skip
        assert v1.status_code == 401
        body = v1.json()
        assert set(body) == {"code", "title", "description"}
        assert (body["code"], body["title"]) == (401, "Unauthorized")
    assert site.json("alice", "openstack", "alarm", "list") == before_alarms
    assert site.json("alice", "openstack", "metric", "list") == before_metrics
