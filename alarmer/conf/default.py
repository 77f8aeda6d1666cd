"""Options of the ``[DEFAULT]`` section."""

from oslo_config import cfg

GROUP = "DEFAULT"

OPTS = [
    cfg.StrOpt(
        "data_dir",
        default="~/.local/share/alarmer",
        help="Directory for the embedded defaults: the SQLite database, "
        "the file storage of the metrics engine and the file:// "
        "coordination backend. Created when missing.",
    ),
    cfg.IntOpt(
        "additional_ingestion_lag",
        default=0,
        min=0,
        max=86400,
        help="Seconds added to the look-back window of threshold rules, "
        "to wait for measures that arrive late (as in Aodh).",
    ),
    cfg.StrOpt(
        "log_level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Level of the log messages written to standard error.",
    ),
    cfg.BoolOpt(
        "enable_evaluation_results_metrics",
        default=False,
        help="Count the evaluation results of every alarm per state and "
        "serve them at GET /v2/metrics (as Aodh; when disabled that "
        "endpoint answers 403).",
    ),
    cfg.StrOpt(
        "log_format",
        default="text",
        choices=["text", "json"],
        help="Format of the log: text lines, or one JSON object per line "
        "(time, level, logger, message, request id, alarm or metric id).",
    ),
]
