"""Measures in, transition by the evaluator, signed webhook out."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from alarmer.evaluator.service import EvaluatorService
from notifiers import signing
from notifiers import tables as models
from notifiers.service import NotifierService
from tests.functional.notifier_helpers import Receiver, wait_for

H = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "member"}

pytestmark = pytest.mark.slow


def test_transition_reaches_the_receiver_signed_and_in_order(
    live_api, sqlite_rt
):
    conf = sqlite_rt.conf
    conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    conf.set_override("webhook_secret", "e2e-secret", group="notifier")
    conf.set_override("refresh_interval", 0.05, group="evaluator")
    conf.set_override("check_interval", 0.05, group="coordination")
    receiver = Receiver()
    evaluator = EvaluatorService(sqlite_rt)
    notifier = NotifierService(sqlite_rt)
    evaluator.start()
    notifier.start()
    try:
        r = requests.post(
            f"{live_api}/v1/metric",
            json={"archive_policy_name": "high"},
            headers=H,
        )
        assert r.status_code == 201, r.text
        metric_id = r.json()["id"]
        hook = receiver.url(f"/scale/{uuid.uuid4()}")
        r = requests.post(
            f"{live_api}/v2/alarms",
            json={
                "name": "cpu-high",
                "type": "gnocchi_aggregation_by_metrics_threshold",
                "alarm_actions": [hook],
                "ok_actions": [hook],
                "gnocchi_aggregation_by_metrics_threshold_rule": {
                    "metrics": [metric_id],
                    "aggregation_method": "mean",
                    "threshold": 50,
                    "comparison_operator": "gt",
                    "granularity": 1,
                    "evaluation_periods": 3,
                },
            },
            headers=H,
        )
        assert r.status_code == 201, r.text
        alarm_id = r.json()["alarm_id"]
        for value, state in ((90, "alarm"), (10, "ok")):
            end = int(time.time()) + 1
            body = [{"timestamp": end - i, "value": value} for i in range(4)]
            r = requests.post(
                f"{live_api}/v1/metric/{metric_id}/measures",
                json=body,
                headers=H,
            )
            assert r.status_code == 202, r.text
            wait_for(
                lambda s=state: any(
                    g.json["current"] == s for g in receiver.bodies()
                ),
                timeout=15,
            )
            time.sleep(1.1)  # next values in fresh buckets
        got = receiver.bodies()
        assert [g.json["current"] for g in got] == ["alarm", "ok"]
        for seq, g in enumerate(got, start=1):
            headers = {k.lower(): v for k, v in g.headers.items()}
            assert headers["webhook-id"] == models.delivery_id(
                alarm_id, seq, hook
            )
            assert signing.verify(
                "e2e-secret",
                headers["webhook-id"],
                int(headers["webhook-timestamp"]),
                g.body,
                headers["webhook-signature"],
            )
            assert g.json["alarm_id"] == alarm_id
        r = requests.get(
            f"{live_api}/v2/alarms/{alarm_id}/deliveries", headers=H
        )
        assert r.status_code == 200
        wait_for(
            lambda: all(
                d["status"] == "delivered"
                for d in requests.get(
                    f"{live_api}/v2/alarms/{alarm_id}/deliveries", headers=H
                ).json()
            )
        )
    finally:
        notifier.stop()
        evaluator.stop()
        receiver.stop()
