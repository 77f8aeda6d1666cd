"""The one door for writing measures: store, report, announce.

Every writer of measures (the v1 views) goes through :func:`store_batch`
(or :func:`store_measures` for one metric) with measures it has already
validated.  The series store aggregates and stores them and counts what
it stores and refuses (``measures_stored`` and ``measures_refused_late``
of :meth:`~alarmer.metrics.series.store.SeriesStore.statistics`, which
``/v1/status`` shows); this module logs the late points refused, and
announces each metric that received points on the metric channel so
that evaluators re-read it.

A write the store gives up on because concurrent writers kept winning
raises :class:`IngestConflict`: nothing of the request is reported as
stored, and the caller should answer "retry".
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from alarmer.errors import AlarmerError
from alarmer.metrics.series import store as series_mod

LOG = logging.getLogger(__name__)

#: One metric's measures: the metric, int64 ns timestamps, float values.
Item = tuple[series_mod.MetricRef, np.ndarray, np.ndarray]


class RefusalLog(Protocol):
    """Where the late measures refused are counted for good (the index)."""

    def record_refusals(self, counts: Mapping[str, int]) -> None:
        """Add late measures refused, by metric id."""


class Announcer(Protocol):
    """Where "metric changed" is published (the metric channel)."""

    def publish(self, metric_ids: Iterable[str]) -> None:
        """Announce that these metrics received new measures.

        *metric_ids* may be a mapping ``{id: newest timestamp in ns}``.
        """


class IngestConflict(AlarmerError):
    """Concurrent writers kept winning; the request is not done.

    Metrics listed before the conflicting one in a batch may hold their
    new points (they were announced); the request must not be reported
    as stored, and may be retried.
    """

    def __init__(self, message: str, metric_ids: Sequence[str]) -> None:
        super().__init__(message)
        #: The metrics of the request.
        self.metric_ids = tuple(metric_ids)


@dataclasses.dataclass(frozen=True)
class Ingested:
    """What one request stored."""

    #: Measures stored, over every metric.
    stored: int
    #: Late measures refused (older than the back window accepts).
    refused: int
    #: The metrics that received points (announced), in request order.
    changed: tuple[str, ...]


NOTHING = Ingested(0, 0, ())


def store_measures(
    series: series_mod.SeriesStore,
    channel: Announcer,
    metric: series_mod.MetricRef,
    timestamps: np.ndarray,
    values: np.ndarray,
) -> Ingested:
    """Store the measures of one metric; see :func:`store_batch`."""
    return store_batch(series, channel, [(metric, timestamps, values)])


def store_batch(
    series: series_mod.SeriesStore,
    channel: Announcer,
    batch: Sequence[Item],
    *,
    refusals: RefusalLog | None = None,
) -> Ingested:
    """Store the measures of several metrics and announce the changed ones.

    Metrics without measures are skipped.  Late points refused by the
    store are logged, counted by the store (per process) and, given
    *refusals*, added there for good.

    :raises IngestConflict: the store gave up on a metric because of
        concurrent writers.
    """
    items = [item for item in batch if _size(item[1])]
    if not items:
        return NOTHING
    try:
        results = series.add_measures_batch(items)
    except series_mod.WriteConflict as exc:
        ids = list(dict.fromkeys(ref.id for ref, _, _ in items))
        if len(ids) > 1:
            # Which metrics were stored before the conflict is unknown:
            # announce them all (a needless announcement costs one
            # re-read, a missing one a stale alarm).
            channel.publish(ids)
        LOG.warning("measures not written: %s", exc)
        raise IngestConflict(str(exc), ids) from exc
    stored = refused = 0
    # Each changed metric with the newest timestamp of its new points:
    # the evaluators record which data triggered an evaluation.
    changed: dict[str, int] = {}
    by_metric: dict[str, int] = {}
    for (ref, _, _), result, newest in zip(
        items, results, _newest(items), strict=True
    ):
        stored += result.stored
        refused += result.refused
        if result.refused:
            by_metric[ref.id] = by_metric.get(ref.id, 0) + result.refused
            LOG.warning(
                "metric %s: %d late measure(s) refused (older than the "
                "back window accepts)",
                ref.id,
                result.refused,
            )
        if result.stored:
            changed[ref.id] = max(newest, changed.get(ref.id, newest))
    if changed:
        channel.publish(changed)
    if by_metric and refusals is not None:
        try:
            refusals.record_refusals(by_metric)
        except Exception:
            # The measures are stored; only the lasting count is lost.
            LOG.exception("late refusals of %s not recorded", list(by_metric))
    return Ingested(stored, refused, tuple(changed))


def _newest(items: Sequence[Item]) -> list[int]:
    """The newest timestamp of each item (none empty), all at once."""
    if len(items) == 1:
        return [int(np.max(items[0][1]))]
    stamps = [np.asarray(ts, dtype=np.int64) for _, ts, _ in items]
    sizes = np.fromiter(map(len, stamps), dtype=np.int64, count=len(stamps))
    starts = np.zeros(len(stamps), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    newest: list[int] = np.maximum.reduceat(
        np.concatenate(stamps), starts
    ).tolist()
    return newest


def _size(stamps: object) -> int:
    """How many timestamps *stamps* (an array, usually) holds."""
    if type(stamps) is np.ndarray:
        return int(stamps.size)
    return int(np.asarray(stamps).size)
