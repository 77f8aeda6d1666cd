"""Gnocchi 4.7.1's own storage path, for comparisons with our engine.

:class:`GnocchiMetric` keeps one metric in Gnocchi's file storage driver
(in a directory of the caller's) and processes each write exactly as
``gnocchi-metricd`` processes a batch of new measures for a metric:
``StorageDriver.add_measures_to_metrics`` (raw buffer, back window,
aggregation, split merging), then reads series back with
``get_aggregated_measures``.  Gnocchi's indexer is not involved in that
path beyond two bookkeeping calls, answered by :class:`_Bookkeeping`.

Gnocchi 4.7.1 is in the ``test`` extra; callers skip without it.
"""

from __future__ import annotations

import types
import uuid

import numpy as np

from alarmer.metrics import policy as ap


class _Bookkeeping:
    """The two indexer calls the storage path makes (no-ops here)."""

    def update_needs_raw_data_truncation(self, metric_id: object) -> None:
        pass

    def update_last_measure_timestamp(self, metric_id: object) -> None:
        pass


class GnocchiMetric:
    """One metric stored by Gnocchi's storage code under *basepath*."""

    def __init__(self, policy: ap.ArchivePolicy, basepath: str) -> None:
        from gnocchi import archive_policy as gap
        from gnocchi import indexer
        from gnocchi.storage import file as gfile

        conf = types.SimpleNamespace(file_basepath=basepath, file_subdir_len=2)
        self.storage = gfile.FileStorage(conf)
        self.storage.upgrade()
        self.policy = gap.ArchivePolicy(
            policy.name,
            policy.back_window,
            [
                gap.ArchivePolicyItem(
                    granularity=np.timedelta64(item.granularity, "ns"),
                    points=item.points,
                )
                for item in policy.definition
            ],
            list(policy.aggregation_methods),
        )
        self.metric = indexer.Metric(uuid.uuid4(), self.policy)
        self._bookkeeping = _Bookkeeping()

    def write(self, ts_ns: np.ndarray, values: np.ndarray) -> None:
        """Process one batch of measures, as metricd does."""
        from gnocchi import carbonara

        measures = carbonara.make_timeseries(
            np.asarray(ts_ns, dtype=np.int64).astype("datetime64[ns]"),
            np.asarray(values, dtype=np.float64),
        )
        self.storage.add_measures_to_metrics(
            {self.metric: measures}, self._bookkeeping
        )

    def read(self, method: str, granularity: int) -> tuple[np.ndarray, ...]:
        """(int64 ns bucket starts, values) of one stored series."""
        aggregation = self.policy.get_aggregation(
            method, np.timedelta64(granularity, "ns")
        )
        assert aggregation is not None, (method, granularity)
        found = self.storage.get_aggregated_measures(
            {self.metric: [aggregation]}
        )[self.metric][aggregation]
        return (
            found.timestamps.astype("datetime64[ns]").astype(np.int64),
            np.asarray(found.values, dtype=np.float64),
        )
