"""A real Heat 27 stack scales through alarmer's ``trust+`` webhook.

Keystone 30 and Heat 27 (its own virtualenv, a RabbitMQ virtual host
and a PostgreSQL database of its own) run beside alarmer in keystone
mode, registered in the catalog as ``alarming``.  A member creates a
stack whose ``OS::Aodh::GnocchiAggregationByResourcesAlarm`` signals an
``OS::Heat::ScalingPolicy`` through ``trust+`` + its ``signal_url``;
alarmer's service user has only the ``service`` role, so Heat accepts
the signal because of the trust.  Deleting the stack deletes the alarm
and its trust.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa

pytest.importorskip("keystoneauth1")

from alarmer import conf as aconf
from alarmer import runtime
from alarmer.alarms import store as store_mod
from alarmer.identity import trusts
from tests.functional import peers

SERVICE_PASSWORD = "alarmer-heat-secret"
HEAT_PASSWORD = "heat-secret"
PROJECT = "demo"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

TEMPLATE = {
    "heat_template_version": "2018-08-31",
    "resources": {
        "asg": {
            "type": "OS::Heat::AutoScalingGroup",
            "properties": {
                "min_size": 1,
                "max_size": 3,
                "resource": {"type": "OS::Heat::RandomString"},
            },
        },
        "scaleup_policy": {
            "type": "OS::Heat::ScalingPolicy",
            "properties": {
                "adjustment_type": "change_in_capacity",
                "auto_scaling_group_id": {"get_resource": "asg"},
                "cooldown": 0,
                "scaling_adjustment": 1,
            },
        },
        "cpu_alarm_high": {
            "type": "OS::Aodh::GnocchiAggregationByResourcesAlarm",
            "properties": {
                "description": "Scale up if CPU > 80%",
                "metric": "cpu",
                "aggregation_method": "rate:mean",
                "granularity": 300,
                "evaluation_periods": 1,
                "threshold": 800000000.0,
                "resource_type": "instance",
                "comparison_operator": "gt",
                "query": {
                    "str_replace": {
                        "template": '{"=": {"server_group": "stack_id"}}',
                        "params": {"stack_id": {"get_param": "OS::stack_id"}},
                    }
                },
                "alarm_actions": [
                    {
                        "str_replace": {
                            "template": "trust+url",
                            "params": {
                                "url": {
                                    "get_attr": [
                                        "scaleup_policy",
                                        "signal_url",
                                    ]
                                }
                            },
                        }
                    }
                ],
            },
        },
    },
    "outputs": {"size": {"value": {"get_attr": ["asg", "current_size"]}}},
}


def _heat_venv() -> Any:
    try:
        return peers.peer_venv("heat")
    except (OSError, subprocess.CalledProcessError) as exc:
        peers._unavailable(f"Heat cannot be installed: {exc}")


def _rabbit(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True)


class Heat:
    """heat-engine and heat-wsgi-api for one test module."""

    def __init__(self, venv: Any, root: Any, ks: peers.Keystone) -> None:
        self.venv = venv
        self.root = root
        self.ks = ks
        self.port = peers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.vhost = f"heat-{uuid.uuid4().hex[:8]}"
        self.dbname = f"heat_{uuid.uuid4().hex[:8]}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        ks = self.ks
        ks.user("heat", HEAT_PASSWORD, "service", ["admin"])
        ks.role("heat_stack_user")
        domain = ks.api("POST", "/domains", json={"domain": {"name": "heat"}})[
            "domain"
        ]["id"]
        admin = ks.api(
            "POST",
            "/users",
            json={"user": {"name": "heat_domain_admin",
                           "password": HEAT_PASSWORD,
                           "domain_id": domain}},
        )["user"]["id"]  # fmt: skip
        ks.api("PUT", f"/domains/{domain}/users/{admin}/roles/"
               f"{ks.role('admin')}")  # fmt: skip
        service = ks.api(
            "POST", "/services",
            json={"service": {"type": "orchestration", "name": "heat"}},
        )["service"]  # fmt: skip
        ks.api(
            "POST", "/endpoints",
            json={"endpoint": {"service_id": service["id"],
                               "interface": "public",
                               "url": f"{self.url}/v1/%(tenant_id)s",
                               "region_id": "RegionOne"}},
        )  # fmt: skip
        _rabbit("add_vhost", self.vhost)
        _rabbit("set_permissions", "-p", self.vhost, "guest", ".*", ".*",
                ".*")  # fmt: skip
        engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {self.dbname}"))
        engine.dispose()
        auth = textwrap.dedent(
            f"""
            auth_url = {ks.url}/v3
            auth_type = password
            username = heat
            password = {HEAT_PASSWORD}
            user_domain_id = default
            """
        )
        conf = self.root / "heat.conf"
        paste = self.venv / "etc" / "heat" / "api-paste.ini"
        conf.write_text(
            textwrap.dedent(
                f"""
                [DEFAULT]
                log_file = {self.root / "heat.log"}
                transport_url = rabbit://guest:guest@127.0.0.1:5672/{self.vhost}
                stack_user_domain_name = heat
                stack_domain_admin = heat_domain_admin
                stack_domain_admin_password = {HEAT_PASSWORD}
                num_engine_workers = 1
                region_name_for_services = RegionOne
                heat_metadata_server_url = {self.url}
                heat_waitcondition_server_url = {self.url}/v1/waitcondition
                [paste_deploy]
                api_paste_config = {paste}
                [database]
                connection = postgresql+psycopg2://postgres@127.0.0.1:5432/{self.dbname}
                [clients_keystone]
                auth_uri = {ks.url}
                [keystone_authtoken]
                www_authenticate_uri = {ks.url}/v3
                project_name = service
                project_domain_id = default
                """
            )
            + auth
            + "[trustee]\n"
            + auth
        )
        env = {**os.environ}
        env.pop("PYTHONPATH", None)
        bin_dir = self.venv / "bin"
        subprocess.run(
            [str(bin_dir / "heat-manage"), "--config-file", str(conf),
             "db_sync"],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        out = (self.root / "heat-processes.out").open("wb")
        self.processes.append(
            subprocess.Popen(
                [str(bin_dir / "heat-engine"), "--config-file", str(conf)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
        self.processes.append(
            subprocess.Popen(
                [
                    str(bin_dir / "heat-wsgi-api"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--",
                    "--config-file",
                    str(conf),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
        peers.wait_http(self.url, timeout=120)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            _rabbit("delete_vhost", self.vhost)
        finally:
            engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(
                    sa.text(
                        f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)"
                    )
                )
            engine.dispose()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from api.server import ApiServer
    from notifiers.service import NotifierService

    if shutil.which("rabbitmqctl") is None:
        peers._unavailable("RabbitMQ (rabbitmqctl) is not available")
    venv = _heat_venv()
    root = tmp_path_factory.mktemp("heat-cloud")
    (root / "keystone").mkdir()
    with peers.running_keystone(root / "keystone") as ks:
        ks.user("alarmer", SERVICE_PASSWORD, "service", ["service"])
        ks.user("mia", "mia-pw", PROJECT, ["member"])
        credentials = textwrap.dedent(
            f"""
            auth_url = {ks.url}/v3
            auth_type = password
            username = alarmer
            password = {SERVICE_PASSWORD}
            project_name = service
            user_domain_id = default
            project_domain_id = default
            """
        )
        conf_file = root / "alarmer.conf"
        conf_file.write_text(
            textwrap.dedent(
                f"""
                [DEFAULT]
                data_dir = {root / "data"}
                [api]
                auth_mode = keystone
                port = 0
                [notifier]
                allowed_networks = 127.0.0.0/8
                notify_on_manual_state_change = true
                """
            )
            + f"[keystone_authtoken]\nwww_authenticate_uri = {ks.url}/v3\n"
            + credentials
            + "[service_credentials]\n"
            + credentials
        )
        conf = aconf.make_conf(config_files=[str(conf_file)])
        rt = runtime.build(conf, migrate=True)
        server = ApiServer(rt)
        server.start()
        notifier = NotifierService(rt)
        notifier.start()
        url = f"http://127.0.0.1:{server.port}"
        service = ks.api(
            "POST", "/services",
            json={"service": {"type": "alarming", "name": "aodh"}},
        )["service"]  # fmt: skip
        ks.api(
            "POST", "/endpoints",
            json={"endpoint": {"service_id": service["id"],
                               "interface": "public", "url": url,
                               "region_id": "RegionOne"}},
        )  # fmt: skip
        heat = Heat(venv, root, ks)
        try:
            heat.start()
            yield ks, heat, url, rt
        finally:
            heat.stop()
            notifier.stop()
            server.stop()
            rt.close()


def _wait(predicate: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.5)


def test_a_heat_stack_scales_through_a_trust(cloud):
    ks, heat, alarmer_url, rt = cloud
    token, _ = ks.token("mia", "mia-pw", PROJECT)
    project = ks.project(PROJECT)
    headers = {"X-Auth-Token": token}
    stacks = f"{heat.url}/v1/{project}/stacks"

    def engine_answers() -> bool:
        # The API is up before heat-engine listens on its queue.
        try:
            listed = requests.get(stacks, headers=headers, timeout=60)
        except requests.RequestException:
            return False
        return listed.status_code == 200

    assert _wait(engine_answers, timeout=240)
    made = requests.post(
        stacks,
        headers=headers,
        json={"stack_name": "asg", "template": TEMPLATE},
        timeout=180,
    )
    assert made.status_code == 201, made.text
    stack_id = made.json()["stack"]["id"]

    def stack() -> dict[str, Any]:
        answer = requests.get(
            f"{stacks}/asg/{stack_id}", headers=headers, timeout=60
        )
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()["stack"]
        return found

    def settled() -> dict[str, Any] | None:
        found = stack()
        return None if found["stack_status"].endswith("IN_PROGRESS") else found

    created = _wait(settled)
    assert created["stack_status"] == "CREATE_COMPLETE", created

    def size() -> int:
        for output in stack()["outputs"]:
            if output["output_key"] == "size":
                return int(output["output_value"])
        raise AssertionError("no size output")

    assert size() == 1
    alarms = requests.get(
        f"{alarmer_url}/v2/alarms", headers=headers, timeout=60
    ).json()
    (alarm,) = alarms
    (action,) = alarm["alarm_actions"]
    assert action.startswith(f"trust+{heat.url}/v1/{project}/stacks/asg/")
    assert action.endswith("/resources/scaleup_policy/signal")

    state = requests.put(
        f"{alarmer_url}/v2/alarms/{alarm['alarm_id']}/state",
        headers=headers,
        json="alarm",
        timeout=60,
    )
    assert state.status_code == 200, state.text
    assert _wait(lambda: size() == 2, timeout=120)

    # Heat created the alarm with mia's token: the trust is hers.
    row = store_mod.AlarmStore(rt.db).get(alarm["alarm_id"])
    (stored,) = row["alarm_actions"]
    trust_id = trusts.trust_id(stored)
    assert trust_id is not None and trusts.owned(stored)

    def trust_status() -> int:
        return requests.get(
            f"{ks.url}/v3/OS-TRUST/trusts/{trust_id}",
            headers={"X-Auth-Token": ks.admin_token()},
            timeout=30,
        ).status_code

    assert trust_status() == 200
    deleted = requests.delete(
        f"{stacks}/asg/{stack_id}", headers=headers, timeout=60
    )
    assert deleted.status_code == 204, deleted.text
    _wait(
        lambda: (
            requests.get(
                f"{alarmer_url}/v2/alarms/{alarm['alarm_id']}",
                headers=headers,
                timeout=60,
            ).status_code
            == 404
        )
    )
    # heat-engine sees the alarm gone before alarmer's answer, which
    # comes once the trust is deleted.
    assert _wait(lambda: trust_status() == 404, timeout=60)
