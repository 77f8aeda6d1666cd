"""Signing in to the dashboard against a real Keystone.

alarmer runs in ``[api] auth_mode = keystone`` beside Keystone
(:func:`tests.functional.peers.keystone_alarmer`), with
``token_cache_time = -1`` so that keystonemiddleware asks Keystone about
the token on every request (a revoked token is otherwise accepted until
its cache entry ends).  ``alice`` is a member and ``rita`` a reader of
project ``demo``; ``bob`` a member of ``other``.  The form flow is
driven with plain HTTP (a :class:`requests.Session` keeps the cookie as
a browser does), then once in Chromium.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

pytest.importorskip("keystonemiddleware")

from api import identity
from tests.functional.notifier_helpers import Receiver, wait_for
from tests.functional.peers import (  # noqa: F401
    Keystone,
    keystone,
    keystone_alarmer,
)
from tests.functional.test_dashboard_browser import BY_METRICS

pytestmark = pytest.mark.slow

#: User -> (password, project, roles).
USERS = {
    "alice": ("alice-pw", "demo", ["member"]),
    "rita": ("rita-pw", "demo", ["reader"]),
    "bob": ("bob-pw", "other", ["member"]),
}
#: What only a writer's page shows.
WRITE_BUTTONS = (
    'id="toggle-enabled"',
    'id="set-state"',
    'class="actions"',
    'class="redeliver"',
)


class Site:
    """alarmer in keystone mode, its Keystone, and one alarm per project."""

    def __init__(self, ks: Keystone, url: str) -> None:
        self.ks = ks
        self.url = url
        self.alarms: dict[str, str] = {}

    def token(self, user: str) -> str:
        password, project, _ = USERS[user]
        token, _ = self.ks.token(user, password, project)
        return token

    def api(self, user: str, method: str, path: str, **kw: Any) -> Any:
        headers = {"X-Auth-Token": self.token(user)}
        return requests.request(
            method, self.url + path, headers=headers, timeout=30, **kw
        )

    def alarm(self, user: str, name: str, **extra: Any) -> str:
        metric = self.api(
            user, "POST", "/v1/metric", json={"archive_policy_name": "high"}
        )
        assert metric.status_code == 201, metric.text
        body = {
            "name": name,
            "type": BY_METRICS,
            f"{BY_METRICS}_rule": {
                "metrics": [metric.json()["id"]],
                "aggregation_method": "mean",
                "threshold": 50,
                "comparison_operator": "gt",
                "granularity": 1,
                "evaluation_periods": 3,
            },
            **extra,
        }
        created = self.api(user, "POST", "/v2/alarms", json=body)
        assert created.status_code == 201, created.text
        return str(created.json()["alarm_id"])

    def browser(self) -> requests.Session:
        """A session posting forms from this site, as a browser does."""
        http = requests.Session()
        http.headers["Origin"] = self.url
        return http

    def sign_in(self, http: requests.Session, **form: str) -> Any:
        return http.post(
            f"{self.url}/dashboard/login",
            data=form,
            allow_redirects=False,
            timeout=30,
        )

    def signed_in(self, user: str) -> requests.Session:
        """A browser signed in with *user*'s password on its project."""
        http = self.browser()
        password, project, _ = USERS[user]
        r = self.sign_in(
            http, username=user, password=password, project=project
        )
        assert r.status_code == 303, r.text
        return http


