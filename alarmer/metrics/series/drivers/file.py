"""File driver: one append-only log file per metric.

Layout: ``<basepath>/<first two characters of the id>/<metric id>``.
The file is a 12-byte header (``b"ALG1"`` and a random 64-bit
*generation* that identifies this incarnation of the log, so that a
version read from a replaced file can never match its successor, even
when the file system reuses the inode number) followed by frames
``[u32 length][u32 crc32][payload]``.

- A write appends one frame under an exclusive ``fcntl.flock`` of the
  file, after checking that the file is still at the version the writer
  read (same generation, same length); the data is in the kernel when
  :meth:`FileDriver.append` returns, so it survives ``kill -9`` of the
  process (``fsync=True`` also makes it survive a power loss).
- Readers take no lock: they stop at the first incomplete frame or bad
  checksum, which can only be a write that was never acknowledged; the
  next writer truncates such a torn tail before appending.
- :meth:`FileDriver.stamps` is one ``stat()`` per metric: (inode, size,
  change time).  An append grows the file, a compaction renames a new
  file (a new inode) over it, a deletion removes it, so any acknowledged
  change by any process gives a new stamp.
- Compaction writes the new log to a temporary file and ``rename()``s it
  over the old one, holding the old file's lock; a writer that acquires
  a lock checks that its file is still the one at the path, so no append
  can land in a replaced file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import struct
import threading
import zlib
from collections.abc import Sequence

from alarmer.metrics.series.drivers import (
    LogRead,
    SeriesDriver,
    Version,
    check_metric_id,
)

LOG = logging.getLogger(__name__)
_FRAME = struct.Struct("<II")
_HEADER = struct.Struct("<4sQ")
_MAGIC = b"ALG1"
#: Bytes read at once after a known version (more: sized by fstat()).
_TAIL_READ = 64 * 1024


def _stamp(st: os.stat_result) -> int:
    """(inode, size, change time) packed into one exact integer."""
    return (st.st_ino << 128) | (st.st_size << 64) | st.st_ctime_ns


def new_header() -> tuple[int, bytes]:
    """A fresh generation and the file header carrying it."""
    generation = secrets.randbits(63) or 1
    return generation, _HEADER.pack(_MAGIC, generation)


def read_generation(fd: int, size: int) -> int | None:
    """Generation of the log open at *fd* (None: empty or not a log)."""
    if size < _HEADER.size:
        return None
    magic, generation = _HEADER.unpack(os.pread(fd, _HEADER.size, 0))
    return generation if magic == _MAGIC else None


def frame(record: bytes) -> bytes:
    """Frame one record: length, CRC-32, payload."""
    return _FRAME.pack(len(record), zlib.crc32(record)) + record


def parse_frames(data: bytes | memoryview) -> tuple[list[bytes], int]:
    """Records of *data* up to the first torn or corrupt frame.

    :returns: (records, number of valid bytes).
    """
    records: list[bytes] = []
    pos = 0
    size = len(data)
    view = memoryview(data)
    while pos + _FRAME.size <= size:
        length, crc = _FRAME.unpack_from(view, pos)
        end = pos + _FRAME.size + length
        if end > size:
            break
        payload = bytes(view[pos + _FRAME.size : end])
        if zlib.crc32(payload) != crc:
            break
        records.append(payload)
        pos = end
    return records, pos


class FileDriver(SeriesDriver):
    """Per-metric log files under *basepath*."""

    def __init__(self, basepath: str, *, fsync: bool = False) -> None:
        self.basepath = os.path.abspath(basepath)
        self.fsync = fsync
        os.makedirs(self.basepath, exist_ok=True)
        # Open directories of the logs, by the first two characters of
        # the ids: stamps() stats a name relative to one (no full path
        # walk per metric).
        self._dirs: dict[str, int] = {}
        self._dirs_lock = threading.Lock()

    def _dir_fd(self, prefix: str) -> int | None:
        fd = self._dirs.get(prefix)
        if fd is not None:
            return fd
        with self._dirs_lock:
            fd = self._dirs.get(prefix)
            if fd is None:
                try:
                    fd = os.open(
                        os.path.join(self.basepath, prefix),
                        os.O_RDONLY | os.O_DIRECTORY,
                    )
                except FileNotFoundError:
                    return None
                self._dirs[prefix] = fd
            return fd

    def stamps(self, metric_ids: Sequence[str]) -> list[object]:
        """(inode, size, change time) of each log file; 0 when absent.

        Log directories are never removed, so a directory kept open
        stays the one at its path.
        """
        out: list[object] = []
        append = out.append
        stat = os.stat
        dirs = self._dirs
        for metric_id in metric_ids:
            fd = dirs.get(metric_id[:2])
            try:
                if fd is None or "/" in metric_id:
                    fd = self._dir_fd(check_metric_id(metric_id)[:2])
                    if fd is None:
                        append(0)
                        continue
                st = stat(metric_id, dir_fd=fd)
            except FileNotFoundError:
                append(0)
                continue
            append(_stamp(st))
        return out

    def close(self) -> None:
        with self._dirs_lock:
            for fd in self._dirs.values():
                os.close(fd)
            self._dirs.clear()

    def path(self, metric_id: str) -> str:
        """The log file of *metric_id*."""
        check_metric_id(metric_id)
        return os.path.join(self.basepath, metric_id[:2], metric_id)

    # -- reads -------------------------------------------------------------

    def read(self, metric_id: str, since: Version | None = None) -> LogRead:
        try:
            fd = os.open(self.path(metric_id), os.O_RDONLY)
        except FileNotFoundError:
            return LogRead(None, True, [])
        return self._read_fd(fd, since)

    def read_many(
        self, items: Sequence[tuple[str, Version | None]]
    ) -> list[LogRead]:
        """:meth:`read` of each, opening names relative to open directories.

        Log directories are never removed (see :meth:`stamps`).
        """
        out: list[LogRead] = []
        dirs = self._dirs
        for metric_id, since in items:
            dfd = dirs.get(metric_id[:2])
            try:
                if dfd is None or "/" in metric_id:
                    dfd = self._dir_fd(check_metric_id(metric_id)[:2])
                    if dfd is None:
                        out.append(LogRead(None, True, []))
                        continue
                fd = os.open(metric_id, os.O_RDONLY, dir_fd=dfd)
            except FileNotFoundError:
                out.append(LogRead(None, True, []))
                continue
            out.append(self._read_fd(fd, since))
        return out

    def _read_fd(self, fd: int, since: Version | None) -> LogRead:
        """Read the log open at *fd* (closed on return)."""
        try:
            if since is not None:
                # The usual case, a few frames appended since *since*:
                # read them up to the end of the file, no fstat().
                magic, generation = _HEADER.unpack(
                    os.pread(fd, _HEADER.size, 0).ljust(_HEADER.size, b"\0")
                )
                if magic == _MAGIC and generation == since.generation:
                    # Within a generation a log only grows past every
                    # version handed out (a torn tail that is cut off
                    # never held a complete frame), so nothing after
                    # *since* means unchanged.
                    data = os.pread(fd, _TAIL_READ, since.length)
                    if not data:
                        return LogRead(since, False, [])
                    if len(data) < _TAIL_READ:
                        records, valid = parse_frames(data)
                        return LogRead(
                            Version(generation, since.length + valid),
                            False,
                            records,
                        )
            size = os.fstat(fd).st_size
            generation = read_generation(fd, size)
            if generation is None:
                return LogRead(None, True, [])
            if since is not None and since.generation == generation:
                if since.length == size:
                    return LogRead(since, False, [])
                if since.length < size:
                    data = os.pread(fd, size - since.length, since.length)
                    records, valid = parse_frames(data)
                    return LogRead(
                        Version(generation, since.length + valid),
                        False,
                        records,
                    )
            data = os.pread(fd, size - _HEADER.size, _HEADER.size)
        finally:
            os.close(fd)
        records, valid = parse_frames(data)
        if not records:
            return LogRead(None, True, [])
        return LogRead(
            Version(generation, _HEADER.size + valid), True, records
        )

    # -- writes ------------------------------------------------------------

    def _open_locked(self, path: str, create: bool) -> int | None:
        """Open and exclusively lock the current file at *path*.

        None when the file does not exist and *create* is false.
        """
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        while True:
            try:
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError:
                if not create:
                    return None
                os.makedirs(os.path.dirname(path), exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                try:
                    current = os.stat(path).st_ino
                except FileNotFoundError:
                    current = None
                if current == st.st_ino and st.st_nlink:
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # replaced or deleted meanwhile: retry

    def _check(
        self, fd: int, expected: Version | None
    ) -> tuple[int, int, bytes] | None:
        """Where to write: (generation, offset, header to write first).

        None when *expected* is stale.  A tail that holds no valid frame
        (a torn, unacknowledged write) is cut off.
        """
        size = os.fstat(fd).st_size
        generation = read_generation(fd, size)
        if generation is None or (
            expected is None
            and not parse_frames(
                os.pread(fd, size - _HEADER.size, _HEADER.size)
            )[0]
        ):
            # Empty (or only a torn first write): a fresh log.
            if expected is not None:
                return None
            if size:
                os.ftruncate(fd, 0)
            generation, header = new_header()
            return generation, 0, header
        if expected is None or expected.generation != generation:
            return None
        want = expected.length
        if size == want:
            return generation, want, b""
        if size < want:
            return None
        tail = os.pread(fd, size - want, want)
        if parse_frames(tail)[0]:
            return None
        LOG.warning(
            "series log generation %x: dropping %d bytes of an "
            "incomplete write",
            generation,
            size - want,
        )
        os.ftruncate(fd, want)
        return generation, want, b""

    def append(
        self, metric_id: str, expected: Version | None, record: bytes
    ) -> Version | None:
        path = self.path(metric_id)
        fd = self._open_locked(path, create=expected is None)
        if fd is None:
            return None
        try:
            where = self._check(fd, expected)
            if where is None:
                return None
            generation, at, header = where
            data = header + frame(record)
            written = os.pwrite(fd, data, at)
            if written != len(data):
                os.ftruncate(fd, at)
                raise OSError(errno.EIO, f"short write to {path}")
            if self.fsync:
                os.fsync(fd)
                if at == 0:  # a new log: make its directory entry durable
                    self._fsync_dir(os.path.dirname(path))
            # Still under the lock: the stamp of exactly this log.
            return Version(generation, at + written, _stamp(os.fstat(fd)))
        finally:
            os.close(fd)

    def rewrite(
        self, metric_id: str, expected: Version | None, record: bytes
    ) -> Version | None:
        path = self.path(metric_id)
        fd = self._open_locked(path, create=expected is None)
        if fd is None:
            return None
        try:
            if self._check(fd, expected) is None:
                return None
            generation, header = new_header()
            tmp = f"{path}.{generation:x}.tmp"
            data = header + frame(record)
            tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(tfd, data)
                if self.fsync:
                    os.fsync(tfd)
            finally:
                os.close(tfd)
            os.rename(tmp, path)
            if self.fsync:
                self._fsync_dir(os.path.dirname(path))
            return Version(generation, len(data))
        finally:
            os.close(fd)

    @staticmethod
    def _fsync_dir(path: str) -> None:
        dfd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def delete(self, metric_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(metric_id))

    def statistics(self) -> dict[str, int]:
        return {}
