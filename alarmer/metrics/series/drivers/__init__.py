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

Damage: a read reports what it could not read (:attr:`LogRead.damage`,
a hint taken without any lock); :meth:`SeriesDriver.repair` checks the
log again where no write can be in progress, keeps what the caller
chooses among the records that verify, sets the damaged log aside
(never deleted) and records the repair in a journal that survives
restarts (:meth:`SeriesDriver.damage_journal`).
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from alarmer import timeutils
from alarmer.errors import AlarmerError

_METRIC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class SeriesStorageError(AlarmerError):
    """The series storage failed."""


class InvalidMetricId(SeriesStorageError, ValueError):
    """A metric id that cannot name stored data."""


#: Kinds of damage (stable strings: logs, ``alarmer check``, status).
EMPTY = "empty"
SHORT_HEADER = "short header"
BAD_HEADER = "bad header"
TORN_TAIL = "torn tail"
BAD_TAIL = "bad tail"
BAD_FRAME = "bad frame"
UNDECODABLE = "undecodable record"
KINDS = (
    EMPTY,
    SHORT_HEADER,
    BAD_HEADER,
    TORN_TAIL,
    BAD_TAIL,
    BAD_FRAME,
    UNDECODABLE,
)


@dataclasses.dataclass(frozen=True)
class Damage:
    """One damaged part of a metric's log.

    ``kind`` is one of :data:`KINDS`:

    - ``empty``, ``short header``: a log file of no bytes, or cut inside
      its 12-byte header (nothing can be recovered);
    - ``bad header``: the header is not a log header (the frames after
      it are still read);
    - ``torn tail``: the last frame is incomplete (its length runs past
      the end, or not even its 8-byte frame header is there) while no
      write is in progress; everything before it is kept;
    - ``bad tail``: bytes after the last frame that verifies hold no
      frame at all (a complete frame failing its checksum, garbage);
    - ``bad frame``: unreadable bytes with frames that verify after
      them (they are kept);
    - ``undecodable record``: a record that verifies (or a driver
      without checksums) but that the engine cannot decode.
    """

    kind: str
    detail: str


class DamagedLog(SeriesStorageError):
    """A write found the log damaged: :meth:`SeriesDriver.repair` it."""

    def __init__(self, metric_id: str, damage: Damage) -> None:
        super().__init__(
            f"metric {metric_id}: damaged series ({damage.kind}: "
            f"{damage.detail})"
        )
        self.metric_id = metric_id
        self.damage = damage


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
    #: What this read could not read, when it stopped at damage rather
    #: than at the end of the log or at a write in progress.  No lock is
    #: held while reading: :meth:`SeriesDriver.repair` checks again.
    damage: Damage | None = None


@dataclasses.dataclass(frozen=True)
class Scan:
    """A whole log read record by record, past any damage."""

    #: Every record that verifies, in log order.
    records: list[bytes]
    #: What could not be read (empty: the log is sound for the driver).
    damage: list[Damage]
    #: Where the log is (a path, a key), for messages.
    where: str
    #: Size of the log scanned (bytes for files, records for lists).
    size: int


@dataclasses.dataclass(frozen=True)
class Salvage:
    """What to keep of a damaged log: the caller's decision on a scan."""

    #: Records of the new log, in order (may be empty).
    records: list[bytes]
    #: Every damage found: the scan's and the caller's own.
    damage: list[Damage]
    #: Points the kept records hold (for the journal and messages).
    points: int = 0


@dataclasses.dataclass(frozen=True)
class Repair:
    """A log that was set aside and rewritten from what was recovered."""

    metric_id: str
    #: Where the log is (a path, a key).
    where: str
    #: Where the damaged log was kept (a path, a key).
    aside: str
    damage: tuple[Damage, ...]
    #: Records that verified, and those of them kept.
    frames: int
    kept: int
    points: int
    #: Version of the new log (None: nothing could be kept, no log).
    version: Version | None

    def journal_entry(self, when: str) -> dict[str, Any]:
        """The journal line of this repair (JSON-serializable)."""
        return {
            "time": when,
            "metric_id": self.metric_id,
            "where": self.where,
            "aside": self.aside,
            "kinds": sorted({d.kind for d in self.damage}),
            "damage": [[d.kind, d.detail] for d in self.damage],
            "frames": self.frames,
            "kept": self.kept,
            "points": self.points,
        }


#: A caller's decision on a scan: what to keep, or None (nothing to
#: repair).
Decide = Callable[[Scan], "Salvage | None"]


def keep_verified(scan: Scan) -> Salvage | None:
    """A :data:`Decide` keeping every record that verifies.

    For callers that do not decode records; the engine decides with
    its own (:meth:`~alarmer.metrics.series.store.SeriesStore.repair`).
    """
    if not scan.damage:
        return None
    return Salvage(list(scan.records), list(scan.damage))


def aside_stamp() -> str:
    """The current UTC time as the suffix of a log set aside."""
    return timeutils.utcnow().strftime("%Y%m%dT%H%M%S.%fZ")


def journal_time() -> str:
    """The current UTC time as a damage journal entry shows it."""
    return timeutils.isoformat(timeutils.utcnow()) or ""


class SeriesDriver(abc.ABC):
    """Append-only per-metric record logs with conditional writes."""

    #: True when :meth:`append_many` is cheaper than one :meth:`append`
    #: per metric (e.g. one network round trip for all).
    BATCHED_APPENDS = False

    @abc.abstractmethod
    def read(self, metric_id: str, since: Version | None = None) -> LogRead:
        """Records of *metric_id* after *since* (all when None/stale).

        A record that is incomplete or fails its checksum ends the
        records returned: an append in progress is not reported, damage
        is (:attr:`LogRead.damage`; nothing is repaired by a read).
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

    @abc.abstractmethod
    def scan(self, metric_id: str) -> Scan | None:
        """Read every record of the log that verifies (None: no log).

        Read-only; waits for a write in progress, so that an incomplete
        final frame it reports is not one.
        """

    @abc.abstractmethod
    def repair(self, metric_id: str, decide: Decide) -> Repair | None:
        """Rewrite a damaged log from what *decide* keeps of its scan.

        Where no write can be in progress (the file's lock, a
        conditional script), scan the log, call *decide*; unless it
        returns None, set the log aside unchanged (a new name, never
        deleted), write the kept records as a new log (a new
        generation; none when nothing is kept) and add a line to the
        damage journal.  None: nothing repaired (no log, or *decide*
        found nothing to repair).
        """

    @abc.abstractmethod
    def list_series(self) -> Iterator[str]:
        """Ids of every metric that has a log."""

    @abc.abstractmethod
    def damage_journal(self) -> list[dict[str, Any]]:
        """Every repair recorded so far, oldest first (persistent)."""

    def statistics(self) -> dict[str, int]:
        """Counters the driver can report (e.g. stored bytes)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""
