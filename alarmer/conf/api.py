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
        help="How callers are identified.",
    ),
]
