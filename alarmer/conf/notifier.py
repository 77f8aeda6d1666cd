"""Options of the ``[notifier]`` section."""

from oslo_config import cfg

GROUP = "notifier"

OPTS: list[cfg.Opt] = []
