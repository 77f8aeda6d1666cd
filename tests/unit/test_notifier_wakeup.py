"""The wake-up object and the restart of a failing watcher."""

from __future__ import annotations

import threading

from notifiers.wakeup import Wakeup, _Watcher


def test_first_turn_looks_at_the_outbox_once():
    wakeup = Wakeup()
    assert wakeup.take_outbox()
    assert not wakeup.take_outbox()


def test_outbox_change_wakes_and_flags_the_outbox():
    wakeup = Wakeup()
    wakeup.take_outbox()
    wakeup.clear()
    assert not wakeup.wait(0.01)
    wakeup.outbox_changed()
    assert wakeup.wait(0)
    assert wakeup.take_outbox()
    assert not wakeup.take_outbox()


def test_poke_wakes_without_flagging_the_outbox():
    wakeup = Wakeup()
    wakeup.take_outbox()
    wakeup.clear()
    wakeup.poke()
    assert wakeup.wait(0)
    assert not wakeup.take_outbox()
    wakeup.clear()
    assert not wakeup.wait(0)


def test_a_wakeup_from_another_thread_ends_the_wait():
    wakeup = Wakeup()
    wakeup.clear()
    timer = threading.Timer(0.05, wakeup.outbox_changed)
    timer.start()
    assert wakeup.wait(10)
    timer.join()


class _Flaky(_Watcher):
    thread_name = "test-watcher"

    def __init__(self, wakeup: Wakeup) -> None:
        super().__init__(wakeup, retry_interval=0.01)
        self.calls = 0
        self.settled = threading.Event()

    def watch(self, stopping: threading.Event) -> None:
        self.calls += 1
        if self.calls < 3:
            raise ConnectionError("server gone")
        self.ready.set()
        self.settled.set()
        stopping.wait()


def test_failing_watcher_retries_and_flags_the_outbox_meanwhile():
    wakeup = Wakeup()
    wakeup.take_outbox()
    watcher = _Flaky(wakeup)
    watcher.start()
    try:
        assert watcher.settled.wait(10)
        assert watcher.calls == 3
        assert watcher.ready.is_set()
        # What was committed while it was down is looked at.
        assert wakeup.take_outbox()
    finally:
        watcher.stop()
    assert watcher._thread is None
