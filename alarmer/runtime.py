"""The objects one alarmer process shares: configuration, database, series.

A :class:`Runtime` is built once per process by the command line and
handed explicitly to the API, the evaluator and the notifier.
"""

from __future__ import annotations

import dataclasses
import logging

from oslo_config import cfg

from alarmer import channel as channel_mod
from alarmer import db as db_mod
from alarmer import telemetry as telemetry_mod
from alarmer.metrics import index as index_mod
from alarmer.metrics.series import store as series_mod

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    """What the services of one process share."""

    conf: cfg.ConfigOpts
    db: db_mod.Database
    channel: channel_mod.MetricChannel
    #: The metric index (policies, metrics, resources).
    index: index_mod.Indexer
    #: The series store of the metrics engine.
    series: series_mod.SeriesStore
    #: The process's own metrics (``GET /metrics``).
    telemetry: telemetry_mod.Telemetry = dataclasses.field(
        default_factory=telemetry_mod.Telemetry
    )

    def close(self) -> None:
        """Release connections, files and threads; write the last metrics."""
        self.telemetry.close()
        self.series.close()
        self.channel.close()
        self.db.dispose()


def build(
    conf: cfg.ConfigOpts,
    *,
    migrate: bool = False,
    channel: channel_mod.MetricChannel | None = None,
) -> Runtime:
    """Build the runtime of a process; migrate the database if asked."""
    database = db_mod.Database(db_mod.database_url(conf))
    if migrate:
        database.upgrade()
    return Runtime(
        conf=conf,
        db=database,
        channel=channel or channel_mod.make_channel(conf),
        index=index_mod.Indexer(database),
        series=series_mod.make_store(conf),
    )
