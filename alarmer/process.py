"""Running long-lived pieces (API, evaluator, notifier) until a signal.

:func:`run` runs services in the threads of one process.
:class:`Supervisor` runs *children*: one forked process per
:class:`Child`, restarted with a backoff when it dies, stopped with
SIGTERM when the supervisor receives SIGTERM or SIGINT.  A child dies
with its supervisor (``PR_SET_PDEATHSIG`` on Linux, a watch of the
parent process elsewhere).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

LOG = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


class Service(Protocol):
    """A piece that runs in background threads between start and stop."""

    name: str

    def start(self) -> None:
        """Start the background work; return once it is ready."""

    def stop(self) -> None:
        """Stop the background work and wait for it to end."""


class EarlyStop:
    """A stop signal received before the command could handle it.

    :ivar event: set once a stop signal arrived.
    :ivar signum: the first signal received (0 while none).
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0

    def install(self) -> None:
        """Note SIGTERM and SIGINT from now on."""
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.signum:
            self.signum = signum
        self.event.set()


def install_stop_handlers(stop_event: threading.Event) -> None:
    """Set *stop_event* on SIGTERM and SIGINT (main thread only)."""

    def _on_signal(signum: int, _frame: object) -> None:
        LOG.info("received %s, shutting down", signal.Signals(signum).name)
        stop_event.set()

    if threading.current_thread() is threading.main_thread():
        for signum in _STOP_SIGNALS:
            signal.signal(signum, _on_signal)


def run(
    services: Sequence[Service], stop_event: threading.Event | None = None
) -> None:
    """Start *services*, wait for SIGTERM/SIGINT (or *stop_event*), stop.

    Services start in order and stop in reverse order; a signal received
    while they start stops them once the started ones are up.
    """
    stop_event = stop_event or threading.Event()
    install_stop_handlers(stop_event)
    started: list[Service] = []
    try:
        for service in services:
            if stop_event.is_set():
                LOG.info("stopping during startup")
                break
            LOG.info("starting %s", service.name)
            service.start()
            started.append(service)
        else:
            LOG.info(
                "alarmer is running: %s", ", ".join(s.name for s in started)
            )
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


@dataclasses.dataclass(frozen=True)
class Child:
    """One process of a :class:`Supervisor`.

    *target* runs in the forked process with an event that SIGTERM and
    SIGINT set (and the supervisor's death); it returns the exit status.
    *nice* is added to the child's scheduling niceness (lower priority)
    before *target* runs.
    """

    name: str
    target: Callable[[threading.Event], int]
    nice: int = 0


