"""Redis driver: one list per metric, shared by every host.

Keys (``<prefix>`` is ``[storage] redis_key_prefix``; the braces keep a
metric's keys in one Redis Cluster slot):

- ``<prefix>series:{<metric id>}``: a list of records (the log);
- ``<prefix>series-gen:{<metric id>}``: the generation, incremented when
  the log is rewritten or deleted.

Every read and conditional write is one Lua script, so it is atomic on
the server: an append happens only if the generation and the length of
the list are still those the writer read.  Durability is Redis': an
acknowledged write survives a crash of alarmer; surviving a crash of
Redis needs its ``appendonly`` persistence.

Records are stored without a checksum of their own (Redis keeps whole
values and checksums its persistence files), so the damage this driver
can meet is a record the engine cannot decode.  :meth:`RedisDriver.repair`
renames the damaged list to ``<prefix>series-damaged:{<metric id>}:<UTC
time>`` (kept, never expired), pushes the records kept as a new list and
bumps the generation, in one script conditional on the generation and
length that were scanned; every repair adds a JSON entry to the list
``<prefix>series-damage`` (the persistent journal).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import redis as redis_lib
from redis.commands.core import Script

from alarmer.metrics.series import drivers
from alarmer.metrics.series.drivers import (
    Decide,
    LogRead,
    Repair,
    Scan,
    SeriesDriver,
    SeriesStorageError,
    Version,
    check_metric_id,
)

LOG = logging.getLogger(__name__)

_READ = """
local g = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = redis.call('LLEN', KEYS[1])
if n == 0 then return {g, 0, 1, {}} end
local sg = tonumber(ARGV[1])
local sn = tonumber(ARGV[2])
if sg == g and sn >= 0 and sn <= n then
  if sn == n then return {g, n, 0, {}} end
  return {g, n, 0, redis.call('LRANGE', KEYS[1], sn, -1)}
end
return {g, n, 1, redis.call('LRANGE', KEYS[1], 0, -1)}
"""

_CHECK = """
local g = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = redis.call('LLEN', KEYS[1])
if ARGV[1] ~= '-1' and tonumber(ARGV[1]) ~= g then return nil end
if tonumber(ARGV[2]) ~= n then return nil end
"""

_APPEND = (
    _CHECK
    + """
return {g, redis.call('RPUSH', KEYS[1], ARGV[3])}
"""
)

_REWRITE = (
    _CHECK
    + """
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[1], ARGV[3])
return {redis.call('INCR', KEYS[2]), 1}
"""
)

# KEYS: log, generation, aside; ARGV: generation, length, kept records.
_REPAIR = (
    _CHECK
    + """
