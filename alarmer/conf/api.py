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
        default=-1,
        min=-1,
        help="Largest number of actions per state of an alarm (-1: no limit).",
    ),
]