@pytest.fixture(scope="module")
def site(
    keystone: Keystone,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("dashboard-keystone")
    with keystone_alarmer(
        keystone,
        root,
        "alarmer-dash",
        authtoken={"token_cache_time": "-1"},
    ) as alarmer:
        made = Site(keystone, alarmer.url)
        for user, (password, project, roles) in USERS.items():
            keystone.user(user, password, project, roles)
        made.alarms["demo"] = made.alarm("alice", "demo-alarm")
        made.alarms["other"] = made.alarm("bob", "other-alarm")
        yield made


def _csrf(http: requests.Session) -> dict[str, str]:
    cookie = http.cookies.get(identity.DASHBOARD_COOKIE)
    assert cookie is not None
    return {identity.CSRF_HEADER: identity.csrf_token(cookie)}


def test_a_password_signs_in_to_the_projects_alarms_only(site, caplog):
    caplog.set_level(logging.DEBUG)
    http = site.browser()
    form = http.get(f"{site.url}/dashboard/login", timeout=30)
    assert form.status_code == 200
    assert 'id="username"' in form.text and 'id="password"' in form.text
    r = site.sign_in(
        http, username="alice", password="alice-pw", project="demo"
    )
    assert r.status_code == 303, r.text
    assert r.headers["Location"].endswith("/dashboard/")
    assert r.headers["Cache-Control"] == "no-store"
    set_cookie = r.headers["Set-Cookie"]
    attributes = [a.strip().lower() for a in set_cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "secure" not in attributes  # plain HTTP here
    # The cookie holds a token of alice on demo, not her password.
    token = http.cookies[identity.DASHBOARD_COOKIE]
    assert "alice-pw" not in set_cookie
    held = site.ks.validate(token)
    assert held["user"]["name"] == "alice"
    assert held["project"]["name"] == "demo"
    page = http.get(f"{site.url}/dashboard/", timeout=30)
    assert page.status_code == 200
    assert "demo-alarm" in page.text
    assert "other-alarm" not in page.text
    # Another project's alarm is not found.
    other = http.get(
        f"{site.url}/dashboard/alarms/{site.alarms['other']}", timeout=30
    )
    assert other.status_code == 404
    # Neither the password nor the token reached a log line.
    lines = [record.getMessage() for record in caplog.records]
    assert lines  # the requests were logged
    assert not [line for line in lines if "alice-pw" in line]
    assert not [line for line in lines if token in line]


def test_the_default_project_or_a_token_signs_in_too(site):
    # No project named: the user's default project.
    http = site.browser()
    r = site.sign_in(http, username="bob", password="bob-pw")
    assert r.status_code == 303, r.text
    page = http.get(f"{site.url}/dashboard/", timeout=30)
    assert "other-alarm" in page.text and "demo-alarm" not in page.text
    # A Keystone token instead of a password.
    http = site.browser()
    r = site.sign_in(http, credential=site.token("rita"))
    assert r.status_code == 303, r.text
    page = http.get(f"{site.url}/dashboard/", timeout=30)
    assert "demo-alarm" in page.text


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        (
            {
                "username": "alice",
                "password": "not-alices-pw",
                "project": "demo",
            },
            401,
            "user name, password or project is wrong",
        ),
        (
            {"username": "alice", "password": "alice-pw", "project": "other"},
            401,
            "user name, password or project is wrong",
        ),
        (
            {"username": "nobody", "password": "nobodys-pw"},
            401,
            "user name, password or project is wrong",
        ),
        ({"username": "alice", "password": ""}, 400, "password: enter"),
        ({}, 400, "credential: enter your user name and password"),
        ({"credential": "not-a-token"}, 401, "unknown, revoked or expired"),
    ],
)
def test_a_wrong_sign_in_is_refused_and_keeps_nothing(
    site, form, status, message
):
    http = site.browser()
    r = site.sign_in(http, **form)
    assert r.status_code == status, r.text
    assert message in r.text
    assert identity.DASHBOARD_COOKIE not in http.cookies
    if "password" in form:
        assert 'id="login-error"' in r.text
        if form["password"]:  # never shown again
            assert form["password"] not in r.text
    # Nothing changed: the list is the same for its member.
    listed = site.api("alice", "GET", "/v2/alarms").json()
    assert [a["alarm_id"] for a in listed] == [site.alarms["demo"]]