redis.call('RENAME', KEYS[1], KEYS[3])
for i = 3, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return {redis.call('INCR', KEYS[2]), #ARGV - 2}
"""
)

#: Repairs attempted before giving up while writers keep appending.
_REPAIR_ATTEMPTS = 50

_DELETE = """
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
return 1
"""


class RedisDriver(SeriesDriver):
    """Per-metric record lists in Redis."""

    BATCHED_APPENDS = True

    def __init__(self, url: str, *, prefix: str = "alarmer:") -> None:
        self.prefix = prefix
        self.client = redis_lib.Redis.from_url(url)
        self._read = self.client.register_script(_READ)
        self._append = self.client.register_script(_APPEND)
        self._rewrite = self.client.register_script(_REWRITE)
        self._delete = self.client.register_script(_DELETE)
        self._repair = self.client.register_script(_REPAIR)

    def keys(self, metric_id: str) -> list[str]:
        """The Redis keys of *metric_id* (log, generation)."""
        check_metric_id(metric_id)
        return [
            f"{self.prefix}series:{{{metric_id}}}",
            f"{self.prefix}series-gen:{{{metric_id}}}",
        ]

    def _call(
        self,
        script: Script,
        keys: list[str],
        args: Sequence[str | int | bytes],
    ) -> Any:
        try:
            return script(keys=keys, args=args)
        except redis_lib.RedisError as exc:
            raise SeriesStorageError(
                f"Redis series storage failed: {exc}"
            ) from exc

    def read(self, metric_id: str, since: Version | None = None) -> LogRead:
        args = [-1, -1] if since is None else [since.generation, since.length]
        gen, length, reset, records = self._call(
            self._read, self.keys(metric_id), args
        )
        if length == 0:
            return LogRead(None, True, [])
        return LogRead(Version(int(gen), int(length)), bool(reset), records)

    def read_many(
        self, items: Sequence[tuple[str, Version | None]]
    ) -> list[LogRead]:
        """Every read in one pipeline (one round trip)."""
        if len(items) < 2:
            return super().read_many(items)
        pipe = self.client.pipeline(transaction=False)
        for metric_id, since in items:
            args = (
                [-1, -1] if since is None else [since.generation, since.length]
            )
            self._read(keys=self.keys(metric_id), args=args, client=pipe)
        try:
            replies = pipe.execute()
        except redis_lib.RedisError as exc:
            raise SeriesStorageError(
                f"Redis series storage failed: {exc}"
            ) from exc
        return [
            LogRead(None, True, [])
            if length == 0
            else LogRead(Version(int(gen), int(length)), bool(reset), records)
            for gen, length, reset, records in replies
        ]

    def _conditional(
        self,
        script: Script,
        metric_id: str,
        expected: Version | None,
        record: bytes,
    ) -> Version | None:
        args: list[str | int | bytes] = (
            ["-1", 0, record]
            if expected is None
            else [expected.generation, expected.length, record]
        )
        result = self._call(script, self.keys(metric_id), args)
        if result is None:
            return None
        return Version(int(result[0]), int(result[1]))

    def append(
        self, metric_id: str, expected: Version | None, record: bytes
    ) -> Version | None:
        return self._conditional(self._append, metric_id, expected, record)

    def append_many(
        self, items: Sequence[tuple[str, Version | None, bytes]]
    ) -> list[Version | None]:
        """Every conditional append in one pipeline (one round trip)."""
        if len(items) < 2:
            return super().append_many(items)
        pipe = self.client.pipeline(transaction=False)
        for metric_id, expected, record in items:
            args: list[str | int | bytes] = (
                ["-1", 0, record]
                if expected is None
                else [expected.generation, expected.length, record]
            )
            self._append(keys=self.keys(metric_id), args=args, client=pipe)
        try:
            replies = pipe.execute()
        except redis_lib.RedisError as exc:
            raise SeriesStorageError(
                f"Redis series storage failed: {exc}"
            ) from exc
        return [
            None if r is None else Version(int(r[0]), int(r[1]))
            for r in replies
        ]

    def rewrite(
        self, metric_id: str, expected: Version | None, record: bytes
    ) -> Version | None:
        return self._conditional(self._rewrite, metric_id, expected, record)

    def delete(self, metric_id: str) -> None:
        self._call(self._delete, self.keys(metric_id), [])

    # -- damage ------------------------------------------------------------

    def _journal_key(self) -> str:
        return f"{self.prefix}series-damage"

    def scan(self, metric_id: str) -> Scan | None:
        key = self.keys(metric_id)[0]
        _gen, length, _reset, records = self._call(
            self._read, self.keys(metric_id), [-1, -1]
        )
        if length == 0:
            return None
        return Scan(list(records), [], key, int(length))

    def repair(self, metric_id: str, decide: Decide) -> Repair | None:
        keys = self.keys(metric_id)
        for _attempt in range(_REPAIR_ATTEMPTS):
            gen, length, _reset, records = self._call(
                self._read, keys, [-1, -1]
            )
            if length == 0:
                return None
            salvage = decide(Scan(list(records), [], keys[0], int(length)))
            if salvage is None:
                return None
            aside = (
                f"{self.prefix}series-damaged:{{{metric_id}}}:"
                f"{drivers.aside_stamp()}"
            )
            args: list[bytes | int] = [int(gen), int(length)]
            args.extend(salvage.records)
            result = self._call(self._repair, [*keys, aside], args)
            if result is None:
                continue  # appended to meanwhile: scan again
            new_gen, kept = int(result[0]), int(result[1])
            repair = Repair(
                metric_id=metric_id,
                where=keys[0],
                aside=aside,
                damage=tuple(salvage.damage),
                frames=len(records),
                kept=kept,
                points=salvage.points,
                version=Version(new_gen, kept) if kept else None,
            )
            entry = json.dumps(
                repair.journal_entry(drivers.journal_time()), sort_keys=True
            )
            try:
                self.client.rpush(self._journal_key(), entry)
            except redis_lib.RedisError as exc:
                raise SeriesStorageError(
                    f"Redis series storage failed: {exc}"
                ) from exc
            return repair
        raise SeriesStorageError(
            f"metric {metric_id}: the damaged series kept changing; "
            "not repaired"
        )

    def list_series(self) -> Iterator[str]:
        start = f"{self.prefix}series:{{"
        try:
            for key in self.client.scan_iter(
                match=_glob_escape(start) + "*", count=1000
            ):
                name = key.decode() if isinstance(key, bytes) else key
                if name.startswith(start) and name.endswith("}"):
                    yield name[len(start) : -1]
        except redis_lib.RedisError as exc:
            raise SeriesStorageError(
                f"Redis series storage failed: {exc}"
            ) from exc

    def damage_journal(self) -> list[dict[str, Any]]:
        try:
            raw = self.client.lrange(self._journal_key(), 0, -1)
        except redis_lib.RedisError as exc:
            raise SeriesStorageError(
                f"Redis series storage failed: {exc}"
            ) from exc
        entries = []
        for item in raw:
            try:
                entries.append(json.loads(item))
            except ValueError:
                entries.append({"kinds": [], "damage": [], "metric_id": None})
        return entries

    def close(self) -> None:
        self.client.close()


def _glob_escape(text: str) -> str:
    """*text* matched literally by a Redis ``SCAN MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
