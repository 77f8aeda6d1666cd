"""Running long-lived pieces (API, evaluator, notifier) until a signal."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from typing import Protocol

LOG = logging.getLogger(__name__)


class Service(Protocol):
    """A piece that runs in background threads between start and stop."""

    name: str

    def start(self) -> None:
        """Start the background work; return once it is ready."""

    def stop(self) -> None:
        """Stop the background work and wait for it to end."""


def run(
    services: Sequence[Service], stop_event: threading.Event | None = None
) -> None:
    """Start *services*, wait for SIGTERM/SIGINT (or *stop_event*), stop.

    Services start in order and stop in reverse order.
    """
    stop_event = stop_event or threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        LOG.info("received %s, shutting down", signal.Signals(signum).name)
        stop_event.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    started: list[Service] = []
    try:
        for service in services:
            LOG.info("starting %s", service.name)
            service.start()
            started.append(service)
        LOG.info("alarmer is running: %s", ", ".join(s.name for s in started))
        while not stop_event.wait(1.0):
            pass
    finally:
        for service in reversed(started):
            LOG.info("stopping %s", service.name)
            try:
                service.stop()
            except Exception:
                LOG.exception("error while stopping %s", service.name)
        LOG.info("alarmer stopped")
