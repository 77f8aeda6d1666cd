"""The attempts of one job with a fake plugin: no network, no database."""

from __future__ import annotations

import ast
import datetime as dt
import os
import threading
import time

import pytest

import notifiers
from alarmer import timeutils
from notifiers.base import Message, Notifier, Result
from notifiers.deliver import Deliverer
from notifiers.jobs import Job
from notifiers.retry import RetryPolicy

FAILED = Result(delivered=False, retryable=True, error="HTTP 503")


class Scripted(Notifier):
    """Answers the results of :attr:`script` in turn, then delivered.

    Each test gets its own subclass (see the ``scripted`` fixture).
    """

    script: list[Result | Exception]
    calls: list[str]

    def notify(self, action, message):
        self.calls.append(action.geturl())
        if self.script:
            answer = self.script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return Result(delivered=True, status_code=200)


def _scripted() -> type[Scripted]:
    return type("Scripted", (Scripted,), {"script": [], "calls": []})


@pytest.fixture
def scripted():
    return _scripted()


def job(target="fake://host/x", attempts=0, dead_in=3600.0) -> Job:
    return Job(
        id="d1",
        token="t1",
        target=target,
        stream="s1",
        attempts=attempts,
        dead_after=timeutils.utcnow() + dt.timedelta(seconds=dead_in),
        message=Message(
            delivery_id="d1",
            alarm_id="a1",
            seq=1,
            alarm_name="n",
            severity="low",
            previous="ok",
            current="alarm",
            reason="r",
            reason_data={},
        ),
    )


def deliverer(make_conf, plugin, stopping=None, **policy):
    base = {"initial_delay": 0.01, "jitter": 0.0, "max_delay": 0.05}
    return Deliverer(
        make_conf(),
        RetryPolicy(**{**base, **policy}),
        stopping or threading.Event(),
        classes={"fake": plugin},
    )


def test_delivered_at_the_first_attempt(make_conf, scripted):
    outcome = deliverer(make_conf, scripted).deliver(job())
    assert outcome.status == "delivered"
    assert [a.result.status_code for a in outcome.attempts] == [200]
    assert scripted.calls == ["fake://host/x"]


def test_retries_in_a_row_then_delivers(make_conf, scripted):
    scripted.script = [FAILED, FAILED]
    outcome = deliverer(make_conf, scripted, inline_attempts=3).deliver(job())
    assert outcome.status == "delivered"
    assert len(outcome.attempts) == 3


def test_gives_back_after_the_inline_attempts(make_conf, scripted):
    scripted.script = [FAILED, FAILED, FAILED]
    before = timeutils.utcnow()
    outcome = deliverer(make_conf, scripted, inline_attempts=2).deliver(job())
    assert outcome.status == "pending"
    assert len(outcome.attempts) == 2
    assert outcome.next_attempt_at >= before
    assert not outcome.release


def test_a_long_backoff_is_not_waited_for_in_a_worker(make_conf, scripted):
    scripted.script = [FAILED]
    outcome = deliverer(
        make_conf,
        scripted,
        initial_delay=5.0,
        max_delay=10.0,
        inline_max_delay=1.0,
    ).deliver(job())
    assert outcome.status == "pending"
    assert len(outcome.attempts) == 1
    wait = (outcome.next_attempt_at - timeutils.utcnow()).total_seconds()
    assert 4.0 < wait <= 5.0


def test_counts_the_attempts_of_earlier_claims(make_conf, scripted):
    scripted.script = [FAILED, FAILED, FAILED]
    outcome = deliverer(make_conf, scripted, max_attempts=4).deliver(
        job(attempts=3)
    )
    assert outcome.status == "dead"
    assert len(outcome.attempts) == 1


def test_not_retryable_is_dead_at_once(make_conf, scripted):
    scripted.script = [Result(delivered=False, error="HTTP 400")]
    outcome = deliverer(make_conf, scripted).deliver(job())
    assert outcome.status == "dead"
    assert len(outcome.attempts) == 1


def test_plugin_exception_is_a_retryable_failure(make_conf, scripted):
    scripted.script = [RuntimeError("boom")]
    outcome = deliverer(make_conf, scripted).deliver(job())
    assert outcome.status == "delivered"
    first = outcome.attempts[0].result
    assert first.retryable and "plugin error" in first.error


def test_unknown_scheme_and_bad_url_are_dead(make_conf, scripted):
    unknown = deliverer(make_conf, scripted).deliver(job("nope://x"))
    assert unknown.status == "dead"
    assert "Unsupported action" in unknown.attempts[0].result.error
    bad = deliverer(make_conf, scripted).deliver(job("fake://h:port/"))
    assert bad.status == "dead"
    assert "Unable to parse action" in bad.attempts[0].result.error
    assert scripted.calls == []


def test_stopping_gives_the_job_back_untried(make_conf, scripted):
    stopping = threading.Event()
    stopping.set()
    outcome = deliverer(make_conf, scripted, stopping).deliver(job())
    assert outcome.release and outcome.status == "pending"
    assert outcome.attempts == []
    assert scripted.calls == []


def test_stopping_ends_a_wait_between_attempts(make_conf, scripted):
    scripted.script = [FAILED, FAILED, FAILED]
    stopping = threading.Event()
    threading.Timer(0.1, stopping.set).start()
    start = time.monotonic()
    outcome = deliverer(
        make_conf,
        scripted,
        stopping,
        initial_delay=5.0,
        max_delay=5.0,
        inline_max_delay=10.0,
    ).deliver(job())
    assert time.monotonic() - start < 3.0
    assert len(outcome.attempts) == 1
    assert outcome.status == "pending"


def test_one_plugin_instance_per_scheme_closed_at_the_end(make_conf):
    d = deliverer(make_conf, _scripted())
    assert d.plugin("fake") is d.plugin("fake")
    assert d.plugin("nope") is None
    d.close()
    assert d.plugin("fake") is not None


def test_plugins_do_not_import_the_service_parts():
    service_parts = {
        "notifiers.jobs",
        "notifiers.queue",
        "notifiers.retry",
        "notifiers.deliver",
        "notifiers.dispatch",
        "notifiers.wakeup",
        "notifiers.service",
        "notifiers.tables",
    }
    root = os.path.dirname(notifiers.__file__)
    for name in ("base.py", "http.py", "log.py", "signing.py"):
        with open(os.path.join(root, name), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(
                    f"{node.module}.{alias.name}" for alias in node.names
                )
        assert not imported & service_parts, (name, imported & service_parts)
