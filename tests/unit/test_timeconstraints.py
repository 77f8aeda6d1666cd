"""Time constraints: windows, time zones, DST edges, midnight."""

from __future__ import annotations

import datetime as dt

import pytest

from alarmer.alarms import time_constraints as tc


def utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def c(start, duration, timezone=""):
    return {
        "name": "w",
        "start": start,
        "duration": duration,
        "timezone": timezone,
    }


PARIS_11 = c("0 11 * * *", 3600, "Europe/Paris")

CASES = [
    # daily window in UTC, both ends included as Aodh
    (c("0 11 * * *", 3600), "2026-03-28T10:59:59", False),
    (c("0 11 * * *", 3600), "2026-03-28T11:00:00", True),
    (c("0 11 * * *", 3600), "2026-03-28T11:00:30", True),
    (c("0 11 * * *", 3600), "2026-03-28T12:00:00", True),
    (c("0 11 * * *", 3600), "2026-03-28T12:00:01", False),
    # Paris, winter (CET = UTC+1): 10:00-11:00 UTC
    (PARIS_11, "2026-03-28T09:30:00", False),
    (PARIS_11, "2026-03-28T10:30:00", True),
    # Paris, the day clocks go forward (CEST = UTC+2): 09:00-10:00 UTC
    (PARIS_11, "2026-03-29T09:00:00", True),
    (PARIS_11, "2026-03-29T09:30:00", True),
    (PARIS_11, "2026-03-29T10:30:00", False),
    # Paris, the day clocks go back: 10:00-11:00 UTC again
    (PARIS_11, "2026-10-25T09:30:00", False),
    (PARIS_11, "2026-10-25T10:30:00", True),
    # a window spanning the spring-forward gap lasts one real hour
    (c("30 1 * * *", 3600, "Europe/Paris"), "2026-03-29T01:15:00", True),
    (c("30 1 * * *", 3600, "Europe/Paris"), "2026-03-29T01:31:00", False),
    # a start inside the gap (02:30 does not exist) opens at 03:00 CEST
    (c("30 2 * * *", 3600, "Europe/Paris"), "2026-03-29T01:45:00", True),
    # the repeated hour in autumn opens the window twice
    (c("30 2 * * *", 1800, "Europe/Paris"), "2026-10-25T00:45:00", True),
    (c("30 2 * * *", 1800, "Europe/Paris"), "2026-10-25T01:15:00", False),
    (c("30 2 * * *", 1800, "Europe/Paris"), "2026-10-25T01:45:00", True),
    # windows crossing midnight
    (c("0 22 * * *", 4 * 3600), "2026-11-26T23:30:00", True),
    (c("0 22 * * *", 4 * 3600), "2026-11-27T01:59:00", True),
    (c("0 22 * * *", 4 * 3600), "2026-11-27T02:01:00", False),
    (
        c("0 23 * * *", 7200, "America/New_York"),
        "2026-11-27T05:30:00",
        True,
    ),  # 00:30 local, started 23:00 local the previous day
    # day-of-month list, weekday
    (c("0 0 1,15 * *", 86400), "2026-11-15T13:00:00", True),
    (c("0 0 1,15 * *", 86400), "2026-11-16T13:00:00", False),
    (c("0 9 * * 1-5", 8 * 3600), "2026-11-28T10:00:00", False),  # Sat
    (c("0 9 * * 1-5", 8 * 3600), "2026-11-27T10:00:00", True),  # Fri
    # Aodh's complex range with a 30 s duration
    (c("3-57/2 3-12/2 * * *", 30), "2026-11-26T03:05:10", True),
    (c("3-57/2 3-12/2 * * *", 30), "2026-11-26T03:05:40", False),
    (c("3-57/2 3-12/2 * * *", 30), "2026-11-26T04:05:10", False),
]


@pytest.mark.parametrize(("constraint", "now", "inside"), CASES)
def test_within(constraint, now, inside):
    assert tc.within_any([constraint], utc(now)) is inside


def test_no_constraint_is_always_inside():
    assert tc.status([], utc("2026-01-01T00:00:00")) == (True, None)


def test_any_window_is_enough():
    both = [c("0 8 * * *", 3600), c("0 20 * * *", 3600)]
    assert tc.within_any(both, utc("2026-11-26T20:30:00"))
    assert tc.within_any(both, utc("2026-11-26T08:30:00"))
    assert not tc.within_any(both, utc("2026-11-26T12:00:00"))


def test_status_validity():
    both = [c("0 8 * * *", 3600), c("0 20 * * *", 3600)]
    assert tc.status(both, utc("2026-11-26T08:30:00")) == (
        True,
        utc("2026-11-26T09:00:00"),
    )
    # outside: valid until the next opening, at most one hour ahead
    assert tc.status(both, utc("2026-11-26T19:15:00")) == (
        False,
        utc("2026-11-26T20:00:00"),
    )
    assert tc.status(both, utc("2026-11-26T12:00:00")) == (
        False,
        utc("2026-11-26T13:00:00"),
    )
    # the validity of an answer is exact: one second before the opening
    inside, _ = tc.status(both, utc("2026-11-26T19:59:59"))
    assert not inside


def test_bad_zone_raises():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        tc.within_any(
            [c("0 11 * * *", 60, "Mars/Olympus")], utc("2026-01-01T00:00:00")
        )