@dataclasses.dataclass
class _Slot:
    child: Child
    pid: int | None = None
    started: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Fork the children, restart the ones that die, stop them all.

    :param children: the processes to run, started in this order.
    :param stop_timeout: seconds the children get to stop after SIGTERM
        before they are killed.
    :param backoff: seconds before restarting a child that died; doubled
        for each death within *stable_after* seconds of its start, up to
        *max_backoff*.
    :param on_exit: called with the pid of each child that ended (to
        clean up what it left, e.g. its metrics files).
    """

    def __init__(
        self,
        children: Sequence[Child],
        *,
        stop_timeout: float = 30.0,
        backoff: float = 0.2,
        max_backoff: float = 30.0,
        stable_after: float = 10.0,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self._slots = [_Slot(child) for child in children]
        self.stop_timeout = stop_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.on_exit = on_exit
        self._pid = os.getpid()
        self._wake_r = -1
        self._wake_w = -1

    def pids(self) -> dict[str, int]:
        """The pid of each running child, by name."""
        return {
            slot.child.name: slot.pid
            for slot in self._slots
            if slot.pid is not None
        }

    # -- main loop ----------------------------------------------------------

    def run(self, stop_event: threading.Event) -> int:
        """Run until *stop_event* is set (install the handlers first)."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        old_chld = signal.signal(signal.SIGCHLD, lambda *_: None)
        try:
            for slot in self._slots:
                if stop_event.is_set():
                    break
                self._spawn(slot)
            if stop_event.is_set():
                LOG.info("stopping during startup")
            else:
                LOG.info(
                    "alarmer is running: %s",
                    ", ".join(
                        f"{name} (pid {pid})"
                        for name, pid in self.pids().items()
                    ),
                )
            while not stop_event.is_set():
                self._reap()
                now = time.monotonic()
                due = [s.restart_at for s in self._slots if s.restart_at]
                timeout = min([1.0, *(max(0.0, d - now) for d in due)])
                with contextlib.suppress(InterruptedError):
                    select.select([self._wake_r], [], [], timeout)
                self._drain()
                if stop_event.is_set():
                    break
                now = time.monotonic()
                for slot in self._slots:
                    if slot.restart_at is not None and slot.restart_at <= now:
                        self._spawn(slot)
            self._stop_all()
        finally:
            signal.signal(signal.SIGCHLD, old_chld)
            signal.set_wakeup_fd(old_wakeup)
            os.close(self._wake_r)
            os.close(self._wake_w)
        LOG.info("alarmer stopped")
        return 0

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def _slot_of(self, pid: int) -> _Slot | None:
        for slot in self._slots:
            if slot.pid == pid:
                return slot
        return None

    def _reap(self) -> list[_Slot]:
        """Collect the children that ended; schedule their restarts."""
        ended: list[_Slot] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = self._slot_of(pid)
            if self.on_exit is not None:
                try:
                    self.on_exit(pid)
                except Exception:
                    LOG.exception("cleaning up after pid %d failed", pid)
            if slot is None:
                continue
            slot.pid = None
            ended.append(slot)
            lived = time.monotonic() - slot.started
            if lived < self.stable_after:
                slot.quick_failures += 1
            else:
                slot.quick_failures = 0
            delay = min(
                self.max_backoff,
                self.backoff * 2 ** max(0, slot.quick_failures - 1),
            )
            slot.restart_at = time.monotonic() + delay
            LOG.warning(
                "%s (pid %d) %s after %.1f s; restarting in %.1f s",
                slot.child.name,
                pid,
                describe_status(status),
                lived,
                delay,
            )
        return ended

    def _spawn(self, slot: _Slot) -> None:
        slot.restart_at = None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            self._child_main(slot.child)
        slot.pid = pid
        slot.started = time.monotonic()
        LOG.info("started %s (pid %d)", slot.child.name, pid)

    def _child_main(self, child: Child) -> None:  # pragma: no cover
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(self._wake_r)
            os.close(self._wake_w)
            stop = threading.Event()
            install_stop_handlers(stop)
            die_with_parent(self._pid, stop)
            set_process_name(f"alarmer-{child.name}")
            if child.nice:
                os.nice(child.nice)
            code = child.target(stop)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            LOG.exception("%s failed", child.name)
            code = 1
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _stop_all(self) -> None:
        """SIGTERM every child, wait, SIGKILL what is left."""
        for slot in self._slots:
            slot.restart_at = None
            if slot.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(s.pid is not None for s in self._slots):
            self._reap_stopping()
            if time.monotonic() >= deadline:
                for slot in self._slots:
                    if slot.pid is not None:
                        LOG.warning(
                            "%s (pid %d) did not stop within %.0f s; "
                            "killing it",
                            slot.child.name,
                            slot.pid,
                            self.stop_timeout,
                        )
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(slot.pid, signal.SIGKILL)
                deadline = time.monotonic() + 5.0
            time.sleep(0.05)

    def _reap_stopping(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                for slot in self._slots:
                    slot.pid = None
                return
            if pid == 0:
                return
            if self.on_exit is not None:
                with contextlib.suppress(Exception):
                    self.on_exit(pid)
            ended = self._slot_of(pid)
            if ended is not None:
                ended.pid = None
                LOG.info(
                    "%s (pid %d) %s",
                    ended.child.name,
                    pid,
                    describe_status(status),
                )


def describe_status(status: int) -> str:
    """``exited with status N`` or ``killed by SIGNAME`` for *status*."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by {name}"
    return f"exited with status {code}"


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def die_with_parent(parent: int, stop_event: threading.Event) -> None:
    """Make this process stop when the process *parent* ends.

    On Linux the kernel sends SIGTERM (``PR_SET_PDEATHSIG``), which sets
    *stop_event* through the handlers; elsewhere a thread watches the
    parent pid.  Already orphaned: *stop_event* is set at once.
    """
    libc = _libc()
    if libc is not None and libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) == 0:
        if os.getppid() != parent:
            stop_event.set()
        return

    def _watch() -> None:
        while not stop_event.wait(1.0):
            if os.getppid() != parent:
                LOG.warning("supervisor %d is gone; stopping", parent)
                stop_event.set()

    threading.Thread(target=_watch, name="parent-watch", daemon=True).start()


def set_process_name(name: str) -> None:
    """Name this process for ``ps``/``top`` (Linux, 15 bytes kept)."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
