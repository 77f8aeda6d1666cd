"""When each owned alarm is evaluated next (no I/O, no threads).

Each alarm has a fixed slot within the evaluation interval, a hash of its
id (:func:`slot_of`), so evaluations spread evenly over the interval and
keep their place across restarts and ownership changes.  A
:class:`Schedule` is a heap of (due time, token, alarm id); a token
invalidates older entries of the same alarm.  A slot missed by more than
one interval is skipped, not queued: :meth:`Schedule.pop_due` counts the
skipped slots and returns the latest due time only.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable
from typing import Protocol, TypeVar


class Scheduled(Protocol):
    """What the schedule needs of an alarm."""

    alarm_id: str
    slot: float
    token: int
    #: The alarm's own evaluation interval (0: the schedule's).
    interval: float


def slot_of(alarm_id: str, interval: float) -> float:
    """The fixed offset of an alarm within the evaluation interval."""
    return (zlib.crc32(alarm_id.encode()) / 2**32) * interval


T = TypeVar("T", bound=Scheduled)


class Schedule:
    """A heap of due evaluations, one live entry per alarm."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._heap: list[tuple[float, int, str]] = []
        self._token = 0
        #: Slots skipped because they were more than one interval late.
        self.skipped = 0

    def interval_of(self, alarm: Scheduled) -> float:
        """The evaluation interval of *alarm*."""
        return alarm.interval or self.interval

    def next_slot(self, alarm: Scheduled, now: float) -> float:
        """The first slot of *alarm* strictly after *now*."""
        interval = self.interval_of(alarm)
        base = (now - alarm.slot) // interval * interval
        due = base + alarm.slot
        return due if due > now else due + interval

    def add(self, alarm: Scheduled, due: float) -> None:
        """Schedule *alarm* at *due*; older entries of it become stale."""
        self._token += 1
        alarm.token = self._token
        heapq.heappush(self._heap, (due, self._token, alarm.alarm_id))

    def has_due(self, now: float) -> bool:
        """True when an entry (maybe stale) is due at *now*."""
        return bool(self._heap) and self._heap[0][0] <= now

    def wait_time(self, now: float, longest: float) -> float:
        """Seconds until the next entry is due, at most *longest*."""
        if not self._heap:
            return longest
        return min(longest, max(self._heap[0][0] - now, 0.0))

    def pop_due(
        self, now: float, lookup: Callable[[str], T | None], limit: int
    ) -> list[tuple[T, float]]:
        """Take up to *limit* due alarms and schedule their next slot.

        *lookup* returns the live alarm of an id (None once dropped);
        stale entries are discarded.  Each alarm is returned with the
        slot it is evaluated for.
        """
        taken: list[tuple[T, float]] = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(taken) < limit:
            due, token, alarm_id = heapq.heappop(heap)
            alarm = lookup(alarm_id)
            if alarm is None or alarm.token != token:
                continue
            interval = self.interval_of(alarm)
            if now - due >= interval:
                missed = int((now - due) // interval)
                self.skipped += missed
                due += missed * interval
            self.add(alarm, due + interval)
            taken.append((alarm, due))
        return taken
