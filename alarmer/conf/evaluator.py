"""Options of the ``[evaluator]`` section."""

from oslo_config import cfg

GROUP = "evaluator"

OPTS = [
    cfg.IntOpt(
        "evaluation_interval",
        default=60,
        min=1,
        help="Seconds between two evaluations of an enabled alarm.",
    ),
]
