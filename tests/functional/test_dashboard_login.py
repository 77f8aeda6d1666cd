"""Signing in to the dashboard with an API key, in a real Chromium.

An API server in ``apikey`` mode; the browser sends no identity header:
it signs in on ``/dashboard/login``, uses the pages and a button, and
signs out.  The cookie's attributes and where it is (not) accepted are
checked from the browser and with plain HTTP requests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from alarmer import runtime
from alarmer.identity import apikeys
from api import identity
from api.server import ApiServer
from tests.functional.test_dashboard_browser import BY_METRICS

pytestmark = pytest.mark.slow


@pytest.fixture
def keyed_api(make_conf) -> Iterator[tuple[str, str, str]]:
    """An API in apikey mode; yields (base URL, member key, reader key)."""
    rt = runtime.build(
        make_conf(api={"auth_mode": "apikey", "port": 0}), migrate=True
    )
    member, _ = apikeys.create(
        rt.db, project_id="pk", user_id="um", roles=["member"]
    )
    reader, _ = apikeys.create(
        rt.db, project_id="pk", user_id="ur", roles=["reader"]
    )
    server = ApiServer(rt)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", member, reader
    finally:
        server.stop()
        rt.close()


def _alarm(base: str, key: str, name: str) -> str:
    bearer = {"Authorization": f"Bearer {key}"}
    r = requests.post(
        f"{base}/v1/metric",
        json={"archive_policy_name": "high"},
        headers=bearer,
    )
    assert r.status_code == 201, r.text
    body = {
        "name": name,
        "type": BY_METRICS,
        f"{BY_METRICS}_rule": {
            "metrics": [r.json()["id"]],
            "aggregation_method": "mean",
            "threshold": 50,
            "comparison_operator": "gt",
            "granularity": 1,
            "evaluation_periods": 3,
        },
    }
    r = requests.post(f"{base}/v2/alarms", json=body, headers=bearer)
    assert r.status_code == 201, r.text
    return str(r.json()["alarm_id"])


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/dashboard/login")
    page.fill("#credential", key)
    page.click("#sign-in")


def test_a_browser_signs_in_with_an_api_key_uses_a_button_and_signs_out(
    keyed_api, browser, artifacts
):
    base, member, _ = keyed_api
    alarm_id = _alarm(base, member, "keyed-alarm")
    context = browser.new_context()
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        # Without the cookie: 401, with the way to sign in.
        response = page.goto(f"{base}/dashboard/")
        assert response.status == 401
        page.click("#to-login")
        assert page.url == f"{base}/dashboard/login"
        # A wrong key is refused, nothing is kept.
        _sign_in(page, base, "alarmer_wrong")
        assert "unknown, revoked or expired" in page.inner_text("#login-error")
        assert context.cookies() == []
        # The member's key: the list, the alarm and its buttons.
        _sign_in(page, base, member)
        page.wait_for_url(f"{base}/dashboard/")
        assert "keyed-alarm" in page.content()
        (cookie,) = context.cookies()
        assert cookie["name"] == identity.DASHBOARD_COOKIE
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["secure"] is False  # plain HTTP here
        assert page.evaluate("document.cookie") == ""
        page.goto(f"{base}/dashboard/alarms/{alarm_id}")
        page.click("#toggle-enabled")
        page.wait_for_selector("#enabled:text('no')", timeout=10_000)
        r = requests.get(
            f"{base}/v2/alarms/{alarm_id}",
            headers={"X-Auth-Token": member},
        )
        assert r.json()["enabled"] is False
        page.screenshot(
            path=os.path.join(artifacts, "dashboard-signed-in.png")
        )
        # A script of the page without the CSRF token is not identified.
        status = page.evaluate(
            f"fetch('/v2/alarms/{alarm_id}/state', {{method: 'PUT',"
            " headers: {'Content-Type': 'application/json'},"
            " body: JSON.stringify('alarm')}).then(r => r.status)"
        )
        assert status == 401
        # Nor is the cookie an identity for the rest of the API.
        status = page.evaluate("fetch('/v1/metric').then(r => r.status)")
        assert status == 401
        # Signing out forgets the cookie.
        page.click("#sign-out")
        page.wait_for_url(f"{base}/dashboard/login")
        assert context.cookies() == []
        response = page.goto(f"{base}/dashboard/")
        assert response.status == 401
        assert errors == []
    finally:
        context.close()


def test_the_cookie_is_accepted_only_where_and_how_the_dashboard_uses_it(
    keyed_api,
):
    base, member, reader = keyed_api
    alarm_id = _alarm(base, member, "cookie-alarm")
    jar = {identity.DASHBOARD_COOKIE: member}
    csrf = {identity.CSRF_HEADER: identity.csrf_token(member)}
    state = f"{base}/v2/alarms/{alarm_id}/state"
    # Reads of the dashboard: the cookie alone.
    r = requests.get(f"{base}/dashboard/", cookies=jar)
    assert r.status_code == 200
    assert "cookie-alarm" in r.text
    assert identity.csrf_token(member) in r.text  # the page's token
    # The buttons' API: only with the page's token.
    assert requests.put(state, json="alarm", cookies=jar).status_code == 401
    bad = {identity.CSRF_HEADER: identity.csrf_token(reader)}
    r = requests.put(state, json="alarm", cookies=jar, headers=bad)
    assert r.status_code == 401
    r = requests.put(state, json="alarm", cookies=jar, headers=csrf)
    assert r.status_code == 200, r.text
    r = requests.get(state, headers={"X-Auth-Token": member})
    assert r.json() == "alarm"
    # Not the rest of the API, even with the token.
    r = requests.get(f"{base}/v1/metric", cookies=jar, headers=csrf)
    assert r.status_code == 401
    # A reader's cookie reads, and the API still refuses its writes.
    jar_r = {identity.DASHBOARD_COOKIE: reader}
    csrf_r = {identity.CSRF_HEADER: identity.csrf_token(reader)}
    assert requests.get(f"{base}/dashboard/", cookies=jar_r).ok
    r = requests.put(state, json="ok", cookies=jar_r, headers=csrf_r)
    assert r.status_code == 403
    # Signing out from another site, or without the token: refused.
    r = requests.post(
        f"{base}/dashboard/logout",
        cookies=jar,
        data={"csrf": identity.csrf_token(member)},
        headers={"Origin": "https://elsewhere.example"},
        allow_redirects=False,
    )
    assert r.status_code == 403
    r = requests.post(
        f"{base}/dashboard/logout",
        cookies=jar,
        data={"csrf": "nope"},
        allow_redirects=False,
    )
    assert r.status_code == 403
    r = requests.post(
        f"{base}/dashboard/logout",
        cookies=jar,
        data={"csrf": identity.csrf_token(member)},
        allow_redirects=False,
    )
    assert r.status_code == 303
    assert identity.DASHBOARD_COOKIE in r.headers["Set-Cookie"]
    assert "Max-Age=0" in r.headers["Set-Cookie"] or "expires" in (
        r.headers["Set-Cookie"].lower()
    )
    # An empty key is refused with the field named; nothing is set.
    r = requests.post(
        f"{base}/dashboard/login",
        data={"credential": " "},
        headers={"Origin": base},
        allow_redirects=False,
    )
    assert r.status_code == 400
    assert "credential" in r.text
    assert "Set-Cookie" not in r.headers
    # A sign-in naming no site (no Origin, no Referer) is refused, even
    # with a good key: another site's page could not have sent it.
    r = requests.post(
        f"{base}/dashboard/login",
        data={"credential": member},
        allow_redirects=False,
    )
    assert r.status_code == 403
    assert "Origin" in r.text
    assert "Set-Cookie" not in r.headers
    r = requests.post(
        f"{base}/dashboard/login",
        data={"credential": member},
        headers={"Referer": f"{base}/dashboard/login"},
        allow_redirects=False,
    )
    assert r.status_code == 303
    assert identity.DASHBOARD_COOKIE in r.headers["Set-Cookie"]


def test_noauth_mode_has_nothing_to_sign_in_to(live_api):
    r = requests.get(f"{live_api}/dashboard/login")
    assert r.status_code == 200
    assert "nothing" in r.text and "<form" not in r.text.split("<main")[1]
    r = requests.post(
        f"{live_api}/dashboard/login",
        data={"credential": "x"},
        headers={"Origin": live_api},
        allow_redirects=False,
    )
    assert r.status_code == 400
