"""A real Heat 27 stack scales on the CPU Ceilometer publishes.

Keystone 30 and Heat 27 (its own virtualenv, a RabbitMQ virtual host
and a PostgreSQL database of its own) run beside alarmer in keystone
mode (API, evaluator and notifier), registered in the catalog as
``alarming`` and ``metric``.  A member creates the stack of the README
(its servers replaced by ``OS::Heat::RandomString``: there is no Nova
here); Heat creates its ``OS::Aodh::GnocchiAggregationByResourcesAlarm``
with the member's token, the action ``trust+`` + the scaling policy's
``signal_url``.  Ceilometer's real publisher then pushes the cumulative
CPU of instances of the stack's server group, as its compute agent
would for the group's servers; the evaluator fires the alarm, and the
notifier signals Heat with a trust-scoped token (alarmer's service user
has only the ``service`` role: its own token is refused).  The group
grows; deleting the stack deletes the alarm and its trust.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
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

from alarmer.alarms import store as store_mod
from alarmer.identity import trusts
from tests.functional import peers
from tests.functional import test_ceilometer as ceilo
from tests.functional.notifier_helpers import attempts, deliveries
from tests.functional.peers import keystone  # noqa: F401

SERVICE_USER = "alarmer-heat"
HEAT_PASSWORD = "heat-secret"
PROJECT = "demo"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
README = pathlib.Path(__file__).parents[2] / "README.md"
#: The README's group member, a server, and what stands for it here.
SERVER = re.compile(
    r"^ {8}type: OS::Nova::Server\n(?P<props>(?: {8,}.*\n)+)", re.MULTILINE
)
MEMBER = "        type: OS::Heat::RandomString\n"
#: Seconds between two evaluations of an alarm: the instances Ceilometer
#: publishes are new resources of the alarm's group, read from the next
#: periodic evaluation on (as in Aodh).
EVALUATION_INTERVAL = 5
#: Values for the README template's server parameters (unused here).
PARAMETERS = {"image": "cirros", "flavor": "m1.tiny", "network": "private"}


def readme_template() -> str:
    """The README's Heat template, its server replaced by a string.

    The server's ``metering.server_group`` metadata is what makes
    Ceilometer publish the group's id with each server's samples; the
    instances published by the test carry it the same way.
    """
    text = README.read_text(encoding="utf-8")
    (template,) = re.findall(
        r"^```yaml\n(heat_template_version:.*?)^```$",
        text,
        re.MULTILINE | re.DOTALL,
    )
    server = SERVER.search(template)
    assert server is not None, "the README's group has no server"
    assert (
        'metadata: {"metering.server_group": {get_param: "OS::stack_id"}}'
        in server["props"]
    )
    return template[: server.start()] + MEMBER + template[server.end() :]


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
        self.service_id: str | None = None

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
        self.service_id = ks.register(
            "orchestration", f"{self.url}/v1/%(tenant_id)s"
        )
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
        if self.service_id is not None:
            self.ks.api("DELETE", f"/services/{self.service_id}")
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


class Cloud:
    """Keystone, alarmer, Ceilometer's publisher and Heat."""

    def __init__(
        self, alarmer: peers.KeystoneAlarmer, heat: Heat, ceilometer: Any
    ) -> None:
        self.ks = alarmer.ks
        self.alarmer = alarmer
        self.heat = heat
        self.ceilometer = ceilometer


@pytest.fixture(scope="module")
def cloud(
    keystone: peers.Keystone,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cloud]:
    if shutil.which("rabbitmqctl") is None:
        peers._unavailable("RabbitMQ (rabbitmqctl) is not available")
    venv = _heat_venv()
    root = tmp_path_factory.mktemp("heat-cloud")
    with peers.keystone_alarmer(
        keystone, root, SERVICE_USER, catalog=("alarming", "metric"),
        evaluation_interval=EVALUATION_INTERVAL,
    ) as alarmer:  # fmt: skip
        publisher = ceilo.keystone_publisher(
            root, alarmer.url, keystone, "ceilometer-heat"
        )
        keystone.user("mia", "mia-pw", PROJECT, ["member"])
        heat = Heat(venv, root, keystone)
        try:
            heat.start()
            yield Cloud(alarmer, heat, publisher)
        finally:
            heat.stop()


