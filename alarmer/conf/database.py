"""Options of the ``[database]`` section."""

from oslo_config import cfg

GROUP = "database"

OPTS = [
    cfg.StrOpt(
        "connection",
        default="",
        secret=True,
        help="SQLAlchemy URL of the database holding the metric index, "
        "alarms, history and notifications. Empty means a SQLite file "
        "'alarmer.sqlite' in the data directory. Examples: "
        "postgresql+psycopg://user@host/db, "
        "mysql+pymysql://user:pass@host/db.",
    ),
    cfg.IntOpt(
        "alarm_history_time_to_live",
        default=-1,
        help="Seconds alarm history entries are kept (the history of "
        "deleted alarms too); 0 or less keeps them for ever. Applied by "
        "'alarmer expire' and, every [notifier] expire_interval, by the "
        "notifier service.",
    ),
    cfg.IntOpt(
        "expired_silence_time_to_live",
        default=30 * 86400,
        help="Seconds an ended silence is kept for the audit trail; 0 or "
        "less keeps them for ever.",
    ),
]
