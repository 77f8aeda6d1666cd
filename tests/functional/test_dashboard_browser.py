"""The dashboard in a real headless Chromium, driven by Playwright.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``), installed
by the session fixture when missing and when running as root (as CI
does); Playwright comes from PyPI and is pointed at that executable.
Without a browser the tests skip, except under
``ALARMER_REQUIRE_BACKENDS=1`` or ``CI``, where they fail.

The identity is sent as the noauth headers, on every request of the
browser context, as a proxy in front of the dashboard would.
Screenshots are kept in ``$ALARMER_TEST_ARTIFACTS`` (default
``test-artifacts/`` at the top of the tree).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from notifiers.service import NotifierService
from tests.functional.notifier_helpers import Receiver, wait_for

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
MEMBER = {"X-User-Id": "u1", "X-Project-Id": "p1", "X-Roles": "member"}
READER = {"X-User-Id": "u2", "X-Project-Id": "p1", "X-Roles": "reader"}
OTHER = {"X-User-Id": "u3", "X-Project-Id": "p2", "X-Roles": "member"}
BY_METRICS = "gnocchi_aggregation_by_metrics_threshold"


class Watched:
    """A page whose console errors and page errors are collected."""

    def __init__(self, browser: Any, headers: dict[str, str], **kw: Any):
        self.context = browser.new_context(extra_http_headers=headers, **kw)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on(
            "console",
            lambda m: m.type == "error" and self.errors.append(m.text),
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser) -> Iterator[Any]:
    opened: list[Watched] = []

    def _open(headers: dict[str, str], **kw: Any) -> Watched:
        w = Watched(browser, headers, **kw)
        opened.append(w)
        return w

    yield _open
    for w in opened:
        w.close()


def new_metric(base: str) -> str:
    r = requests.post(
        f"{base}/v1/metric",
        json={"archive_policy_name": "high"},
        headers=MEMBER,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def new_alarm(base: str, metric_id: str, name: str, **extra: Any) -> str:
    body = {
        "name": name,
        "type": BY_METRICS,
        f"{BY_METRICS}_rule": {
            "metrics": [metric_id],
            "aggregation_method": "mean",
            "threshold": 50,
            "comparison_operator": "gt",
            "granularity": 1,
            "evaluation_periods": 3,
        },
        **extra,
    }
    r = requests.post(f"{base}/v2/alarms", json=body, headers=MEMBER)
    assert r.status_code == 201, r.text
    return r.json()["alarm_id"]


def set_state(base: str, alarm_id: str, state: str) -> None:
    r = requests.put(
        f"{base}/v2/alarms/{alarm_id}/state", json=state, headers=MEMBER
    )
    assert r.status_code == 200, r.text


def test_pages_load_without_console_errors(live_api, open_page):
    metric_id = new_metric(live_api)
    alarm_id = new_alarm(live_api, metric_id, "load-check")
    w = open_page(MEMBER)
    for path in (
        "/dashboard/",
        f"/dashboard/alarms/{alarm_id}",
        "/dashboard/deliveries",
    ):
        response = w.page.goto(f"{live_api}{path}")
        assert response.status == 200, path
        w.page.wait_for_load_state("networkidle")
    assert w.errors == []
    # Keyboard: the skip link comes first and moves to the content.
    w.page.keyboard.press("Tab")
    focused = w.page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"


def test_list_filters_counts_and_pages(live_api, open_page):
    metric_id = new_metric(live_api)
    ids = [new_alarm(live_api, metric_id, f"web-{i:02d}") for i in range(55)]
    for alarm_id in ids[:3]:
        set_state(live_api, alarm_id, "alarm")
    new_alarm(live_api, metric_id, "db-primary", severity="critical")
    w = open_page(MEMBER)
    w.page.goto(f"{live_api}/dashboard/")
    assert w.page.inner_text("[data-count='alarm']") == "3"
    assert w.page.inner_text("[data-count='insufficient data']") == "53"
    assert w.page.locator("tbody tr[data-alarm-id]").count() == 50
    # Next page: the remaining six, none repeated.
    first = set(
        w.page.locator("tbody tr[data-alarm-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.alarmId)"
        )
    )
    w.page.click("a[rel=next]")
    rest = set(
        w.page.locator("tbody tr[data-alarm-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.alarmId)"
        )
    )
    assert len(rest) == 6 and not first & rest
    assert w.page.locator("a[rel=next]").count() == 0
    # Filter by state with the form.
    w.page.goto(f"{live_api}/dashboard/")
    w.page.select_option("select[name=state]", "alarm")
    w.page.click("form.filters button[type=submit]")
    states = w.page.locator("tbody tr[data-alarm-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.state)"
    )
    assert states == ["alarm"] * 3
    # Severity and name search.
    w.page.goto(f"{live_api}/dashboard/?severity=critical")
    names = w.page.locator("tbody tr[data-alarm-id] a").all_inner_texts()
    assert names == ["db-primary"]
    w.page.goto(f"{live_api}/dashboard/")
    w.page.fill("input[name=q]", "web-1")
    w.page.keyboard.press("Enter")
    w.page.wait_for_url("**q=web-1**")
    names = w.page.locator("tbody tr[data-alarm-id] a").all_inner_texts()
    assert sorted(names) == [f"web-{i}" for i in range(10, 20)]
    assert w.errors == []


def test_live_transition_appears_without_reload(live_api, open_page):
    metric_id = new_metric(live_api)
    alarm_id = new_alarm(live_api, metric_id, "live-one")
    w = open_page(MEMBER)
    w.page.goto(f"{live_api}/dashboard/")
    w.page.evaluate("window.__sameDocument = true")
    row = f"tr[data-alarm-id='{alarm_id}']"
    assert w.page.get_attribute(row, "data-state") == "insufficient data"
    set_state(live_api, alarm_id, "alarm")
    w.page.wait_for_selector(f"{row}[data-state='alarm']", timeout=10_000)
    assert w.page.inner_text("[data-count='alarm']") == "1"
    # Same document: no navigation happened.
    assert w.page.evaluate("window.__sameDocument") is True
    # And on the alarm's own page.
    w.page.goto(f"{live_api}/dashboard/alarms/{alarm_id}")
    w.page.evaluate("window.__sameDocument = true")
    set_state(live_api, alarm_id, "ok")
    w.page.wait_for_selector("#alarm-state[data-state='ok']", timeout=10_000)
    assert w.page.evaluate("window.__sameDocument") is True
    assert w.errors == []


def test_plot_draws_values_threshold_and_transitions(
    live_api, open_page, artifacts
):
    metric_id = new_metric(live_api)
    alarm_id = new_alarm(live_api, metric_id, "cpu-high")
    now = int(time.time())
    points = [{"timestamp": now - 40 + i, "value": 30 + i} for i in range(40)]
    r = requests.post(
        f"{live_api}/v1/metric/{metric_id}/measures",
        json=points,
        headers=MEMBER,
    )
    assert r.status_code == 202, r.text
    set_state(live_api, alarm_id, "alarm")
    set_state(live_api, alarm_id, "ok")
    w = open_page(MEMBER, viewport={"width": 1100, "height": 900})
    w.page.goto(f"{live_api}/dashboard/alarms/{alarm_id}?range=1h")
    w.page.wait_for_function("window.alarmerPlot !== undefined")
    drawn = w.page.evaluate(
        "({times: Array.from(window.alarmerPlot.times),"
        " values: Array.from(window.alarmerPlot.values),"
        " threshold: Array.from(window.alarmerPlot.threshold),"
        " marks: window.alarmerPlot.marks})"
    )
    # The drawn values are the stored ones, at their bucket starts.
    by_time = dict(zip(drawn["times"], drawn["values"], strict=True))
    for p in points:
        assert by_time[float(p["timestamp"])] == p["value"]
    assert set(drawn["threshold"]) == {50}
    # Both transitions are drawn, in order, as vertical marks.
    assert [m["state"] for m in drawn["marks"]] == ["alarm", "ok"]
    assert drawn["marks"][0]["x"] <= drawn["marks"][1]["x"]
    assert w.page.get_attribute("#plot", "data-marks-drawn") == "2"
    assert "mean of metric" in w.page.inner_text("#sentence")
    assert "> 50" in w.page.inner_text("#sentence")
    w.page.screenshot(
        path=os.path.join(artifacts, "dashboard-alarm.png"), full_page=True
    )
    # Phone width, dark theme: still drawn, no horizontal overflow.
    phone = open_page(
        MEMBER,
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
    )
    phone.page.goto(f"{live_api}/dashboard/alarms/{alarm_id}?range=1h")
    phone.page.wait_for_function("window.alarmerPlot !== undefined")
    width = phone.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    background = phone.page.evaluate(
        "getComputedStyle(document.body).backgroundColor"
    )
    assert background == "rgb(13, 17, 23)"
    phone.page.screenshot(
        path=os.path.join(artifacts, "dashboard-alarm-phone-dark.png")
    )
    w.page.goto(f"{live_api}/dashboard/")
    w.page.screenshot(path=os.path.join(artifacts, "dashboard-list.png"))
    assert w.errors == [] and phone.errors == []


def test_redeliver_a_dead_letter_from_the_page(live_api, sqlite_rt, open_page):
    conf = sqlite_rt.conf
    conf.set_override("allowed_networks", ["127.0.0.0/8"], group="notifier")
    conf.set_override("notify_on_manual_state_change", True, group="notifier")
    receiver = Receiver()
    path = f"/hook/{uuid.uuid4()}"
    receiver.behaviour[path] = 400  # refused: dead at once
    notifier = NotifierService(sqlite_rt)
    notifier.start()
    try:
        metric_id = new_metric(live_api)
        alarm_id = new_alarm(
            live_api,
            metric_id,
            "hooked",
            alarm_actions=[receiver.url(path)],
        )
        set_state(live_api, alarm_id, "alarm")

        def deliveries() -> list[dict[str, Any]]:
            return requests.get(
                f"{live_api}/v2/alarms/{alarm_id}/deliveries", headers=MEMBER
            ).json()

        wait_for(lambda: [d["status"] for d in deliveries()] == ["dead"])
        w = open_page(MEMBER)
        w.page.goto(f"{live_api}/dashboard/alarms/{alarm_id}")
        button = w.page.locator("button.redeliver")
        assert button.count() == 1
        receiver.behaviour[path] = 200
        button.click()
        wait_for(lambda: deliveries()[0]["status"] == "delivered")
        # Only accepted deliveries are recorded: the redelivered one.
        (got,) = receiver.bodies(path)
        assert got.json["alarm_id"] == alarm_id
        assert got.json["current"] == "alarm"
        # The global view lists it too, without the button now.
        w.page.goto(f"{live_api}/dashboard/deliveries")
        assert w.page.locator("button.redeliver").count() == 0
        assert w.errors == []
    finally:
        notifier.stop()
        receiver.stop()


def test_reader_sees_no_write_buttons(live_api, open_page):
    metric_id = new_metric(live_api)
    alarm_id = new_alarm(live_api, metric_id, "read-only")
    w = open_page(READER)
    w.page.goto(f"{live_api}/dashboard/alarms/{alarm_id}")
    assert w.page.inner_text("h1").startswith("read-only")
    assert w.page.locator("section.actions").count() == 0
    assert w.page.locator("#toggle-enabled, #set-state").count() == 0
    # The API refuses a reader's write even if a button were forged.
    status = w.page.evaluate(
        f"fetch('/v2/alarms/{alarm_id}/state', {{method: 'PUT',"
        " headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify('alarm')}).then(r => r.status)"
    )
    assert status == 403


def test_member_can_disable_and_set_state(live_api, open_page):
    metric_id = new_metric(live_api)
    alarm_id = new_alarm(live_api, metric_id, "toggled")
    w = open_page(MEMBER)
    w.page.goto(f"{live_api}/dashboard/alarms/{alarm_id}")
    w.page.click("#toggle-enabled")
    w.page.wait_for_selector("#enabled:text('no')", timeout=10_000)
    r = requests.get(f"{live_api}/v2/alarms/{alarm_id}", headers=MEMBER)
    assert r.json()["enabled"] is False
    w.page.select_option("#new-state", "alarm")
    w.page.click("#set-state")
    w.page.wait_for_selector("#alarm-state[data-state='alarm']")
    r = requests.get(f"{live_api}/v2/alarms/{alarm_id}", headers=MEMBER)
    assert r.json()["state"] == "alarm"
    assert w.errors == []


def test_another_project_sees_nothing(live_api, open_page):
    metric_id = new_metric(live_api)
    alarm_id = new_alarm(live_api, metric_id, "secret-name")
    w = open_page(OTHER)
    w.page.goto(f"{live_api}/dashboard/")
    assert w.page.locator("tbody tr[data-alarm-id]").count() == 0
    assert "secret-name" not in w.page.content()
    assert w.page.inner_text("[data-count='insufficient data']") == "0"
    response = w.page.goto(f"{live_api}/dashboard/alarms/{alarm_id}")
    assert response.status == 404
    assert "secret-name" not in w.page.content()
    token = w.page.goto(f"{live_api}/dashboard/token?alarm={alarm_id}")
    assert token.status == 404


def test_no_identity_is_refused(live_api, open_page):
    w = open_page({})
    response = w.page.goto(f"{live_api}/dashboard/")
    assert response.status == 401


def test_shipped_chart_library_has_its_licence():
    static = os.path.join(ROOT, "api", "dashboard", "static", "vendor")
    licence = os.path.join(static, "uplot", "LICENSE")
    with open(licence, encoding="utf-8") as f:
        assert "MIT License" in f.read()
    with open(os.path.join(static, "uplot", "VERSION"), encoding="utf-8") as f:
        assert "MIT" in f.read()


def test_browse_resources_and_plot_a_metric(live_api, open_page):
    rid = str(uuid.uuid4())
    r = requests.post(
        f"{live_api}/v1/resource/generic",
        json={
            "id": rid,
            "project_id": "p1",
            "metrics": {"cpu": {"archive_policy_name": "medium"}},
        },
        headers=MEMBER,
    )
    assert r.status_code == 201, r.text
    metric_id = r.json()["metrics"]["cpu"]
    now = int(time.time()) // 300 * 300
    r = requests.post(
        f"{live_api}/v1/metric/{metric_id}/measures",
        json=[{"timestamp": now - 300 * i, "value": i} for i in range(6)],
        headers=MEMBER,
    )
    assert r.status_code == 202, r.text
    w = open_page(MEMBER)
    w.page.goto(f"{live_api}/dashboard/resources?q={rid[:8]}")
    assert w.page.locator("tr[data-resource-id]").count() == 1
    w.page.click("tr[data-resource-id] a")
    w.page.wait_for_function("window.alarmerPlot !== undefined")
    drawn = w.page.evaluate(
        "({times: Array.from(window.alarmerPlot.times),"
        " values: Array.from(window.alarmerPlot.values)})"
    )
    got = dict(zip(drawn["times"], drawn["values"], strict=True))
    for i in range(6):
        assert got[float(now - 300 * i)] == i
    # Another granularity of its policy.
    w.page.select_option("select[name=granularity]", "3600")
    w.page.click("form.filters button[type=submit]")
    w.page.wait_for_url("**granularity=3600**")
    w.page.wait_for_function("window.alarmerPlot !== undefined")
    assert w.errors == []
    # Another project finds nothing and cannot open the metric.
    other = open_page(OTHER)
    other.page.goto(f"{live_api}/dashboard/resources?q={rid[:8]}")
    assert other.page.locator("tr[data-resource-id]").count() == 0
    response = other.page.goto(f"{live_api}/dashboard/metrics/{metric_id}")
    assert response.status == 404


def test_composite_alarm_shows_its_tree_with_leaf_states(live_api, open_page):
    hot, cold = new_metric(live_api), new_metric(live_api)
    now = int(time.time())
    for metric_id, value in ((hot, 90), (cold, 10)):
        r = requests.post(
            f"{live_api}/v1/metric/{metric_id}/measures",
            json=[{"timestamp": now - i, "value": value} for i in range(5)],
            headers=MEMBER,
        )
        assert r.status_code == 202, r.text

    def leaf(metric_id: str) -> dict[str, Any]:
        return {
            "type": BY_METRICS,
            "metrics": [metric_id],
            "aggregation_method": "mean",
            "threshold": 50,
            "comparison_operator": "gt",
            "granularity": 1,
            "evaluation_periods": 2,
        }

    r = requests.post(
        f"{live_api}/v2/alarms",
        json={
            "name": "either-hot",
            "type": "composite",
            "composite_rule": {"or": [leaf(hot), {"and": [leaf(cold)]}]},
        },
        headers=MEMBER,
    )
    assert r.status_code == 201, r.text
    w = open_page(MEMBER)
    w.page.goto(f"{live_api}/dashboard/alarms/{r.json()['alarm_id']}")
    leaves = w.page.locator("li.leaf").evaluate_all(
        "items => items.map(i => [i.dataset.leaf, i.dataset.state])"
    )
    assert leaves == [["rule1", "alarm"], ["rule2", "ok"]]
    assert w.page.locator("li.join > strong").all_inner_texts() == [
        "OR",
        "AND",
    ]
    sentence = w.page.inner_text("#sentence")
    assert sentence.startswith("(mean of metric") and " OR (" in sentence
    assert w.errors == []
