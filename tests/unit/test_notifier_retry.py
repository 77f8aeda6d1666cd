"""The retry policy alone: backoff, Retry-After, inline retries, verdicts."""

from __future__ import annotations

import datetime as dt
import types

import pytest

from notifiers.base import Result
from notifiers.retry import RetryPolicy, Verdict, retryable

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)
FAILED = Result(delivered=False, retryable=True, error="HTTP 503")
REFUSED = Result(delivered=False, retryable=False, error="HTTP 400")
DONE = Result(delivered=True, status_code=200)


def policy(**kwargs) -> RetryPolicy:
    base = {
        "initial_delay": 1.0,
        "max_delay": 300.0,
        "jitter": 1.0,
        "max_retry_after": 3600.0,
        "max_attempts": 5,
        "inline_attempts": 3,
        "inline_max_delay": 1.0,
    }
    return RetryPolicy(**{**base, **kwargs})


def test_which_results_are_retried():
    assert retryable(FAILED)
    assert not retryable(REFUSED)
    assert not retryable(DONE)
    # Delivered wins over a retryable flag.
    assert not retryable(Result(delivered=True, retryable=True))


def test_backoff_doubles_from_the_initial_delay():
    p = policy(jitter=0.0)
    assert [p.delay(n, rand=lambda: 0.0) for n in (1, 2, 3, 4)] == [
        1.0,
        2.0,
        4.0,
        8.0,
    ]


def test_jitter_adds_between_zero_and_jitter_seconds():
    p = policy(initial_delay=2.0, jitter=0.5)
    assert p.delay(1, rand=lambda: 0.0) == 2.0
    assert p.delay(1, rand=lambda: 0.5) == 2.25
    assert p.delay(1, rand=lambda: 0.999) == pytest.approx(2.4995)
    for _ in range(100):
        assert 4.0 <= p.delay(2) <= 4.5


def test_backoff_is_capped_and_survives_huge_attempt_numbers():
    p = policy(max_delay=60.0)
    assert p.delay(10, rand=lambda: 0.0) == 60.0
    assert p.delay(5000, rand=lambda: 0.0) == 60.0
    assert policy(initial_delay=0.0, jitter=0.0).delay(3) == 0.0


def test_retry_after_wins_up_to_its_maximum():
    p = policy(max_retry_after=120.0)
    asked = Result(delivered=False, retryable=True, retry_after=30.0)
    assert p.delay(1, asked) == 30.0
    assert p.delay(12, asked) == 30.0
    greedy = Result(delivered=False, retryable=True, retry_after=9999.0)
    assert p.delay(1, greedy) == 120.0
    now = Result(delivered=False, retryable=True, retry_after=0.0)
    assert p.delay(4, now) == 0.0


def test_retry_inline_while_short_few_and_young():
    p = policy(inline_attempts=3, max_attempts=5, inline_max_delay=1.0)
    assert p.retry_inline(1, 1, 0.5, NOW, LATER)
    assert p.retry_inline(2, 2, 1.0, NOW, LATER)
    assert not p.retry_inline(3, 3, 0.5, NOW, LATER)  # inline attempts
    assert not p.retry_inline(1, 5, 0.5, NOW, LATER)  # max attempts
    assert not p.retry_inline(1, 1, 1.5, NOW, LATER)  # too long a wait
    soon = NOW + dt.timedelta(seconds=0.2)
    assert not p.retry_inline(1, 1, 0.5, NOW, soon)  # dead by then


def test_verdict_delivered():
    assert policy().verdict(DONE, 3, NOW, LATER) == Verdict("delivered", NOW)


def test_verdict_retry_later_with_the_backoff_of_the_total():
    verdict = policy(jitter=0.0).verdict(FAILED, 3, NOW, LATER)
    assert verdict == Verdict(
        "pending", NOW + dt.timedelta(seconds=4.0), 4.0, ""
    )


def test_verdict_dead_when_not_retryable():
    verdict = policy().verdict(REFUSED, 1, NOW, LATER)
    assert (verdict.status, verdict.reason) == ("dead", "not retryable")
    assert verdict.next_attempt_at == NOW


def test_verdict_dead_after_max_attempts():
    verdict = policy(max_attempts=3).verdict(FAILED, 3, NOW, LATER)
    assert (verdict.status, verdict.reason) == ("dead", "3 attempts")


def test_verdict_dead_when_the_retry_would_come_too_late():
    soon = NOW + dt.timedelta(seconds=10)
    p = policy(jitter=0.0, max_attempts=10)
    assert p.verdict(FAILED, 3, NOW, soon).status == "pending"  # in 4 s
    verdict = p.verdict(FAILED, 5, NOW, soon)  # in 16 s
    assert (verdict.status, verdict.reason) == ("dead", "too old")
    far = Result(delivered=False, retryable=True, retry_after=60.0)
    verdict = policy(max_attempts=10).verdict(far, 1, NOW, soon)
    assert (verdict.status, verdict.reason) == ("dead", "too old")


def test_policy_from_the_notifier_options():
    opts = types.SimpleNamespace(
        retry_initial_delay=0.5,
        retry_max_delay=30.0,
        retry_jitter=0.1,
        max_retry_after=60.0,
        max_attempts=7,
        inline_attempts=2,
        inline_max_delay=0.25,
    )
    assert RetryPolicy.from_conf(opts) == RetryPolicy(
        initial_delay=0.5,
        max_delay=30.0,
        jitter=0.1,
        max_retry_after=60.0,
        max_attempts=7,
        inline_attempts=2,
        inline_max_delay=0.25,
    )
