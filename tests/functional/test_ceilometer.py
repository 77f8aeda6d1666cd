"""The real Ceilometer 27 Gnocchi publisher against alarmer (noauth).

Ceilometer runs in its own cached virtualenv (``tests.functional.peers``)
with ``[service_credentials] auth_type = gnocchi-noauth``, its config
loaded through its own ``service.prepare_service``:

* ``ceilometer-upgrade`` creates (and patches) every resource type it
  knows, twice in a row;
* the publisher creates the resources of new instances and their
  metrics, then a second publisher process (a restarted worker, facing
  the archive policies and resource types that exist) goes on;
* the measures are read back, and a by-resources search on
  ``server_group`` finds the instances.

``publish_samples`` only logs Gnocchi errors: the publisher script fails
on any warning or error Ceilometer's or gnocchiclient's loggers emit,
not only on exceptions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import textwrap
import uuid

import pytest
import requests

from tests.functional import peers
from tests.functional.peers import peer_venv

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "adm", "X-Roles": "admin"}

_PUBLISH = textwrap.dedent(
    """
    import datetime, json, logging, sys, urllib.parse
    from ceilometer import sample, service
    from ceilometer.publisher import gnocchi

    class Fail(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.records = []
        def emit(self, record):
            self.records.append(record.getMessage())

    failures = Fail()
    conf = service.prepare_service(argv=[], config_files=[sys.argv[1]])
    for name in ("ceilometer", "gnocchiclient"):
        logging.getLogger(name).addHandler(failures)
    publisher = gnocchi.GnocchiPublisher(
        conf, urllib.parse.urlparse("gnocchi://?enable_filter_project=false")
    )
    samples = []
    for entry in json.loads(sys.argv[2]):
        samples.append(sample.Sample(
            name="cpu", type="cumulative", unit="ns",
            volume=entry["volume"], user_id=entry.get("user_id", "u1"),
            project_id=entry.get("project_id", "p1"),
            resource_id=entry["id"], timestamp=entry["timestamp"],
            resource_metadata={
                "host": "compute-1", "display_name": entry["id"],
                "flavor": {"id": "m1", "name": "m1.small"},
                "image_ref": "img", "user_metadata": {
                    "server_group": entry["group"]},
            },
        ))
    publisher.publish_samples(samples)
    problems = list(failures.records)
    sys.stdout.write(json.dumps(problems))
    sys.exit(1 if problems else 0)
    """
)


@pytest.fixture(scope="module")
def ceilometer():
    try:
        return peer_venv("ceilometer")
    except (OSError, subprocess.CalledProcessError) as exc:
        if os.environ.get("ALARMER_REQUIRE_BACKENDS") == "1":
            pytest.fail(f"Ceilometer cannot be installed: {exc}")
        pytest.skip(f"Ceilometer cannot be installed: {exc}")


def write_conf(tmp_path, url, credentials=None):
    """Ceilometer's configuration file in *tmp_path*: noauth against *url*,
    or the given ``[service_credentials]`` lines."""
    path = tmp_path / "ceilometer.conf"
    if credentials is None:
        credentials = f"""
            auth_type = gnocchi-noauth
            user_id = ceilometer
            project_id = service
            roles = admin
            endpoint = {url}
            """
    path.write_text(
        "[service_credentials]\n" + textwrap.dedent(credentials).strip()
    )
    return path


def keystone_conf(tmp_path, url, ks, user):
    """Ceilometer's configuration with Keystone credentials: its service
    user *user* (password ``<user>-pw``) is created in *ks* with only the
    ``service`` role; alarmer (*url*) is found in the catalog as
    ``metric``."""
    ks.user(user, f"{user}-pw", "service", ["service"])
    return write_conf(
        tmp_path,
        url,
        f"""
        auth_type = password
        auth_url = {ks.url}/v3
        username = {user}
        password = {user}-pw
        project_name = service
        user_domain_id = default
        project_domain_id = default
        interface = public
        region_name = RegionOne
        """,
    )


def keystone_publisher(tmp_path, url, ks, user):
    """Ceilometer's virtualenv and a configuration with Keystone
    credentials (see :func:`keystone_conf`), after one
    ``ceilometer-upgrade`` (the resource types it publishes to)."""
    try:
        venv = peers.peer_venv("ceilometer")
    except (OSError, subprocess.CalledProcessError) as exc:
        peers._unavailable(f"Ceilometer cannot be installed: {exc}")
    conf = keystone_conf(tmp_path, url, ks, user)
    upgrade(venv, conf)
    return venv, conf


def _run(venv, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(a) for a in args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=venv,
    )


def publish(venv, conf, entries):
    """Publish the ``cpu`` samples *entries* with Ceilometer's publisher."""
    done = _run(
        venv, venv / "bin" / "python", "-c", _PUBLISH, conf,
        json.dumps(entries),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def upgrade(venv, conf):
    """Run ``ceilometer-upgrade`` (its resource types and policies)."""
    upgraded = _run(
        venv, venv / "bin" / "ceilometer-upgrade", "--config-file", conf
    )
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "Traceback" not in upgraded.stderr, upgraded.stderr


def publish_busy_cpu(venv, conf, group, project_id, user_id, count=2):
    """Publish, as Ceilometer's compute agent would, the cumulative
    ``cpu`` (ns) of *count* new instances of server group *group* owned
    by *project_id*: one sample 300 s ago, one now, 10^12 ns apart, so
    that ``rate:mean`` over 300 s buckets is far above 8e8 (Heat's
    scale-up threshold) however it is normalised.

    :returns: the instances' ids.
    """
    now = dt.datetime.now(dt.UTC)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    entries = [
        {"id": vm, "group": group, "project_id": project_id,
         "user_id": user_id, "volume": volume,
         "timestamp": (now - dt.timedelta(seconds=age)).isoformat()}
        for vm in ids
        for age, volume in ((300, 1e9), (0, 1e12 + 1e9))
    ]  # fmt: skip
    publish(venv, conf, entries)
    return ids


def test_ceilometer_upgrade_and_publisher(ceilometer, live_api, tmp_path):
    upgrade_and_publish(ceilometer, write_conf(tmp_path, live_api), live_api)


def upgrade_and_publish(ceilometer, conf, live_api, headers=ADMIN):
    """Run ``ceilometer-upgrade`` twice and two publishers; read back."""
    for _ in range(2):
        upgrade(ceilometer, conf)
    types = requests.get(
        f"{live_api}/v1/resource_type", headers=headers, timeout=30
    ).json()
    names = {t["name"] for t in types}
    assert {
        "instance", "volume", "loadbalancer", "dns_zone", "volume_service",
    } <= names  # fmt: skip
    instance = next(t for t in types if t["name"] == "instance")
    assert instance["attributes"]["server_group"]["required"] is False

    t0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    group = str(uuid.uuid4())
    first = [
        {"id": f"vm-{i}", "group": group, "volume": 1e9 * i,
         "timestamp": t0.isoformat()}
        for i in (1, 2)
    ]  # fmt: skip
    publish(ceilometer, conf, first)
    # A restarted worker: policies and types exist, resources too.
    later = (t0 + dt.timedelta(minutes=5)).isoformat()
    second = [
        {"id": "vm-1", "group": group, "volume": 3e9, "timestamp": later},
        {"id": "vm-3", "group": group, "volume": 5e9, "timestamp": later},
    ]
    publish(ceilometer, conf, second)

    found = requests.post(
        f"{live_api}/v1/search/resource/instance",
        json={"=": {"server_group": group}},
        headers=headers,
        timeout=30,
    )
    assert found.status_code == 200, found.text
    by_name = {r["original_resource_id"]: r for r in found.json()}
    assert sorted(by_name) == ["vm-1", "vm-2", "vm-3"]
    assert by_name["vm-1"]["host"] == "compute-1"
    cpu = by_name["vm-1"]["metrics"]["cpu"]
    measures = requests.get(
        f"{live_api}/v1/metric/{cpu}/measures",
        params={"refresh": "true"},
        headers=headers,
        timeout=30,
    ).json()
    assert measures, "no measure of vm-1 was stored"
    assert max(m[2] for m in measures) == 3e9
