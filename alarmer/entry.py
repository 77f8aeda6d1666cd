"""Console-script entry points: signals are handled before anything loads.

Importing the service (SQLAlchemy, numpy, oslo.config, Flask...) takes
about a second.  The entry points live here, in a module that imports
nothing heavy, so that a SIGTERM or SIGINT received during that second
is noted instead of killing the process; :mod:`alarmer.cli` then stops
cleanly (exit 0, a log line) as soon as it can act on it.
"""

from __future__ import annotations

import sys

from alarmer.process import EarlyStop


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
