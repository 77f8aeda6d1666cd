"""Shared bodies and headers of the v2 API tests."""

from __future__ import annotations

import copy
from typing import Any

MEMBER = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "member"}
READER = {"X-User-Id": "u2", "X-Project-Id": "p1", "X-Roles": "reader"}
OTHER = {"X-User-Id": "u3", "X-Project-Id": "p2", "X-Roles": "member"}
ADMIN = {"X-User-Id": "admin", "X-Project-Id": "padmin", "X-Roles": "admin"}
NOROLE = {"X-User-Id": "u4", "X-Project-Id": "p1", "X-Roles": "observer"}

RESOURCES_RULE = {
    "metric": "cpu",
    "resource_id": "r1",
    "resource_type": "instance",
    "aggregation_method": "mean",
    "threshold": 80,
}
BY_METRICS_RULE = {
    "metrics": ["5f8d7b8e-2f44-4d0a-9bd6-2f2f4b7fb001"],
    "aggregation_method": "max",
    "threshold": 5.5,
    "comparison_operator": "gt",
    "granularity": 300,
    "evaluation_periods": 3,
}
BY_RESOURCES_RULE = {
    "metric": "cpu",
    "resource_type": "instance",
    "query": '{"=": {"server_group": "g1"}}',
    "aggregation_method": "rate:mean",
    "threshold": 10,
}


def alarm_body(
    name: str = "cpu-high",
    alarm_type: str = "gnocchi_resources_threshold",
    **extra: Any,
) -> dict[str, Any]:
    """A valid POST body of *alarm_type*, with *extra* fields."""
    rules = {
        "gnocchi_resources_threshold": RESOURCES_RULE,
        "gnocchi_aggregation_by_metrics_threshold": BY_METRICS_RULE,
        "gnocchi_aggregation_by_resources_threshold": BY_RESOURCES_RULE,
        "composite": {
            "or": [
                {"type": "gnocchi_resources_threshold", **RESOURCES_RULE},
                {
                    "and": [
                        {
                            "type": "gnocchi_aggregation_by_metrics_threshold",
                            **BY_METRICS_RULE,
                        },
                        {
                            "type": "gnocchi_aggregation_by_resources_"
                            "threshold",
                            **BY_RESOURCES_RULE,
                        },
                    ]
                },
            ]
        },
    }
    body = {
        "name": name,
        "type": alarm_type,
        f"{alarm_type}_rule": copy.deepcopy(rules[alarm_type]),
    }
    body.update(extra)
    return body


def assert_envelope(response, status: int, *needles: str) -> str:
    """Check a 4xx answer: status, Aodh's envelope, message words."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    fault = response.get_json()["error_message"]
    assert fault["faultcode"] == "Client"
    assert fault["debuginfo"] is None
    for needle in needles:
        assert needle in fault["faultstring"], fault["faultstring"]
    return fault["faultstring"]


def count_alarms(client, headers=ADMIN) -> int:
    """Number of alarms in every project (admin view)."""
    response = client.get(
        "/v2/alarms?q.field=all_projects&q.value=true", headers=headers
    )
    assert response.status_code == 200
    return len(response.get_json())
