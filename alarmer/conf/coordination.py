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
        "(one host, several processes). Use redis://host:6379 across "
        "hosts. 'none' disables coordination: every worker evaluates "
        "every alarm (only for a single worker).",
    ),
    cfg.IntOpt(
        "membership_timeout",
        default=10,
        min=1,
        help="Seconds without heartbeat after which a worker is considered "
        "dead and its alarms move to the others. Added to the backend URL "
        "as ?timeout= unless the URL sets it.",
    ),
    cfg.IntOpt(
        "partitions",
        default=512,
        min=1,
        help="Partitions of tooz's hash ring (the same on every worker); "
        "more partitions give a more even split of the alarms.",
    ),
    cfg.FloatOpt(
        "check_interval",
        default=0.5,
        min=0.05,
        help="Seconds between two polls of the group membership (tooz "
        "watchers).",
    ),
    cfg.FloatOpt(
        "watchdog_interval",
        default=2.0,
        min=0.1,
        help="Seconds between two checks that this worker is still a "
        "member of the group; a dropped worker rejoins.",
    ),
    cfg.FloatOpt(
        "retry_backoff",
        default=1.0,
        min=0.1,
        help="Initial seconds between two attempts to reach the "
        "coordination backend; doubled up to max_retry_interval.",
    ),
    cfg.FloatOpt(
        "max_retry_interval",
        default=30.0,
        min=0.1,
        help="Longest wait between two attempts to reach the coordination "
        "backend.",
    ),
]
