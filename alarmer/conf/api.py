"""Options of the ``[api]`` section."""

from oslo_config import cfg

GROUP = "api"

OPTS = [
    cfg.HostAddressOpt(
        "host",
        default="127.0.0.1",
        help="Address the API listens on.",
    ),
    cfg.PortOpt("port", default=8042, help="Port the API listens on."),
    cfg.IntOpt(
        "workers",
        default=0,
        min=0,
        help="API processes 'alarmer serve' runs, sharing one listening "
        "socket. 0: one per usable CPU core, at most 8 (on 2 cores: two "
        "API processes beside the evaluator and notifier processes). 1 "
        "(with [evaluator] workers = 1): everything in one process, the "
        "smallest footprint. 'alarmer api' is always one process.",
    ),
    cfg.IntOpt(
        "nice",
        default=5,
        min=0,
        max=19,
        help="Niceness added to the API processes of a multi-process "
        "'alarmer serve'. The evaluator and notifier processes keep the "
        "supervisor's, so that when the API processes keep the cores "
        "busy with writes, the evaluation of the data just written and "
        "the delivery of its notification still get a core at once. "
        "0: every process at the same priority.",
    ),
    cfg.IntOpt(
        "threads",
        default=8,
        min=1,
        help="Worker threads of the HTTP server of one API process.",
    ),
    cfg.StrOpt(
        "auth_mode",
        default="noauth",
        choices=[
            (
                "noauth",
                "Trust X-User-Id, X-Project-Id and X-Roles headers; "
                "only behind a trusted proxy.",
            ),
            ("apikey", "Require an API key sent as a bearer token."),
            (
                "keystone",
                "Require a Keystone token (X-Auth-Token) validated by "
                "keystonemiddleware's auth_token with the "
                "[keystone_authtoken] options.",
            ),
        ],
        help="How callers are identified. The default, noauth, trusts "
        "the identity headers and is safe only because the API listens "
        "on 127.0.0.1 and answers noauth requests from loopback peers "
        "only (see noauth_allow_remote). Use apikey (keys made by "
        "'alarmer apikey create', sent as 'Authorization: Bearer <key>' "
        "or 'X-Auth-Token: <key>') whenever the API is reachable from "
        "other hosts.",
    ),
    cfg.BoolOpt(
        "noauth_allow_remote",
        default=False,
        help="In noauth mode, also accept requests from non-loopback "
        "peers. Only behind a trusted proxy that sets the identity "
        "headers itself.",
    ),
    cfg.IntOpt(
        "max_limit",
        default=1000,
        min=1,
        help="Largest page a list returns; also the page size when the "
        "client gives no limit (a Link rel=next header then points at "
        "the next page).",
    ),
    cfg.IntOpt(
        "project_alarm_quota",
        default=-1,
        min=-1,
        help="Default number of alarms a project may have (-1: no "
        "limit); a per-project quota set with POST /v2/quotas wins.",
    ),
    cfg.IntOpt(
        "user_alarm_quota",
        default=-1,
        min=-1,
        help="Number of alarms a user may have in a project (-1: no limit).",
    ),
    cfg.IntOpt(
        "alarm_max_actions",
        default=10,
        min=-1,
        help="Largest number of actions per state of an alarm (-1: no "
        "limit per state; alarm_max_total_actions still applies).",
    ),
    cfg.IntOpt(
        "alarm_max_total_actions",
        default=20,
        min=1,
        help="Largest number of actions of an alarm, all states together: "
        "one transition makes at most this many deliveries.",
    ),
    cfg.IntOpt(
        "alarm_max_description_length",
        default=4096,
        min=1,
        help="Longest alarm description, in characters (it is copied into "
        "every history entry of the alarm).",
    ),
    cfg.IntOpt(
        "alarm_max_rule_metrics",
        default=100,
        min=1,
        help="Largest number of metric ids in one "
        "gnocchi_aggregation_by_metrics_threshold rule.",
    ),
    cfg.IntOpt(
        "alarm_max_composite_depth",
        default=10,
        min=1,
        help="Deepest nesting of and/or nodes in a composite rule (the "
        "body's max_json_depth bounds it too: each level is two).",
    ),
    cfg.IntOpt(
        "alarm_max_composite_rules",
        default=32,
        min=1,
        help="Largest number of threshold rules (leaves) in a composite rule.",
    ),
    cfg.IntOpt(
        "max_body_size",
        default=1024 * 1024,
        min=1024,
        help="Largest request body, in bytes, except measure pushes "
        "(larger bodies are answered 413).",
    ),
    cfg.IntOpt(
        "max_measures_body_size",
        default=16 * 1024 * 1024,
        min=1024,
        help="Largest body of a measure push (POST .../measures and the "
        "/v1/batch/ routes), in bytes (larger bodies are answered 413).",
    ),
    cfg.IntOpt(
        "max_json_depth",
        default=32,
        min=4,
        max=200,
        help="Deepest nesting of arrays and objects in a JSON document "
        "read from a request: a body, and the documents given as text "
        "inside one (alarm resource queries, /v2/query filters); also "
        "the deepest /v1/aggregates operation tree.",
    ),
    cfg.FloatOpt(
        "metrics_count_max_age",
        default=10.0,
        min=0,
        help="Age in seconds beyond which a GET /metrics has the "
        "database gauges (alarmer_alarms, alarmer_delivery_queue_depth, "
        "alarmer_dead_letters) read again. The reading runs in the "
        "background of the API process: the scrape answers at once with "
        "the previous values, whose age it exports as "
        "alarmer_database_gauges_age_seconds (only a process's first "
        "scrape waits for a reading). The alarms are counted again only "
        "when one changed. 0: every scrape starts a reading if none "
        "runs.",
    ),
    cfg.IntOpt(
        "measure_max_future",
        default=86400,
        min=0,
        help="How far ahead of the server's clock a measure may be "
        "stamped, in seconds; a push holding a later timestamp is "
        "refused with a 400 naming the measure (a metric's back window "
        "counts from its newest point, so one far-future point would "
        "make it refuse every present-day measure).",
    ),
]
