"""The "metric changed" channel between the metrics engine and evaluators.

When measures of a metric are stored, the API publishes the metric ids
here; evaluators subscribe and re-evaluate the alarms reading those
metrics at once.  :class:`LocalChannel` serves the one-command start (API
and evaluator in one process); channels that cross processes and hosts
implement the same two verbs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

LOG = logging.getLogger(__name__)

Callback = Callable[[list[str]], None]


class MetricChannel(Protocol):
    """Announce and receive the ids of metrics that received measures."""

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Announce that these metrics received new measures."""

    def subscribe(self, callback: Callback) -> None:
        """Call *callback* with each announced batch of metric ids.

        The callback runs on the publisher's or the channel's thread and
        must return quickly (queue the work).
        """

    def unsubscribe(self, callback: Callback) -> None:
        """Stop calling *callback*."""

    def close(self) -> None:
        """Release the channel's resources."""


class LocalChannel:
    """In-process channel: subscribers are called on the publisher thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: tuple[Callback, ...] = ()

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Call every subscriber with the list of metric ids."""
        ids = list(metric_ids)
        if not ids:
            return
        for callback in self._callbacks:
            try:
                callback(ids)
            except Exception:
                LOG.exception("metric channel subscriber failed")

    def subscribe(self, callback: Callback) -> None:
        """Register *callback*."""
        with self._lock:
            self._callbacks = (*self._callbacks, callback)

    def unsubscribe(self, callback: Callback) -> None:
        """Unregister *callback* (no error when it was not registered)."""
        with self._lock:
            self._callbacks = tuple(
                c for c in self._callbacks if c is not callback
            )

    def close(self) -> None:
        """Drop every subscriber."""
        with self._lock:
            self._callbacks = ()
