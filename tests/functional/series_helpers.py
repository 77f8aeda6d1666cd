"""A series driver under contention, for the write-conflict paths."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class ContendedDriver:
    """Wraps a series driver; another writer always wins on some metrics.

    Every conditional write (``append``, ``rewrite``, ``append_many``)
    to a metric of *losing* reports a version conflict (None), as the
    real drivers do when the log changed since it was read; the store
    retries, then gives up with ``WriteConflict``.  Everything else goes
    to the wrapped driver.
    """

    def __init__(self, inner: Any, losing: Iterable[str]) -> None:
        self.inner = inner
        self.losing = set(losing)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def append(self, metric_id: str, expected: Any, record: bytes) -> Any:
        if metric_id in self.losing:
            return None
        return self.inner.append(metric_id, expected, record)

    def rewrite(self, metric_id: str, expected: Any, record: bytes) -> Any:
        if metric_id in self.losing:
            return None
        return self.inner.rewrite(metric_id, expected, record)

    def append_many(self, items: Sequence[tuple[str, Any, bytes]]) -> list:
        winning = [item for item in items if item[0] not in self.losing]
        done = iter(self.inner.append_many(winning) if winning else [])
        return [
            None if metric_id in self.losing else next(done)
            for metric_id, _, _ in items
        ]


class Recorder:
    """A metric channel subscriber remembering every announced id."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, metric_ids: list[str]) -> None:
        self.ids.extend(metric_ids)
