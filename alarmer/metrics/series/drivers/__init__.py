"""Series storage drivers of the metrics engine.

A driver stores, for each metric, an append-only *log* of opaque records
(see :mod:`alarmer.metrics.series.codec` for what the engine puts in
them) and knows nothing about aggregation.  Every write is conditional on
the :class:`Version` the writer last read, so that concurrent writers
(threads, processes, hosts) never lose an update: a writer whose version
is stale gets ``None`` back, catches up and retries.

Drivers: :mod:`~alarmer.metrics.series.drivers.file` (embedded default,
one host) and :mod:`~alarmer.metrics.series.drivers.redis` (shared by
several hosts), chosen by
:func:`alarmer.metrics.series.store.make_driver`.  One
conformance suite (``tests/functional/test_storage_conformance.py``)
runs against both.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Sequence

from alarmer.errors import AlarmerError

_METRIC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class SeriesStorageError(AlarmerError):
    """The series storage failed."""


class InvalidMetricId(SeriesStorageError, ValueError):
    """A metric id that cannot name stored data."""


def check_metric_id(metric_id: str) -> str:
    """Return *metric_id* when it is safe as a file or key name."""
    if not isinstance(metric_id, str) or not _METRIC_ID.match(metric_id):
        raise InvalidMetricId(f"Invalid metric id {metric_id!r}")
    return metric_id


@dataclasses.dataclass(frozen=True)
class Version:
    """Where a metric's log stands: its generation and its length.

    The generation changes when the log is rewritten (compaction); the
    length grows with every append.  Drivers define the units.
    """

    generation: int
    length: int
    #: The :meth:`SeriesDriver.stamps` value of the log right after the
    #: write that returned this version, when the driver knows it (not
    #: part of equality).
    stamp: object = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class LogRead:
    """Records read from a metric's log.

    ``reset`` True means *records* is the whole log (the caller's
    previous version is obsolete); False means they follow the version
    the caller passed.  ``version`` None: no data stored.
    """

    version: Version | None
    reset: bool
    records: list[bytes]


class SeriesDriver(abc.ABC):
    """Append-only per-metric record logs with conditional writes."""

    #: True when :meth:`append_many` is cheaper than one :meth:`append`
    #: per metric (e.g. one network round trip for all).
    BATCHED_APPENDS = False

    @abc.abstractmethod
    def read(self, metric_id: str, since: Version | None = None) -> LogRead:
        """Records of *metric_id* after *since* (all when None/stale).

        A record that is incomplete or fails its checksum (a write that
        was never acknowledged) ends the log.
        """

    @abc.abstractmethod
    def append(
        self, metric_id: str, expected: Version | None, record: bytes
    ) -> Version | None:
        """Append *record* if the log is still at *expected*.

        *expected* None means "no data stored".  Returns the new version,
        or None when another writer got there first.  When it returns,
        the record survives a crash of the process.
        """

    def append_many(
        self, items: Sequence[tuple[str, Version | None, bytes]]
    ) -> list[Version | None]:
        """:meth:`append` for several metrics; results in order.

        Each append is conditional and independent of the others.
        """
        return [self.append(m, expected, rec) for m, expected, rec in items]

    def stamps(self, metric_ids: Sequence[str]) -> list[object] | None:
        """Cheap change stamps of the logs of *metric_ids*, or None.

        A stamp is an opaque value that differs from every earlier stamp
        of the same metric once its log has changed (an append, a
        rewrite, a deletion), whichever process made the change.  A
        caller that took a stamp *before* reading a log can skip its next
        :meth:`read` while the stamp is unchanged.  None: the driver has
        no cheaper check than :meth:`read` (the default).
        """
        return None

    def read_many(
        self, items: Sequence[tuple[str, Version | None]]
    ) -> list[LogRead]:
        """:meth:`read` for several metrics; results in order."""
        return [self.read(metric_id, since) for metric_id, since in items]

    @abc.abstractmethod
    def rewrite(
        self, metric_id: str, expected: Version | None, record: bytes
    ) -> Version | None:
        """Atomically replace the whole log by one record (compaction).

        Conditional like :meth:`append`; a reader sees either the old log
        or the new one.
        """

    @abc.abstractmethod
    def delete(self, metric_id: str) -> None:
        """Remove every record of *metric_id* (no error when absent)."""

    def statistics(self) -> dict[str, int]:
        """Counters the driver can report (e.g. stored bytes)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""
