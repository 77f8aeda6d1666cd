"""``trust+http(s)://`` actions outside keystone mode: a clear 400."""

from __future__ import annotations

import pytest

from tests import envelopes
from tests.functional.v2_helpers import MEMBER, alarm_body, count_alarms


@pytest.mark.parametrize("scheme", ["trust+http", "trust+https"])
def test_a_trust_action_needs_keystone(client, scheme):
    url = f"{scheme}://heat.example/v1/signal?secret=s3cr3t"
    body = alarm_body(alarm_actions=[url])
    response = client.post("/v2/alarms", json=body, headers=MEMBER)
    reason = envelopes.message(response, 400)
    assert "auth_mode = keystone" in reason
    assert "alarm_actions" in reason
    assert "s3cr3t" not in response.get_data(as_text=True)
    assert count_alarms(client) == 0
