"""Options of the ``[storage]`` section (metrics engine series data)."""

from oslo_config import cfg

GROUP = "storage"

OPTS = [
    cfg.StrOpt(
        "driver",
        default="file",
        help="Series storage driver of the metrics engine: 'file' "
        "(embedded default, one host) or 'redis' (shared by hosts).",
    ),
    cfg.StrOpt(
        "file_basepath",
        default="",
        help="Directory of the file driver. Empty means 'series' in the "
        "data directory.",
    ),
    cfg.StrOpt(
        "redis_url",
        default="redis://127.0.0.1:6379/0",
        secret=True,
        help="URL of the Redis server used by the redis driver.",
    ),
]
