"""The event jobs waiting for the evaluator's worker, in priority order.

Every tick the worker takes the alarms whose metrics were announced
since the previous tick (*fresh* jobs) and, when those exceed what a
tick holds, keeps the rest here.  Two rules bound how long any of them
waits:

* **fresh first, within a share**: up to ``fresh_share`` of a tick goes
  to the newest announcements, so that a crossing announced during a
  mass wave is evaluated at the next tick, not after the wave;
* **the rest in arrival order**: the remainder of the tick is taken from
  the oldest waiting jobs, and fresh jobs beyond their share join the
  end of the line.  Under a sustained overload every job is therefore
  reached after at most the line's length divided by what a tick takes
  from it; none waits behind an endless stream of newer ones.

An alarm announced again while it waits keeps its place (the evaluation
reads the newest data anyway); its earliest as-of instant and its
newest data timestamp are merged in.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class EventBacklog(Generic[T]):
    """Event jobs in priority order (see the module documentation).

    :param key: the identity of a job's alarm.
    :param merge: ``merge(waiting, newer)`` folds a newer job of the same
        alarm into the waiting one.
    :param chunk: most jobs one tick takes.
    :param fresh_share: part of a tick reserved for fresh jobs while
        older ones wait.
    """

    def __init__(
        self,
        key: Callable[[T], str],
        merge: Callable[[T, T], None],
        *,
        chunk: int = 256,
        fresh_share: float = 0.5,
    ) -> None:
        self._key = key
        self._merge = merge
        self.chunk = max(1, chunk)
        self.fresh_quota = max(1, min(self.chunk, int(chunk * fresh_share)))
        self._waiting: collections.OrderedDict[str, T] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._waiting)

    def take(self, fresh: Iterable[T]) -> list[T]:
        """The jobs of the next tick, given the *fresh* ones.

        Fresh jobs of alarms already waiting are merged into them; the
        other fresh jobs fill up to the fresh share of the tick (all of it
        when nothing waits), the oldest waiting ones fill the rest, and
        the fresh jobs left over join the end of the line.
        """
        waiting = self._waiting
        new: list[T] = []
        seen: dict[str, T] = {}
        for job in fresh:
            key = self._key(job)
            queued = waiting.get(key)
            if queued is not None:
                self._merge(queued, job)
                continue
            twin = seen.get(key)
            if twin is not None:
                self._merge(twin, job)
                continue
            seen[key] = job
            new.append(job)
        quota = self.fresh_quota if waiting else self.chunk
        taken = new[:quota]
        for job in new[quota:]:
            waiting[self._key(job)] = job
        while waiting and len(taken) < self.chunk:
            taken.append(waiting.popitem(last=False)[1])
        return taken
