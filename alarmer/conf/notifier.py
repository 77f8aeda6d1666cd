"""Options of the ``[notifier]`` section.

The TLS options keep Aodh's names (``rest_notifier_*``); Aodh reads them
from ``[DEFAULT]``, and so does alarmer when they are not set in
``[notifier]``, so an Aodh configuration file carries over.
"""

from oslo_config import cfg

GROUP = "notifier"

OPTS: list[cfg.Opt] = [
    cfg.ListOpt(
        "allowed_networks",
        default=[],
        item_type=cfg.types.String(),
        help="Networks (CIDRs, e.g. 127.0.0.0/8,10.1.0.0/16) that webhook "
        "targets may resolve to although they are loopback, link-local, "
        "private or otherwise non-global.  Every other non-global address "
        "is refused when an alarm is saved and again at delivery time.",
    ),
    cfg.FloatOpt(
        "dns_timeout",
        default=2.0,
        min=0.01,
        help="Seconds to wait for the resolution of a webhook host name "
        "when its addresses are checked.",
    ),
    cfg.StrOpt(
        "webhook_secret",
        secret=True,
        help="Shared secret signing every webhook (Standard Webhooks "
        "style: webhook-id, webhook-timestamp, webhook-signature headers, "
        "HMAC-SHA256 over 'id.timestamp.body').  A 'whsec_' prefix means "
        "the rest is base64; otherwise the UTF-8 bytes are the key.  "
        "Several secrets separated by spaces produce several signatures "
        "(key rotation).  Unset: webhooks are not signed.",
    ),
    cfg.DictOpt(
        "alarm_secrets",
        default={},
        secret=True,
        help="Per-alarm or per-project signing secrets, as "
        "<alarm id or project id>:<secret> pairs.  An alarm id entry wins "
        "over a project id entry, which wins over webhook_secret.",
    ),
    cfg.BoolOpt(
        "notify_on_manual_state_change",
        default=False,
        help="Notify the actions of the new state when a state is set "
        "through PUT /v2/alarms/<id>/state (Aodh never does).",
    ),
    cfg.IntOpt(
        "workers",
        default=16,
        min=1,
        help="Concurrent deliveries of one notifier process.",
    ),
    cfg.IntOpt(
        "max_inflight_per_host",
        default=8,
        min=1,
        help="Concurrent deliveries of one notifier process to one host "
        "(host:port), so that a slow or dead endpoint never takes every "
        "worker: further deliveries to it wait in the database.",
    ),
    cfg.IntOpt(
        "batch_size",
        default=200,
        min=1,
        help="Deliveries claimed, or notifications expanded, per query.",
    ),
    cfg.FloatOpt(
        "poll_interval",
        default=0.5,
        min=0.01,
        help="Seconds between two looks at the outbox when nothing woke "
        "the notifier (new notifications of the same process and, on "
        "PostgreSQL, of any process wake it at once).",
    ),
    cfg.FloatOpt(
        "claim_timeout",
        default=60.0,
        min=1.0,
        help="Seconds a claimed delivery stays reserved for its notifier; "
        "a delivery whose notifier died is retried after this, with the "
        "same delivery id.",
    ),
    cfg.FloatOpt(
        "connect_timeout",
        default=3.0,
        min=0.01,
        help="Seconds to wait for a webhook connection.",
    ),
    cfg.FloatOpt(
        "read_timeout",
        default=10.0,
        min=0.01,
        help="Seconds to wait for a webhook response.",
    ),
    cfg.IntOpt(
        "max_attempts",
        default=25,
        min=1,
        help="Attempts after which a delivery is dead-lettered.",
    ),
    cfg.FloatOpt(
        "max_age",
        default=86400.0,
        min=1.0,
        help="Seconds after the notification after which an undelivered "
        "delivery is dead-lettered instead of retried.",
    ),
    cfg.FloatOpt(
        "retry_initial_delay",
        default=1.0,
        min=0.0,
        help="First retry delay in seconds (doubled at each attempt).",
    ),
    cfg.FloatOpt(
        "retry_max_delay",
        default=300.0,
        min=0.0,
        help="Longest delay between two attempts, in seconds.",
    ),
    cfg.FloatOpt(
        "retry_jitter",
        default=1.0,
        min=0.0,
        help="Random seconds (0 to this) added to each retry delay.",
    ),
    cfg.IntOpt(
        "inline_attempts",
        default=3,
        min=1,
        help="Attempts made in a row by the same worker while the delay "
        "before the next one is short (see inline_max_delay); later "
        "attempts are scheduled in the database.",
    ),
    cfg.FloatOpt(
        "inline_max_delay",
        default=1.0,
        min=0.0,
        help="Longest delay a worker waits in-process before retrying.",
    ),
    cfg.FloatOpt(
        "max_retry_after",
        default=3600.0,
        min=0.0,
        help="Longest Retry-After (seconds) honoured from a 429 or 5xx "
        "answer.",
    ),
    cfg.StrOpt(
        "worker_name",
        default="",
        help="Name of this notifier's identity (default: the host name).  "
        "With a slot number taken in data_dir for the life of the process, "
        "it names the owner of the deliveries the notifier claims, so that "
        "after a crash the next notifier of that slot sends its in-flight "
        "deliveries again at once instead of after claim_timeout.  Give "
        "notifiers sharing a host name but not a data_dir distinct names.",
    ),
    cfg.BoolOpt(
        "rest_notifier_ssl_verify",
        default=True,
        deprecated_group="DEFAULT",
        help="Verify the TLS certificate of https:// webhooks.  An action "
        "URL may override it with the query parameter "
        "aodh-alarm-ssl-verify=0|1 (as in Aodh).",
    ),
    cfg.StrOpt(
        "rest_notifier_ca_bundle_certificate_path",
        deprecated_group="DEFAULT",
        help="CA bundle verifying webhook certificates (default: the "
        "system bundle of requests).",
    ),
    cfg.StrOpt(
        "rest_notifier_certificate_file",
        deprecated_group="DEFAULT",
        help="Client certificate presented to https:// webhooks.",
    ),
    cfg.StrOpt(
        "rest_notifier_certificate_key",
        deprecated_group="DEFAULT",
        help="Private key of rest_notifier_certificate_file.",
    ),
    cfg.IntOpt(
        "delivered_time_to_live",
        default=7 * 86400,
        help="Seconds a delivered notification is kept (its delivery, "
        "attempts and outbox row, counted from the delivery); 0 or less "
        "keeps them for ever.",
    ),
    cfg.IntOpt(
        "dead_letter_time_to_live",
        default=-1,
        help="Seconds a dead letter (a delivery that gave up) is kept "
        "from its last attempt; 0 or less keeps it until it is "
        "redelivered or purged ('alarmer expire --purge-dead-letters').",
    ),
    cfg.FloatOpt(
        "expire_interval",
        default=300.0,
        min=0.0,
        help="Seconds between two retention passes of the notifier "
        "service (history, deliveries, dead letters); 0 disables them "
        "(run 'alarmer expire' from cron instead).",
    ),
    cfg.IntOpt(
        "expire_batch_size",
        default=5000,
        min=1,
        help="Rows a retention pass deletes per transaction: small "
        "batches never hold locks for long.",
    ),
]
