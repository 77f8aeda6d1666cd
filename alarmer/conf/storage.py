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
    cfg.BoolOpt(
        "file_fsync",
        default=False,
        help="fsync() every write of the file driver. Without it an "
        "acknowledged write survives a crash of the process but not a "
        "power loss of the host.",
    ),
    cfg.StrOpt(
        "redis_key_prefix",
        default="alarmer:",
        help="Prefix of every Redis key of the redis driver (lets several "
        "deployments share one Redis database).",
    ),
    cfg.IntOpt(
        "cache_size_mb",
        default=256,
        min=1,
        help="Upper bound (MiB) of the in-memory cache of decoded metric "
        "series of each process.",
    ),
]