def test_a_form_from_another_site_is_refused(site):
    http = requests.Session()
    r = http.post(
        f"{site.url}/dashboard/login",
        data={"username": "alice", "password": "alice-pw"},
        headers={"Origin": "https://elsewhere.example"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 403
    assert "Set-Cookie" not in r.headers
    # Signing out from another site, or without the page's token.
    alice = site.signed_in("alice")
    token = alice.cookies[identity.DASHBOARD_COOKIE]
    for headers, csrf in (
        ({"Origin": "https://elsewhere.example"}, _csrf(alice)),
        ({}, {identity.CSRF_HEADER: "nope"}),
    ):
        r = alice.post(
            f"{site.url}/dashboard/logout",
            data={"csrf": csrf[identity.CSRF_HEADER]},
            headers=headers,
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 403
    site.ks.validate(token)  # still valid
    assert alice.get(f"{site.url}/dashboard/", timeout=30).ok


def test_a_reader_sees_no_buttons_and_cannot_write(site):
    rita = site.signed_in("rita")
    alarm_id = site.alarms["demo"]
    page = rita.get(f"{site.url}/dashboard/alarms/{alarm_id}", timeout=30)
    assert page.status_code == 200
    assert "demo-alarm" in page.text
    for button in WRITE_BUTTONS:
        assert button not in page.text
    r = rita.put(
        f"{site.url}/v2/alarms/{alarm_id}/state",
        json="alarm",
        headers=_csrf(rita),
        timeout=30,
    )
    assert r.status_code == 403, r.text
    state = site.api("alice", "GET", f"/v2/alarms/{alarm_id}/state").json()
    assert state == "insufficient data"


def test_a_member_disables_and_redelivers(site):
    receiver = Receiver()
    path = f"/hook/{uuid.uuid4()}"
    receiver.behaviour[path] = 400  # refused: dead at once
    try:
        alarm_id = site.alarm(
            "alice", "hooked", alarm_actions=[receiver.url(path)]
        )
        alice = site.signed_in("alice")
        page = alice.get(f"{site.url}/dashboard/alarms/{alarm_id}")
        assert 'id="toggle-enabled"' in page.text
        base = f"{site.url}/v2/alarms/{alarm_id}"
        # Without the page's token the cookie does not identify a write.
        assert alice.put(f"{base}/state", json="alarm").status_code == 401
        r = alice.put(f"{base}/state", json="alarm", headers=_csrf(alice))
        assert r.status_code == 200, r.text

        def deliveries() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = alice.get(
                f"{base}/deliveries", headers=_csrf(alice)
            ).json()
            return got

        wait_for(lambda: [d["status"] for d in deliveries()] == ["dead"])
        page = alice.get(f"{site.url}/dashboard/alarms/{alarm_id}")
        assert 'class="redeliver"' in page.text
        receiver.behaviour[path] = 200
        (dead,) = deliveries()
        r = alice.post(
            f"{base}/deliveries/{dead['delivery_id']}/redeliver",
            headers=_csrf(alice),
        )
        assert r.status_code < 300, r.text
        wait_for(lambda: deliveries()[0]["status"] == "delivered")
        (got,) = receiver.bodies(path)
        assert got.json["alarm_id"] == alarm_id
        # Enable / disable: the alarm's document, put back changed.
        alarm = alice.get(base, headers=_csrf(alice)).json()
        alarm["enabled"] = False
        r = alice.put(base, json=alarm, headers=_csrf(alice))
        assert r.status_code == 200, r.text
        alarm = site.api("alice", "GET", f"/v2/alarms/{alarm_id}").json()
        assert alarm["enabled"] is False
    finally:
        receiver.stop()


def test_signing_out_ends_the_token(site):
    alice = site.signed_in("alice")
    token = alice.cookies[identity.DASHBOARD_COOKIE]
    r = alice.post(
        f"{site.url}/dashboard/logout",
        data={"csrf": _csrf(alice)[identity.CSRF_HEADER]},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 303
    assert r.headers["Location"].endswith("/dashboard/login")
    assert identity.DASHBOARD_COOKIE not in alice.cookies
    # Keystone revoked it: a copy of the cookie is refused too.
    copy = requests.get(
        f"{site.url}/dashboard/",
        cookies={identity.DASHBOARD_COOKIE: token},
        timeout=30,
    )
    assert copy.status_code == 401
    refused = requests.get(
        f"{site.ks.url}/v3/auth/tokens",
        headers={
            "X-Auth-Token": site.ks.admin_token(),
            "X-Subject-Token": token,
        },
        timeout=30,
    )
    assert refused.status_code == 404


def test_a_revoked_token_signs_the_browser_out(site):
    alice = site.signed_in("alice")
    token = alice.cookies[identity.DASHBOARD_COOKIE]
    assert alice.get(f"{site.url}/dashboard/", timeout=30).ok
    site.ks.revoke(token)
    # The next request: 401, the cookie forgotten, the way to sign in.
    page = alice.get(f"{site.url}/dashboard/", timeout=30)
    assert page.status_code == 401
    assert 'id="to-login"' in page.text
    assert identity.DASHBOARD_COOKIE not in alice.cookies
    # The poll of the page too.
    poll = requests.get(
        f"{site.url}/dashboard/token",
        cookies={identity.DASHBOARD_COOKIE: token},
        timeout=30,
    )
    assert poll.status_code == 401
    forget = poll.headers["Set-Cookie"]
    assert forget.startswith(f"{identity.DASHBOARD_COOKIE}=;")
    assert "Max-Age=0" in forget


def test_a_browser_signs_in_and_is_signed_out_by_a_revocation(site, browser):
    context = browser.new_context()
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{site.url}/dashboard/login")
        page.fill("#username", "alice")
        page.fill("#password", "wrong")
        page.fill("#project", "demo")
        page.click("#sign-in")
        assert "wrong" in page.inner_text("#login-error")
        assert context.cookies() == []
        assert page.input_value("#username") == "alice"
        assert page.input_value("#password") == ""
        page.fill("#password", "alice-pw")
        page.click("#sign-in")
        page.wait_for_url(f"{site.url}/dashboard/")
        assert "demo-alarm" in page.content()
        assert "other-alarm" not in page.content()
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""
        # Revoked behind the page's back: its next poll signs it out.
        site.ks.revoke(cookie["value"])
        page.wait_for_selector("#to-login", timeout=15_000)
        assert context.cookies() == []
        page.click("#to-login")
        page.wait_for_url(f"{site.url}/dashboard/login")
        assert errors == []
    finally:
        context.close()
