"""``trust+http://`` actions in keystone mode, against a real Keystone.

alarmer's service user has only the ``service`` role; a member of
project ``trusts`` saves alarms with trust actions.  The trust alarmer
creates is read back from Keystone; measures that Ceilometer's
publisher pushes for the alarm's server group make the evaluator fire
it, and the webhook's token is validated by Keystone as scoped to that
trust; deleting the action or the alarm deletes the trust.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pytest.importorskip("keystoneauth1")

from alarmer.alarms import store as store_mod
from alarmer.identity import trusts
from tests.functional import test_ceilometer as ceilo
from tests.functional.notifier_helpers import (
    Receiver,
    attempts,
    deliveries,
    wait_for,
)
from tests.functional.peers import (  # noqa: F401
    Keystone,
    KeystoneAlarmer,
    keystone,
    keystone_alarmer,
)

SERVICE_USER = "alarmer-trustee"
PROJECT = "trusts"
#: Seconds between two evaluations of an alarm: the instances Ceilometer
#: publishes are new resources of the alarm's group, read from the next
#: periodic evaluation on (as in Aodh).
EVALUATION_INTERVAL = 5
#: Heat's body for a scaling alarm (openstack-servers.md), without its
#: action, which the tests add.
HEAT_BODY: dict[str, Any] = {
    "description": "Scale up if CPU > 80%",
    "enabled": True,
    "ok_actions": [],
    "insufficient_data_actions": [],
    "repeat_actions": True,
    "severity": "low",
    "time_constraints": [],
    "gnocchi_aggregation_by_resources_threshold_rule": {
        "metric": "cpu",
        "query": '{"=": {"server_group": "stack-1"}}',
        "resource_type": "instance",
        "comparison_operator": "gt",
        "evaluation_periods": 1,
        "granularity": 300,
        "aggregation_method": "rate:mean",
        "threshold": 800000000.0,
    },
    "name": "asg-cpu_alarm_high-x1",
    "type": "gnocchi_aggregation_by_resources_threshold",
}


class Site:
    """Keystone, alarmer in keystone mode (API, evaluator, notifier), a
    receiver, and Ceilometer's publisher."""

    def __init__(
        self, alarmer: KeystoneAlarmer, hook: Receiver, ceilometer: Any
    ) -> None:
        self.ks = alarmer.ks
        self.url = alarmer.url
        self.rt = alarmer.rt
        self.hook = hook
        self.ceilometer = ceilometer
        self.users: dict[str, str] = {}

    def token(self, user: str) -> str:
        token, _ = self.ks.token(user, f"{user}-pw", PROJECT)
        return token

    def call(self, method: str, path: str, user: str, **kw: Any) -> Any:
        return requests.request(
            method,
            self.url + path,
            headers={"X-Auth-Token": self.token(user)},
            timeout=60,
            **kw,
        )

    def stored_actions(self, alarm_id: str) -> list[str]:
        row = store_mod.AlarmStore(self.rt.db).get(alarm_id)
        return [
            *row["ok_actions"],
            *row["alarm_actions"],
            *row["insufficient_data_actions"],
        ]

    def trust(self, trust_id: str) -> requests.Response:
        """Keystone's answer about *trust_id*, asked as ``admin``."""
        return requests.get(
            f"{self.ks.url}/v3/OS-TRUST/trusts/{trust_id}",
            headers={"X-Auth-Token": self.ks.admin_token()},
            timeout=30,
        )


