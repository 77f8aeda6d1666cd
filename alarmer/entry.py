"""Console-script entry points: signals are handled before anything loads.

Importing the service (SQLAlchemy, numpy, oslo.config, Flask...) takes
about a second.  The entry points live here, in a module that imports
nothing heavy, so that a SIGTERM or SIGINT received during that second
is noted instead of killing the process; :mod:`alarmer.cli` then stops
cleanly (exit 0, a log line) as soon as it can act on it.
"""

from __future__ import annotations

import signal
import sys
import threading

#: The signals that stop a command.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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


def _run(command: str | None) -> int:
    early = EarlyStop()
    early.install()
    from alarmer import cli  # the slow part, under the handlers above

    return cli.run_command(command, sys.argv[1:], early)


def main() -> int:
    """``alarmer``."""
    return _run(None)


def api_main() -> int:
    """``alarmer-api``."""
    return _run("api")


def evaluator_main() -> int:
    """``alarmer-evaluator``."""
    return _run("evaluator")


def notifier_main() -> int:
    """``alarmer-notifier``."""
    return _run("notifier")


def dbsync_main() -> int:
    """``alarmer-dbsync``."""
    return _run("dbsync")
