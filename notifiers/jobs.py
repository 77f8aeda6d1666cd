"""The values passed between the parts of the notifier service.

A :class:`Job` is a claimed delivery (from :mod:`notifiers.queue`); a
worker (:mod:`notifiers.deliver`) makes its attempts (each an
:class:`Attempt`) and turns it into a :class:`DeliveryOutcome`, which the
queue records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse

from notifiers.base import Message, Result


@dataclasses.dataclass(frozen=True)
class Job:
    """A claimed delivery and the notification it carries."""

    #: The delivery id (the ``webhook-id``).
    id: str
    #: The claim that took it; the outcome is only written under it.
    token: str
    target: str
    stream: str
    #: Attempts made by earlier claims.
    attempts: int
    dead_after: dt.datetime
    message: Message

    @property
    def host(self) -> str:
        """``scheme://host[:port]`` of the target, lower case."""
        return host_of(self.target)


@dataclasses.dataclass
class Attempt:
    """One finished attempt, as recorded in ``delivery_attempt``."""

    at: dt.datetime
    result: Result


@dataclasses.dataclass
class DeliveryOutcome:
    """What to write for a job once its attempts are over.

    :ivar status: the new status of the delivery (``pending`` again,
        ``delivered`` or ``dead``).
    :ivar release: the job is given back without an attempt (the service
        stops, or its host is saturated).
    """

    job: Job
    status: str
    attempts: list[Attempt]
    next_attempt_at: dt.datetime
    release: bool = False


def host_of(target: str) -> str:
    """Return ``scheme://host[:port]`` of *target* (credentials dropped).

    An unparsable target gives ``""``: such jobs share one host.
    """
    try:
        parts = urllib.parse.urlsplit(target)
    except ValueError:
        return ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"
