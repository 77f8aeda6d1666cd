"""The retry policy of deliveries: pure decisions, no I/O.

* A result is retried when it is not delivered and the plugin called it
  retryable (connection error, timeout, 5xx, 429).
* The delay after the *n*-th attempt of a delivery (counted across
  claims) is ``initial * 2 ** (n - 1)`` plus a random jitter in
  ``[0, jitter]``, at most ``max_delay``; a ``Retry-After`` of the
  target wins, up to ``max_retry_after``.
* A worker retries in a row (:meth:`RetryPolicy.retry_inline`) while the
  delay is short; otherwise the delivery goes back to the queue with a
  ``next_attempt_at``.
* A delivery is dead-lettered (:meth:`RetryPolicy.verdict`) when its last
  result is not retryable, after ``max_attempts`` attempts, or when its
  next attempt would come after its ``dead_after``.

The random source is a parameter, so that tests fix it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from typing import Any, Protocol

from notifiers import status as tables


class Result(Protocol):
    """What the policy reads of an attempt's result."""

    @property
    def delivered(self) -> bool:
        """The target accepted the notification."""

    @property
    def retryable(self) -> bool:
        """A later attempt may succeed."""

    @property
    def retry_after(self) -> float | None:
        """Seconds the target asked to wait, if it did."""


#: Returns a float in [0, 1).
Random = Callable[[], float]


def retryable(result: Result) -> bool:
    """True when *result* failed and a later attempt may succeed."""
    return not result.delivered and result.retryable


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What becomes of a delivery after its last attempt.

    :ivar status: ``delivered``, ``pending`` (retry at
        ``next_attempt_at``) or ``dead``.
    :ivar delay: seconds until the retry (0 unless it fails).
    :ivar reason: why it is dead (``not retryable``, ``<n> attempts``,
        ``too old``); empty otherwise.
    """

    status: str
    next_attempt_at: dt.datetime
    delay: float = 0.0
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Backoff, inline retries and dead-lettering of deliveries."""

    initial_delay: float = 1.0
    max_delay: float = 300.0
    jitter: float = 1.0
    max_retry_after: float = 3600.0
    max_attempts: int = 25
    inline_attempts: int = 3
    inline_max_delay: float = 1.0

    @classmethod
    def from_conf(cls, opts: Any) -> RetryPolicy:
        """Build the policy of the ``[notifier]`` options *opts*."""
        return cls(
            initial_delay=opts.retry_initial_delay,
            max_delay=opts.retry_max_delay,
            jitter=opts.retry_jitter,
            max_retry_after=opts.max_retry_after,
            max_attempts=opts.max_attempts,
            inline_attempts=opts.inline_attempts,
            inline_max_delay=opts.inline_max_delay,
        )

    def delay(
        self,
        attempt: int,
        result: Result | None = None,
        rand: Random = random.random,
    ) -> float:
        """Seconds to wait after the *attempt*-th attempt (from 1).

        A ``Retry-After`` of *result* wins, capped at ``max_retry_after``.
        """
        if result is not None and result.retry_after is not None:
            return min(result.retry_after, self.max_retry_after)
        jitter = self.jitter * rand()
        try:
            delay = self.initial_delay * 2.0 ** (attempt - 1) + jitter
        except OverflowError:
            delay = self.max_delay
        return max(0.0, min(delay, self.max_delay))

    def retry_inline(
        self,
        made: int,
        total: int,
        delay: float,
        now: dt.datetime,
        dead_after: dt.datetime,
    ) -> bool:
        """True when a worker should wait *delay* and try again itself.

        :param made: attempts made by this worker for the current claim.
        :param total: attempts of the delivery, earlier claims included.
        """
        return (
            made < self.inline_attempts
            and total < self.max_attempts
            and delay <= self.inline_max_delay
            and now + dt.timedelta(seconds=delay) <= dead_after
        )

    def verdict(
        self,
        last: Result,
        total: int,
        now: dt.datetime,
        dead_after: dt.datetime,
        rand: Random = random.random,
    ) -> Verdict:
        """Decide after the last attempt of a claim.

        :param last: the result of that attempt.
        :param total: attempts of the delivery, that one included.
        """
        if last.delivered:
            return Verdict(tables.DELIVERED, now)
        delay = self.delay(total, last, rand)
        next_at = now + dt.timedelta(seconds=delay)
        if not last.retryable:
            reason = "not retryable"
        elif total >= self.max_attempts:
            reason = f"{total} attempts"
        elif next_at > dead_after:
            reason = "too old"
        else:
            return Verdict(tables.PENDING, next_at, delay)
        return Verdict(tables.DEAD, now, delay, reason)
