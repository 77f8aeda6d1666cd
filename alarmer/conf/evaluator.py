"""Options of the ``[evaluator]`` section."""

from oslo_config import cfg

GROUP = "evaluator"

OPTS = [
    cfg.IntOpt(
        "evaluation_interval",
        default=60,
        min=1,
        help="Seconds between two evaluations of an enabled alarm. The "
        "evaluations of a worker's alarms are spread evenly across the "
        "interval; an evaluation that could not run in its interval is "
        "skipped, not queued.",
    ),
    cfg.FloatOpt(
        "min_evaluation_interval",
        default=10.0,
        min=1.0,
        help="Shortest evaluation interval an alarm may ask for with its "
        "own evaluation_interval (a shorter one is raised to this).",
    ),
    cfg.IntOpt(
        "workers",
        default=1,
        min=0,
        help="Evaluator processes 'alarmer serve' runs when it runs "
        "several processes (see [api] workers); they share the alarms "
        "through the coordination backend. 0: none (evaluators run "
        "elsewhere).",
    ),
    cfg.BoolOpt(
        "event_driven",
        default=True,
        help="Re-evaluate the alarms reading a metric as soon as measures "
        "for it arrive (in addition to the periodic evaluation).",
    ),
    cfg.StrOpt(
        "metric_channel",
        default="",
        help="Channel carrying 'metric changed' announcements from the API "
        "to the evaluators: 'local' (in-process; 'alarmer serve' with "
        "several processes turns it into 'datagram'), 'datagram' "
        "(Unix-domain datagram sockets in <data_dir>/run/metrics: the "
        "processes of one host), datagram:///directory (the same in "
        "another directory), a redis:// URL or a postgresql:// URL "
        "(LISTEN/NOTIFY; across processes and hosts), or empty: the "
        "Redis server of [coordination] backend_url when it is a "
        "redis:// URL, else 'local'. Every process writing measures must "
        "use the evaluators' channel.",
    ),
    cfg.FloatOpt(
        "refresh_interval",
        default=1.0,
        min=0.05,
        help="Seconds between two checks for created, edited or deleted "
        "alarms (a cheap aggregate query; changed rows are then loaded).",
    ),
    cfg.FloatOpt(
        "series_cache_ttl",
        default=10.0,
        min=0,
        help="Seconds the evaluator keeps the newest buckets it read of a "
        "metric. An entry is dropped as soon as the metric channel "
        "announces new measures for the metric, so this only bounds the "
        "delay when an announcement is lost. Used only with event_driven "
        "and a channel that carries every announcement (redis, datagram, "
        "or the API in the same process); 0 disables the cache.",
    ),
    cfg.FloatOpt(
        "coalesce_interval",
        default=0.002,
        min=0,
        max=1,
        help="Seconds the evaluator gathers 'metric changed' announcements "
        "before evaluating the alarms they touch: each such alarm is "
        "evaluated once per tick, with one batched read of the metrics "
        "engine for all of them.",
    ),
]
