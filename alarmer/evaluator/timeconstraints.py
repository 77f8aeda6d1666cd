"""Time constraints: when an alarm is evaluated at all.

An alarm with time constraints is evaluated only while *now* lies in at
least one window; outside every window its state is frozen and nothing
is sent (Aodh).  A window opens at each fire time of the constraint's
cron expression ``start`` read in the constraint's IANA ``timezone``
(empty: UTC) and lasts ``duration`` seconds, the end included as in
Aodh.  Unlike Aodh, the duration is added in UTC rather than on the wall
clock, so a window keeps its real length across a DST change (a window
opening at 01:30 on the spring-forward night lasts one real hour).

:func:`status` also tells until when its answer holds, so that the
evaluator does not run croniter for every evaluation.  Pure functions.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

from croniter import croniter

UTC = dt.UTC

#: How far ahead an "outside" answer is trusted at most.
MAX_VALIDITY = dt.timedelta(hours=1)


def zone(name: str | None) -> dt.tzinfo:
    """The IANA zone *name*; empty or ``None`` is UTC.

    :raises ValueError: for an unknown zone.
    """
    if not name:
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def latest_start(expression: str, now_local: dt.datetime) -> dt.datetime:
    """Latest fire time of *expression* at or before aware *now_local*.

    croniter's ``get_prev`` never returns the current minute itself, so a
    fire time reached within the current minute is found with ``match``
    (Aodh's "exact match" case).
    """
    floor = now_local.replace(second=0, microsecond=0)
    if croniter.match(expression, floor):
        return floor
    return croniter(expression, now_local).get_prev(dt.datetime)


def window(
    constraint: Mapping[str, Any], now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """``(start, end)`` in UTC of the latest window of *constraint*."""
    now_utc = now.astimezone(UTC)
    local = now_utc.astimezone(zone(constraint.get("timezone")))
    begin = latest_start(constraint["start"], local).astimezone(UTC)
    return begin, begin + dt.timedelta(seconds=int(constraint["duration"]))


def next_start(constraint: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    """The next fire time of *constraint* strictly after *now*, in UTC."""
    local = now.astimezone(zone(constraint.get("timezone")))
    following = croniter(constraint["start"], local).get_next(dt.datetime)
    return following.astimezone(UTC)


def within(constraints: Sequence[Mapping[str, Any]], now: dt.datetime) -> bool:
    """True when there is no constraint or *now* lies in a window."""
    return status(constraints, now)[0]


def status(
    constraints: Sequence[Mapping[str, Any]], now: dt.datetime
) -> tuple[bool, dt.datetime | None]:
    """Whether *now* is inside a window, and until when that holds.

    :returns: ``(inside, valid_until)``; ``valid_until`` is ``None`` when
        the answer never changes (no constraint).  Inside: the latest end
        of the windows containing *now*.  Outside: the earliest next
        opening (at most :data:`MAX_VALIDITY` ahead).
    :raises ValueError: for an unknown zone or a bad cron expression.
    """
    if not constraints:
        return True, None
    now_utc = now.astimezone(UTC)
    ends: list[dt.datetime] = []
    for constraint in constraints:
        begin, end = window(constraint, now_utc)
        if begin <= now_utc <= end:
            ends.append(end)
    if ends:
        return True, max(ends)
    opening = min(next_start(c, now_utc) for c in constraints)
    return False, min(opening, now_utc + MAX_VALIDITY)
