"""The attempts of one claimed delivery, by its plugin, under the policy.

:class:`Deliverer` turns a :class:`~notifiers.jobs.Job` into a
:class:`~notifiers.jobs.DeliveryOutcome`: it parses the target, picks
the plugin of its scheme (one instance per scheme, made on first use),
calls it, and retries in a row while :meth:`RetryPolicy.retry_inline
<notifiers.retry.RetryPolicy.retry_inline>` allows; the waits end early
when the service stops.  No database access: the outcome is recorded by
the queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import urllib.parse
from collections.abc import Callable, Mapping

from oslo_config import cfg

import notifiers
from alarmer import timeutils
from alarmer.telemetry import Telemetry
from notifiers import tables
from notifiers.jobs import Attempt, DeliveryOutcome, Job
from notifiers.retry import RetryPolicy, retryable

LOG = logging.getLogger(__name__)

#: The telemetry outcome of each final delivery status.
OUTCOMES = {
    tables.DELIVERED: "delivered",
    tables.PENDING: "retry",
    tables.DEAD: "dead",
}

#: Parsed targets kept by a :class:`Deliverer` (all forgotten past it).
MAX_ACTIONS = 4096

#: Builds the plugin of a scheme from the configuration (a plugin class).
PluginFactory = Callable[[cfg.ConfigOpts], notifiers.Notifier]


class Deliverer:
    """Make the attempts of jobs; thread-safe (one per service).

    :param conf: the configuration given to the plugins.
    :param policy: the retry policy.
    :param stopping: set when the service stops: waits end, and jobs not
        started yet are given back.
    :param classes: the plugin classes by scheme (default: the installed
        ones, :func:`notifiers.plugin_classes`), or any callable building
        a plugin from the configuration.
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        policy: RetryPolicy,
        stopping: threading.Event,
        classes: Mapping[str, PluginFactory] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.conf = conf
        #: Where attempts and outcomes are counted (none: not counted).
        self.telemetry = telemetry
        self.policy = policy
        self.stopping = stopping
        self.classes = (
            notifiers.plugin_classes() if classes is None else classes
        )
        self._lock = threading.Lock()
        self._plugins: dict[str, notifiers.Notifier] = {}
        #: The telemetry's recorder of each (status, scheme).
        self._recorders: dict[tuple[str, str], Callable[[float], None]] = {}
        # Parsed targets (see action); a dict's get and set are atomic.
        self._actions: dict[str, urllib.parse.SplitResult] = {}

    def plugin(self, scheme: str) -> notifiers.Notifier | None:
        """Return the plugin instance of *scheme* (None: no such plugin)."""
        with self._lock:
            plugin = self._plugins.get(scheme)
            if plugin is None:
                cls = self.classes.get(scheme)
                if cls is None:
                    return None
                plugin = cls(self.conf)
                self._plugins[scheme] = plugin
            return plugin

    def action(self, target: str) -> urllib.parse.SplitResult:
        """:func:`notifiers.parse_action` of *target*, parsed once.

        (A wave sends thousands of deliveries to the same few URLs.)  The
        address is not part of it: plugins check it at each attempt.

        :raises notifiers.InvalidAction: the target cannot be parsed.
        """
        action = self._actions.get(target)
        if action is None:
            action = notifiers.parse_action(target)
            if len(self._actions) >= MAX_ACTIONS:
                self._actions.clear()
            self._actions[target] = action
        return action

    def close(self) -> None:
        """Close the plugins (their connections)."""
        with self._lock:
            plugins = list(self._plugins.values())
            self._plugins.clear()
        for plugin in plugins:
            plugin.close()

    def outcome_of(self, job: Job) -> DeliveryOutcome:
        """:meth:`deliver`, turning an unexpected error into a retry."""
        try:
            return self.deliver(job)
        except Exception as exc:
            LOG.exception(
                "delivery %s of alarm %s failed unexpectedly",
                job.id,
                job.message.alarm_id,
                extra=_context(job),
            )
            error = notifiers.Result(
                delivered=False,
                retryable=True,
                error=f"internal error: {exc!r}",
            )
            return self.final(job, [Attempt(timeutils.utcnow(), error)])

    def deliver(self, job: Job) -> DeliveryOutcome:
        """Make the attempts of one claimed delivery; return the outcome."""
        if self.stopping.is_set():
            return release(job)
        try:
            action = self.action(job.target)
        except notifiers.InvalidAction as exc:
            return self._dead(job, exc.message)
        scheme = action.scheme.lower()
        plugin = self.plugin(scheme)
        if plugin is None:
            return self._dead(
                job, f"Unsupported action {notifiers.redact(job.target)}"
            )
        message = job.message
        attempts: list[Attempt] = []
        while True:
            started = timeutils.utcnow()
            try:
                result = plugin.notify(action, message)
            except Exception as exc:
                LOG.exception(
                    "notifier plugin %s failed for alarm %s",
                    scheme,
                    message.alarm_id,
                    extra=_context(job),
                )
                result = notifiers.Result(
                    delivered=False,
                    retryable=True,
                    error=f"plugin error: {exc!r}",
                    duration=(timeutils.utcnow() - started).total_seconds(),
                )
            attempts.append(Attempt(started, result))
            if not retryable(result) or self.stopping.is_set():
                break
            total = job.attempts + len(attempts)
            delay = self.policy.delay(total, result)
            if not self.policy.retry_inline(
                len(attempts),
                total,
                delay,
                timeutils.utcnow(),
                job.dead_after,
            ):
                break
            if self.stopping.wait(delay):
                break
        return self.final(job, attempts, scheme)

    def final(
        self,
        job: Job,
        attempts: list[Attempt],
        scheme: str = "",
    ) -> DeliveryOutcome:
        """The outcome of *job* after *attempts* (logged and counted;
        with a *scheme*, the attempts are the calls of its plugin, whose
        durations are observed)."""
        now = timeutils.utcnow()
        if not attempts:
            return release(job, now)
        message = job.message
        last = attempts[-1].result
        total = job.attempts + len(attempts)
        verdict = self.policy.verdict(last, total, now, job.dead_after)
        target = notifiers.redact(job.target)
        if verdict.status == tables.DELIVERED:
            LOG.debug(
                "delivered %s (alarm %s seq %d) to %s",
                job.id,
                message.alarm_id,
                message.seq,
                target,
                extra=_context(job),
            )
        elif verdict.status == tables.PENDING:
            LOG.info(
                "delivery %s of alarm %s seq %d to %s failed (%s); "
                "retry in %.1fs",
                job.id,
                message.alarm_id,
                message.seq,
                target,
                last.error,
                verdict.delay,
                extra=_context(job),
            )
        else:
            LOG.warning(
                "delivery %s of alarm %s seq %d to %s dead-lettered (%s): %s",
                job.id,
                message.alarm_id,
                message.seq,
                target,
                verdict.reason,
                last.error,
                extra=_context(job),
            )
        tel = self.telemetry
        if tel is not None:
            # The durations the plugin measured (those of the attempt
            # rows): the attempt is not timed a second time.
            if scheme and len(attempts) == 1:  # the usual delivery
                record = self._recorders.get((verdict.status, scheme))
                if record is None:
                    record = self._recorder(tel, verdict.status, scheme)
                record(last.duration)
            else:  # no plugin called (no scheme), or called several times
                tel.delivery(
                    OUTCOMES.get(verdict.status, "dead"),
                    scheme,
                    [a.result.duration for a in attempts] if scheme else (),
                )
        return DeliveryOutcome(
            job, verdict.status, attempts, verdict.next_attempt_at
        )

    def _recorder(
        self, tel: Telemetry, status: str, scheme: str
    ) -> Callable[[float], None]:
        """The telemetry's recorder of a delivery of one attempt to
        *scheme* ending in *status* (one C call), made once."""
        record = tel.delivery_recorder(OUTCOMES.get(status, "dead"), scheme)
        return self._recorders.setdefault((status, scheme), record)

    def _dead(self, job: Job, error: str) -> DeliveryOutcome:
        result = notifiers.Result(delivered=False, error=error)
        return self.final(job, [Attempt(timeutils.utcnow(), result)])


def _context(job: Job) -> dict[str, str]:
    """The structured context of a delivery's log lines."""
    return {"alarm_id": job.message.alarm_id, "delivery_id": job.id}


def release(job: Job, at: dt.datetime | None = None) -> DeliveryOutcome:
    """The outcome giving *job* back untried, due again *at* (now)."""
    return DeliveryOutcome(
        job,
        tables.PENDING,
        [],
        at if at is not None else timeutils.utcnow(),
        release=True,
    )
