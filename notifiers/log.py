"""``log://``: one log line per notification (no network)."""

from __future__ import annotations

import logging
import time
import urllib.parse

from notifiers import base

LOG = logging.getLogger(__name__)


class LogNotifier(base.Notifier):
    """Write one structured INFO line per notification.

    The text is Aodh's; the fields are also given to the logging record
    (``extra``) for structured handlers.
    """

    def notify(
        self, action: urllib.parse.SplitResult, message: base.Message
    ) -> base.Result:
        """Log *message*; always delivered."""
        start = time.monotonic()
        LOG.info(
            "Notifying alarm %s %s of %s priority from %s to %s with "
            "action %s because %s. delivery_id=%s seq=%d",
            message.alarm_name,
            message.alarm_id,
            message.severity,
            message.previous,
            message.current,
            base.redact(action.geturl()),
            message.reason,
            message.delivery_id,
            message.seq,
            extra={
                "alarm_id": message.alarm_id,
                "delivery_id": message.delivery_id,
                "seq": message.seq,
                "previous": message.previous,
                "current": message.current,
                "severity": message.severity,
            },
        )
        return base.Result(delivered=True, duration=time.monotonic() - start)