@pytest.fixture(scope="module")
def site(
    keystone: Keystone,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    hook = Receiver()
    root = tmp_path_factory.mktemp("alarmer-trusts")
    try:
        with keystone_alarmer(
            keystone, root, SERVICE_USER, catalog=("metric",),
            evaluation_interval=EVALUATION_INTERVAL,
        ) as alarmer:  # fmt: skip
            publisher = ceilo.keystone_publisher(
                root, alarmer.url, keystone, "ceilometer-trusts"
            )
            made = Site(alarmer, hook, publisher)
            for user in ("tina", "tom"):
                made.users[user] = keystone.user(
                    user, f"{user}-pw", PROJECT, ["member"]
                )
            yield made
    finally:
        hook.stop()


def _body(
    site: Site, actions: list[str], name: str, group: str = "stack-1"
) -> dict[str, Any]:
    rule = {
        **HEAT_BODY["gnocchi_aggregation_by_resources_threshold_rule"],
        "query": json.dumps({"=": {"server_group": group}}),
    }
    return {
        **HEAT_BODY,
        "name": name,
        "alarm_actions": actions,
        "gnocchi_aggregation_by_resources_threshold_rule": rule,
    }


def _only_trust(site: Site, alarm_id: str) -> str:
    found = {trusts.trust_id(u) for u in site.stored_actions(alarm_id)}
    found.discard(None)
    assert len(found) == 1, found
    (trust_id,) = found
    assert trust_id is not None
    return trust_id


def test_trust_action_end_to_end(site):
    hook_url = site.hook.url("/scale")
    action = "trust+" + hook_url
    created = site.call(
        "POST",
        "/v2/alarms",
        "tina",
        json=_body(site, [action], "e2e", group="e2e-group"),
    )
    assert created.status_code == 201, created.text
    alarm = created.json()
    # The answer shows the action as sent, without the trust id.
    assert alarm["alarm_actions"] == [action]

    # Stored: the trust id alarmer created, marked as its own.
    trust_id = _only_trust(site, alarm["alarm_id"])
    (stored,) = site.stored_actions(alarm["alarm_id"])
    assert stored == trusts.with_trust(action, trust_id)
    assert trusts.owned(stored)
    # Keystone has it: from tina to alarmer's service user, on the
    # project, impersonating tina, with her role.
    answer = site.trust(trust_id)
    assert answer.status_code == 200, answer.text
    trust = answer.json()["trust"]
    assert trust["trustor_user_id"] == site.users["tina"]
    service_id = site.ks._find("users", SERVICE_USER)
    assert trust["trustee_user_id"] == service_id
    assert trust["project_id"] == site.ks.project(PROJECT)
    assert trust["impersonation"] is True
    assert "member" in {role["name"] for role in trust["roles"]}

    # Nowhere in the API: one alarm, the list, the complex query, the
    # history.
    alarm_id = alarm["alarm_id"]
    for method, path, body in (
        ("GET", f"/v2/alarms/{alarm_id}", None),
        ("GET", "/v2/alarms", None),
        ("POST", "/v2/query/alarms", {}),
        ("GET", f"/v2/alarms/{alarm_id}/history", None),
    ):
        shown = site.call(method, path, "tina", json=body)
        assert shown.status_code == 200, shown.text
        assert trust_id not in shown.text
        assert hook_url[len("http://") :] in shown.text

    # The group's instances get busy: Ceilometer publishes their CPU, the
    # evaluator fires the alarm, and the notification reaches the
    # receiver with a trust-scoped token.
    venv, conf = site.ceilometer
    ceilo.publish_busy_cpu(
        venv, conf, "e2e-group", site.ks.project(PROJECT), site.users["tina"]
    )
    received = wait_for(lambda: site.hook.bodies("/scale"), timeout=60)
    assert received[0].json["current"] == "alarm"
    assert received[0].json["alarm_id"] == alarm_id
    # An evaluation of the measures, not a state set by hand.
    reason = received[0].json["reason_data"]
    assert reason["type"] == "threshold"
    threshold = HEAT_BODY["gnocchi_aggregation_by_resources_threshold_rule"]
    assert reason["most_recent"] > threshold["threshold"]
    token = received[0].headers["X-Auth-Token"]
    validated = site.ks.validate(token)
    assert validated["OS-TRUST:trust"]["id"] == trust_id
    assert validated["OS-TRUST:trust"]["impersonation"] is True
    # Impersonation: the token is tina's, on the alarm's project.
    assert validated["user"]["id"] == site.users["tina"]
    assert validated["project"]["id"] == site.ks.project(PROJECT)
    # The delivery and its attempt are recorded; neither shows the trust.
    # (The alarm repeats its actions: a later batch of the same measures
    # may notify again.)
    delivery = deliveries(site.rt, alarm_id)[0]
    (attempt,) = attempts(site.rt, delivery.id)
    assert attempt.status_code == 200
    listed = site.call("GET", f"/v2/alarms/{alarm_id}/deliveries", "tina")
    assert listed.status_code == 200, listed.text
    assert listed.json() and trust_id not in listed.text

    # Deleting the alarm deletes the trust.
    deleted = site.call("DELETE", f"/v2/alarms/{alarm_id}", "tina")
    assert deleted.status_code == 204, deleted.text
    assert site.trust(trust_id).status_code == 404


def test_update_keeps_or_deletes_the_trust(site):
    action = "trust+" + site.hook.url("/kept")
    created = site.call(
        "POST", "/v2/alarms", "tina", json=_body(site, [action], "upd")
    )
    assert created.status_code == 201, created.text
    alarm = created.json()
    alarm_id = alarm["alarm_id"]
    trust_id = _only_trust(site, alarm_id)

    # aodhclient's update: the document read back, one field changed.
    # The action comes back without its trust id and keeps its trust.
    document = site.call("GET", f"/v2/alarms/{alarm_id}", "tina").json()
    document["severity"] = "critical"
    updated = site.call("PUT", f"/v2/alarms/{alarm_id}", "tina", json=document)
    assert updated.status_code == 200, updated.text
    assert updated.json()["severity"] == "critical"
    assert _only_trust(site, alarm_id) == trust_id
    assert site.trust(trust_id).status_code == 200

    # Another member's trust action: a trust of that member replaces the
    # unused one.
    other = "trust+" + site.hook.url("/other")
    document["alarm_actions"] = [other]
    document.pop("user_id")
    updated = site.call("PUT", f"/v2/alarms/{alarm_id}", "tom", json=document)
    assert updated.status_code == 200, updated.text
    new_trust = _only_trust(site, alarm_id)
    assert new_trust != trust_id
    assert site.trust(trust_id).status_code == 404
    assert (
        site.trust(new_trust).json()["trust"]["trustor_user_id"]
        == (site.users["tom"])
    )

    # No trust action left: the trust goes.
    document["alarm_actions"] = [site.hook.url("/plain")]
    updated = site.call("PUT", f"/v2/alarms/{alarm_id}", "tom", json=document)
    assert updated.status_code == 200, updated.text
    assert site.trust(new_trust).status_code == 404
    site.call("DELETE", f"/v2/alarms/{alarm_id}", "tom")


def test_a_given_trust_must_be_the_callers(site):
    # tina's own trust to alarmer, created at Keystone by hand: accepted
    # as given, and not deleted with the alarm (alarmer did not create
    # it).
    tina = site.token("tina")
    service_id = site.ks._find("users", SERVICE_USER)
    made = requests.post(
        f"{site.ks.url}/v3/OS-TRUST/trusts",
        headers={"X-Auth-Token": tina},
        json={
            "trust": {
                "trustor_user_id": site.users["tina"],
                "trustee_user_id": service_id,
                "project_id": site.ks.project(PROJECT),
                "impersonation": True,
                "roles": [{"name": "member"}],
            }
        },
        timeout=30,
    )
    assert made.status_code == 201, made.text
    own = made.json()["trust"]["id"]
    given = f"trust+http://{own}@127.0.0.1:{site.hook.port}/given"

    # tom may not use it: nothing is stored.
    before = site.call("GET", "/v2/alarms", "tom").json()
    refused = site.call(
        "POST", "/v2/alarms", "tom", json=_body(site, [given], "stolen")
    )
    assert refused.status_code == 400, refused.text
    reason = refused.json()["error_message"]["faultstring"]
    assert "alarm_actions[0]" in reason
    assert own not in refused.text
    assert site.call("GET", "/v2/alarms", "tom").json() == before

    accepted = site.call(
        "POST", "/v2/alarms", "tina", json=_body(site, [given], "given")
    )
    assert accepted.status_code == 201, accepted.text
    alarm_id = accepted.json()["alarm_id"]
    assert site.stored_actions(alarm_id) == [given]
    assert own not in accepted.text
    site.call("DELETE", f"/v2/alarms/{alarm_id}", "tina")
    assert site.trust(own).status_code == 200


def test_heat_scaling_alarm_is_created_as_heat_sends_it(site):
    # The request Heat 27 sends for OS::Aodh::
    # GnocchiAggregationByResourcesAlarm with alarm_actions
    # [trust+ + the scaling policy's signal_url], with the user's token.
    signal = (
        f"trust+http://127.0.0.1:{site.hook.port}/v1/"
        f"{site.ks.project(PROJECT)}/stacks/asg/stack-1/resources/"
        "scaleup_policy/signal"
    )
    created = site.call(
        "POST", "/v2/alarms", "tina", json=_body(site, [signal], "heat")
    )
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["alarm_id"]
    assert answer["alarm_actions"] == [signal]
    assert answer["repeat_actions"] is True
    trust_id = _only_trust(site, answer["alarm_id"])
    assert site.trust(trust_id).status_code == 200
    deleted = site.call("DELETE", f"/v2/alarms/{answer['alarm_id']}", "tina")
    assert deleted.status_code == 204
    assert site.trust(trust_id).status_code == 404


def test_a_trust_gone_is_a_failed_attempt_retried(site):
    action = "trust+" + site.hook.url("/gone")
    created = site.call(
        "POST", "/v2/alarms", "tina", json=_body(site, [action], "gone")
    )
    assert created.status_code == 201, created.text
    alarm_id = created.json()["alarm_id"]
    trust_id = _only_trust(site, alarm_id)
    # The trustor revokes the trust behind alarmer's back.
    revoked = requests.delete(
        f"{site.ks.url}/v3/OS-TRUST/trusts/{trust_id}",
        headers={"X-Auth-Token": site.token("tina")},
        timeout=30,
    )
    assert revoked.status_code == 204, revoked.text
    state = site.call(
        "PUT", f"/v2/alarms/{alarm_id}/state", "tina", json="alarm"
    )
    assert state.status_code == 200, state.text

    def failed() -> Any:
        for delivery in deliveries(site.rt, alarm_id):
            tried = attempts(site.rt, delivery.id)
            if tried:
                return delivery, tried
        return None

    delivery, tried = wait_for(failed, timeout=60)
    assert "trust-scoped token" in (tried[0].error or "")
    assert trust_id not in (tried[0].error or "")
    assert delivery.status != "delivered"
    assert delivery.next_attempt_at > tried[0].attempted_at
    assert site.hook.bodies("/gone") == []
    # Deleting the alarm with its trust already gone is no error.
    deleted = site.call("DELETE", f"/v2/alarms/{alarm_id}", "tina")
    assert deleted.status_code == 204, deleted.text
