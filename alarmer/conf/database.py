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
]
