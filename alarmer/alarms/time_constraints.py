"""Time constraints: cron-started windows in an IANA time zone.

An alarm with time constraints is evaluated only while the current time
lies in at least one window.  A window starts at each fire time of the
constraint's cron expression (5 fields, croniter 7 semantics), read in
the constraint's time zone (empty means UTC), and lasts ``duration``
seconds.  The duration is added in UTC, so a window keeps its length
across a DST change.  Pure functions, no I/O.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from croniter import croniter
from croniter.croniter import CroniterError

from alarmer.alarms.errors import RuleError, invalid

#: Longest window accepted: one year.
MAX_DURATION = 365 * 86400
#: How far ahead an "outside" answer of :func:`status` is trusted at most.
MAX_VALIDITY = dt.timedelta(hours=1)


def check_cron(expression: str, field: str = "start") -> None:
    """Reject a cron expression croniter cannot iterate.

    :raises RuleError: naming *field* and croniter's reason.
    """
    if len(expression.split()) != 5:
        raise invalid(
            field,
            expression,
            "Exactly 5 columns (minute hour day month weekday) have to be "
            "specified for a time constraint start.",
        )
    try:
        croniter(expression, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except (CroniterError, ValueError, KeyError) as exc:
        raise invalid(field, expression, str(exc) or "Invalid cron") from exc
    if not croniter.is_valid(expression):
        raise invalid(field, expression, "Invalid cron expression.")


def zone(name: str) -> dt.tzinfo:
    """Return the time zone *name* (``""`` is UTC).

    :raises RuleError: when *name* is not a known IANA zone.
    """
    if not name:
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleError(
            f"Timezone {name} is not valid", "time_constraints.timezone"
        ) from exc


def normalize(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check already schema-valid constraints and fill their defaults.

    Returns constraints with exactly the keys ``name``, ``description``,
    ``start``, ``duration``, ``timezone``.

    :raises RuleError: bad cron, unknown zone or duplicated name.
    """
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        name = item["name"]
        if name in seen:
            raise RuleError(
                "Time constraint names must be unique for a given alarm.",
                f"time_constraints[{index}].name",
            )
        seen.add(name)
        start = item["start"]
        duration = int(item["duration"])
        check_cron(start, f"time_constraints[{index}].start")
        timezone = item.get("timezone") or ""
        zone(timezone)
        description = item.get("description") or (
            f"Time constraint at {start} lasting for {duration} seconds"
        )
        result.append(
            {
                "name": name,
                "description": description,
                "start": start,
                "duration": duration,
                "timezone": timezone,
            }
        )
    return result


def window_start(start: str, now_local: dt.datetime) -> dt.datetime:
    """Return the latest fire time of *start* at or before *now_local*.

    *now_local* must be aware.  croniter's ``get_prev`` never returns the
    current minute itself, so a fire time reached within the current
    minute is found with ``match`` (Aodh's "exact match" case).
    """
    floor = now_local.replace(second=0, microsecond=0)
    if croniter.match(start, floor):
        return floor
    return croniter(start, now_local).get_prev(dt.datetime)


def window(
    constraint: Mapping[str, Any], now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """``(start, end)`` in UTC of the latest window of *constraint*.

    The end is included, as in Aodh; the duration is added in UTC.
    """
    now_utc = now.astimezone(dt.UTC)
    local = now_utc.astimezone(zone(constraint.get("timezone") or ""))
    begin = window_start(constraint["start"], local).astimezone(dt.UTC)
    return begin, begin + dt.timedelta(seconds=int(constraint["duration"]))


def next_start(constraint: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    """The next fire time of *constraint* strictly after *now*, in UTC."""
    local = now.astimezone(zone(constraint.get("timezone") or ""))
    following = croniter(constraint["start"], local).get_next(dt.datetime)
    return following.astimezone(dt.UTC)


def within(constraint: Mapping[str, Any], now: dt.datetime) -> bool:
    """True when aware *now* lies inside the window of *constraint*."""
    begin, end = window(constraint, now)
    return begin <= now.astimezone(dt.UTC) <= end


def within_any(
    constraints: Iterable[Mapping[str, Any]], now: dt.datetime
) -> bool:
    """True when there is no constraint or *now* is inside one of them."""
    return status(list(constraints), now)[0]


def status(
    constraints: Sequence[Mapping[str, Any]], now: dt.datetime
) -> tuple[bool, dt.datetime | None]:
    """Whether *now* is inside a window, and until when that holds.

    Lets an evaluator skip croniter until the answer can change.

    :returns: ``(inside, valid_until)``; ``valid_until`` is ``None`` when
        the answer never changes (no constraint).  Inside: the latest end
        of the windows containing *now*.  Outside: the earliest next
        opening (at most :data:`MAX_VALIDITY` ahead).
    :raises ValueError: for an unknown zone or a bad cron expression.
    """
    if not constraints:
        return True, None
    now_utc = now.astimezone(dt.UTC)
    ends: list[dt.datetime] = []
    for constraint in constraints:
        begin, end = window(constraint, now_utc)
        if begin <= now_utc <= end:
            ends.append(end)
    if ends:
        return True, max(ends)
    opening = min(next_start(c, now_utc) for c in constraints)
    return False, min(opening, now_utc + MAX_VALIDITY)
