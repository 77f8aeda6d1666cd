"""The forms of ``trust+http(s)://`` actions (pure functions)."""

from __future__ import annotations

import pytest

from alarmer.identity import trusts
from notifiers import redact

BARE = "trust+https://heat.example:8004/v1/p/stacks/s/signal?x=1"
OWNED = "trust+https://t-123:delete@heat.example:8004/v1/p/stacks/s/signal?x=1"
GIVEN = "trust+http://t-9@heat.example/hook"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (BARE, True),
        ("TRUST+HTTP://h/p", True),
        ("http://h/p", False),
        ("trust+zaqar://?queue_name=q", False),
    ],
)
def test_is_trust_url(url, expected):
    assert trusts.is_trust_url(url) is expected


def test_with_trust_stores_the_id_marked_as_owned():
    stored = trusts.with_trust(BARE, "t-123")
    assert stored == OWNED
    assert trusts.trust_id(stored) == "t-123"
    assert trusts.owned(stored)
    assert trusts.scrub(stored) == BARE


def test_a_given_trust_is_not_owned():
    assert trusts.trust_id(GIVEN) == "t-9"
    assert not trusts.owned(GIVEN)
    assert trusts.trust_id(BARE) is None
    assert trusts.trust_id("http://user:pw@h/p") is None
    assert trusts.scrub("http://user:pw@h/p") == "http://user:pw@h/p"


def test_target_is_the_plain_url_without_the_trust():
    target = trusts.target(OWNED)
    assert target.geturl() == (
        "https://heat.example:8004/v1/p/stacks/s/signal?x=1"
    )
    assert target.username is None
    assert trusts.target(GIVEN).geturl() == "http://heat.example/hook"


def test_owned_trusts_and_redact():
    assert trusts.owned_trusts([OWNED, GIVEN, BARE, "http://h/"]) == {"t-123"}
    assert "t-123" not in redact(OWNED)
    assert redact(OWNED).startswith("trust+https://***@heat.example")
    assert "t-9" not in redact(GIVEN)
    # Other URLs keep their user, not their password.
    assert redact("http://u:pw@h/p") == "http://u:***@h/p"
