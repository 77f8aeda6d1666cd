"""How alarmer writes its log: request ids, JSON lines, no floods.

:func:`configure` sets up the root logger of a process:

* every record carries a ``request_id`` (``-`` outside an API request;
  the API sets :data:`REQUEST_ID` while it serves one);
* a record's context (:data:`CONTEXT_FIELDS`: ``alarm_id``,
  ``metric_id``, ``delivery_id``, given as ``extra``) is a field of its
  own in a JSON line, and closes a text line as
  ``{alarm_id=... metric_id=...}`` (the values the message does not
  already show);
* ``[DEFAULT] log_format = json`` writes one JSON object per line
  (time with offset, level, logger, message, request id, process and
  the context);
* the web server's "task queue depth" warnings, one per queued request
  under load, are summarised: at most one line per
  :data:`FLOOD_INTERVAL` seconds saying how many were folded into it
  (:class:`RateLimit`);
* the evaluator's and the notifier's lines (:data:`REPEATING`), one per
  alarm or delivery when a backend or a receiver fails, are let through
  :data:`REPEAT_BURST` times per message per :data:`REPEAT_INTERVAL`
  seconds, the next one saying how many were folded
  (:class:`RepeatLimit`).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
import threading
import time

#: The request id of the request being served by this thread or task.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar(
    "alarmer_request_id", default="-"
)
#: The text line; ``request`` is `` [req-...]`` inside an API request,
#: empty elsewhere.
TEXT_FORMAT = (
    "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    "%(context)s%(request)s"
)
#: Loggers whose repeated warnings are summarised.
FLOODING = ("waitress.queue",)
#: Seconds between two lines of a summarised logger.
FLOOD_INTERVAL = 60.0
#: Extra attributes copied into JSON lines when a record has them.
CONTEXT_FIELDS = ("alarm_id", "metric_id", "delivery_id")
#: Loggers writing one line per alarm or delivery (summarised when the
#: same message repeats).
REPEATING = (
    "alarmer.evaluator.service",
    "alarmer.evaluator.reader",
    "notifiers.deliver",
    "notifiers.queue",
    "notifiers.service",
)
#: Records of one message let through per :data:`REPEAT_INTERVAL`.
REPEAT_BURST = 10
REPEAT_INTERVAL = 10.0


class ContextFilter(logging.Filter):
    """Give every record ``request_id`` (``-`` outside a request),
    ``request`` and ``context`` (the text line's suffixes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the attributes; never drops a record."""
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        rid = getattr(record, "request_id", "-")
        record.request = "" if rid == "-" else f" [{rid}]"
        found = [
            (name, str(value))
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        ]
        shown = ""
        if found:
            message = record.getMessage()
            pairs = [f"{k}={v}" for k, v in found if v not in message]
            if pairs:
                shown = " {" + " ".join(pairs) + "}"
        record.context = shown
        return True


class RateLimit(logging.Filter):
    """Let one record through per *interval* seconds; count the others.

    The record let through after a quiet spell says how many were
    suppressed since the previous one.
    """

    def __init__(self, interval: float = FLOOD_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """True for the first record of each interval."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self.suppressed += 1
                return False
            self._next = now + self.interval
            folded, self.suppressed = self.suppressed, 0
        if folded:
            record.msg = (
                f"{record.msg} (and {folded} similar in the last "
                f"{self.interval:.0f} s)"
            )
        return True


class RepeatLimit(logging.Filter):
    """Let each message through *burst* times per *interval* seconds.

    A message is the call's format string (``record.msg``, before the
    alarm or delivery ids are put in), so a failure repeated for every
    alarm is one message; they are bounded by the code's log calls.
    The first record let through after some were held back says how
    many.
    """

    def __init__(
        self, burst: int = REPEAT_BURST, interval: float = REPEAT_INTERVAL
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self._lock = threading.Lock()
        #: message -> (window end, let through, held back)
        self._seen: dict[tuple[object, int], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True unless the message used its burst in this window."""
        if record.levelno < logging.INFO:
            return True
        key = (record.msg, record.levelno)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or now >= seen[0]:
                held = int(seen[2]) if seen else 0
                self._seen[key] = [now + self.interval, 1, 0]
            elif seen[1] < self.burst:
                seen[1] += 1
                held = 0
            else:
                seen[2] += 1
                return False
        if held:
            record.msg = (
                f"{record.msg} (and {held} similar held back in "
                f"{self.interval:.0f} s)"
            )
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        doc: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(
                record.created, dt.UTC
            ).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "process": record.process,
            "thread": record.threadName,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def quiet_floods(interval: float = FLOOD_INTERVAL) -> None:
    """Summarise the warnings of the :data:`FLOODING` loggers."""
    for name in FLOODING:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimit) for f in logger.filters):
            logger.addFilter(RateLimit(interval))


def hold_repeats() -> None:
    """Hold back repeated messages of the :data:`REPEATING` loggers."""
    for name in REPEATING:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatLimit) for f in logger.filters):
            logger.addFilter(RepeatLimit())


def handler(fmt: str = "text") -> logging.Handler:
    """A standard-error handler writing *fmt* (``text`` or ``json``)."""
    out = logging.StreamHandler(sys.stderr)
    out.addFilter(ContextFilter())
    if fmt == "json":
        out.setFormatter(JSONFormatter())
    else:
        out.setFormatter(logging.Formatter(TEXT_FORMAT))
    return out


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Log to standard error at *level* in *fmt*, floods summarised and
    repeats held back (what every alarmer command does)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(fmt))
    root.setLevel(getattr(logging, level))
    quiet_floods()
    hold_repeats()