def _wait(predicate: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.5)


def test_a_heat_stack_scales_on_published_cpu_through_a_trust(cloud):
    ks, heat = cloud.ks, cloud.heat
    alarmer_url = cloud.alarmer.url
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
        json={
            "stack_name": "asg",
            "template": readme_template(),
            "parameters": PARAMETERS,
        },
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
        # The group's members: the resources of its nested stack.
        answer = requests.get(
            f"{stacks}/asg/{stack_id}/resources",
            params={"nested_depth": 1},
            headers=headers,
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        return sum(
            1
            for found in answer.json()["resources"]
            if found.get("parent_resource") == "asg"
        )

    assert size() == 1
    # The alarm as Heat created it, with mia's token.
    alarms = requests.get(
        f"{alarmer_url}/v2/alarms", headers=headers, timeout=60
    ).json()
    (alarm,) = alarms
    alarm_id = alarm["alarm_id"]
    (action,) = alarm["alarm_actions"]
    signal_url = action[len("trust+") :]
    assert action.startswith(f"trust+{heat.url}/v1/{project}/stacks/asg/")
    assert action.endswith("/resources/scaleup_policy/signal")
    rule = alarm["gnocchi_aggregation_by_resources_threshold_rule"]
    assert rule["metric"] == "cpu"
    assert rule["aggregation_method"] == "rate:mean"
    assert rule["resource_type"] == "instance"
    assert stack_id in rule["query"]
    assert alarm["user_id"] == ks._find("users", "mia")
    row = store_mod.AlarmStore(cloud.alarmer.rt.db).get(alarm_id)
    (stored,) = row["alarm_actions"]
    trust_id = trusts.trust_id(stored)
    assert trust_id is not None and trusts.owned(stored)

    # alarmer's service user cannot signal with its own token: only the
    # trust can make the group grow.
    own, _ = ks.token(SERVICE_USER, f"{SERVICE_USER}-secret", "service")
    refused = requests.post(
        signal_url, headers={"X-Auth-Token": own}, json={}, timeout=60
    )
    assert refused.status_code == 403, refused.text
    assert size() == 1

    # The group's instances get busy: Ceilometer publishes their CPU
    # (the server group is the stack, as the servers' metadata says).
    venv, conf = cloud.ceilometer
    ceilo.publish_busy_cpu(
        venv, conf, stack_id, project, ks._find("users", "mia"), count=1
    )
    assert _wait(lambda: size() == 2, timeout=120)
    # The evaluator fired the alarm from the measures, and Heat
    # answered the trust-scoped signal.
    shown = requests.get(
        f"{alarmer_url}/v2/alarms/{alarm_id}", headers=headers, timeout=60
    ).json()
    assert shown["state"] == "alarm"
    history = requests.get(
        f"{alarmer_url}/v2/alarms/{alarm_id}/history",
        headers=headers,
        timeout=60,
    ).json()
    fired = [
        h
        for h in history
        if h["type"] == "state transition"
        and json.loads(h["detail"])["state"] == "alarm"
    ]
    assert fired, history
    delivery = deliveries(cloud.alarmer.rt, alarm_id)[0]
    assert attempts(cloud.alarmer.rt, delivery.id)[0].status_code == 200
    # The policy's cooldown (300 s) holds the group at two.
    assert size() == 2

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
                f"{alarmer_url}/v2/alarms/{alarm_id}",
                headers=headers,
                timeout=60,
            ).status_code
            == 404
        )
    )
    # heat-engine sees the alarm gone before alarmer's answer, which
    # comes once the trust is deleted.
    assert _wait(lambda: trust_status() == 404, timeout=60)
