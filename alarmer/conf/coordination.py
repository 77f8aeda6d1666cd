"""Options of the ``[coordination]`` section."""

from oslo_config import cfg

GROUP = "coordination"

OPTS = [
    cfg.StrOpt(
        "backend_url",
        default="",
        secret=True,
        help="tooz URL of the coordination backend shared by the "
        "evaluators. Empty means file://<data_dir>/coordination "
        "(one host, several processes). Use redis://host:6379?timeout=5 "
        "across hosts.",
    ),
]
