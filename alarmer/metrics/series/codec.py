"""Serialization of a metric's state and of its log records (no I/O).

A metric is stored as a log of records: a *snapshot* (the whole
:class:`~alarmer.metrics.series.aggregation.MetricState`) followed by *deltas*
(the points accepted by one write, replayed through
:meth:`MetricState.apply`, which is deterministic).  Record layout:

- snapshot: ``b"S"`` + LZ4 block of (JSON header, arrays);
- delta: ``b"D"``, a little-endian u32 count, then the int64
  timestamps and the float64 values (16 bytes per point, no compression:
  deltas are small and short-lived, compaction folds them into the next
  snapshot).  A write that changes the policy writes a snapshot instead.

Timestamps are delta-encoded (bucket timestamps in units of the
granularity) so that they compress to almost nothing; values are raw
float64.
"""

from __future__ import annotations

import json
import struct

import lz4.block
import numpy as np

from alarmer.errors import AlarmerError
from alarmer.metrics import policy as ap
from alarmer.metrics.series import aggregation as agg

SNAPSHOT = b"S"
DELTA = b"D"
_HEAD = struct.Struct("<I")


class CorruptRecord(AlarmerError, ValueError):
    """A record cannot be decoded."""


def policy_to_json(policy: ap.ArchivePolicy) -> dict:
    """Compact JSON form of a policy (ns granularities)."""
    return {
        "name": policy.name,
        "definition": [[i.granularity, i.points] for i in policy.definition],
        "methods": list(policy.aggregation_methods),
        "back_window": policy.back_window,
    }


def policy_from_json(data: dict) -> ap.ArchivePolicy:
    """Inverse of :func:`policy_to_json`."""
    return ap.ArchivePolicy(
        name=data["name"],
        definition=tuple(
            ap.PolicyItem(int(g), None if p is None else int(p))
            for g, p in data["definition"]
        ),
        aggregation_methods=tuple(data["methods"]),
        back_window=int(data["back_window"]),
    )


def _pack(header: dict, arrays: list[np.ndarray]) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    body = b"".join(
        [_HEAD.pack(len(head)), head]
        + [np.ascontiguousarray(a).tobytes() for a in arrays]
    )
    return lz4.block.compress(body, store_size=True)


#: LZ4 expands at most about 255 times: a larger size stored in front of
#: a block is damage (and must not be allocated).
_LZ4_MAX_RATIO = 256


def _unpack(blob: bytes) -> tuple[dict, memoryview, int]:
    if len(blob) < 4:
        raise CorruptRecord("snapshot shorter than its size field")
    claimed = int.from_bytes(blob[:4], "little")
    if claimed > _LZ4_MAX_RATIO * len(blob) + 64:
        raise CorruptRecord(f"snapshot claims {claimed} bytes uncompressed")
    try:
        body = lz4.block.decompress(blob)
    except (lz4.block.LZ4BlockError, ValueError) as exc:
        raise CorruptRecord(str(exc)) from exc
    if len(body) < _HEAD.size:
        raise CorruptRecord("snapshot body shorter than its header")
    (hlen,) = _HEAD.unpack_from(body, 0)
    header = json.loads(body[4 : 4 + hlen])
    if not isinstance(header, dict):
        raise CorruptRecord("snapshot header is not an object")
    return header, memoryview(body), 4 + hlen


def _delta_ts(ts: np.ndarray, unit: int) -> np.ndarray:
    out = np.empty(ts.size, dtype=np.int64)
    if ts.size:
        out[0] = ts[0]
        out[1:] = np.diff(ts) // unit
    return out


def _undelta_ts(enc: np.ndarray, unit: int) -> np.ndarray:
    if enc.size == 0:
        return enc.astype(np.int64)
    out = enc.copy()
    out[1:] *= unit
    return np.cumsum(out)


def encode_snapshot(state: agg.MetricState) -> bytes:
    """Serialize a whole metric state.

    :raises ValueError: for a state trimmed in memory (it would lose the
        buckets only storage holds).
    """
    if state.trimmed:
        raise ValueError("cannot snapshot a trimmed metric state")
    arrays: list[np.ndarray] = [state.raw_ts, state.raw_values]
    levels = []
    for g, level in state.levels.items():
        levels.append([g, int(level.ts.size)])
        arrays.append(_delta_ts(level.ts, g))
        arrays.extend(level.cols[c] for c in state.columns)
    header = {
        "policy": policy_to_json(state.policy),
        "last_ts": state.last_ts,
        "raw": int(state.raw_ts.size),
        "levels": levels,
        "columns": list(state.columns),
    }
    raw = arrays[0]
    arrays[0] = _delta_ts(raw, 1)
    return SNAPSHOT + _pack(header, arrays)


def encode_delta(ts: np.ndarray, values: np.ndarray) -> bytes:
    """Serialize the accepted points of one write."""
    n = int(ts.size)
    return b"".join(
        (
            DELTA,
            _HEAD.pack(n),
            np.ascontiguousarray(ts, dtype="<i8").tobytes(),
            np.ascontiguousarray(values, dtype="<f8").tobytes(),
        )
    )


def _take(
    view: memoryview, pos: int, n: int, dtype: type
) -> tuple[np.ndarray, int]:
    if not isinstance(n, int) or n < 0:
        raise CorruptRecord(f"invalid array size {n!r}")
    size = n * 8
    if pos + size > len(view):
        raise CorruptRecord("record shorter than its header says")
    arr: np.ndarray = np.frombuffer(view[pos : pos + size], dtype=dtype).copy()
    return arr, pos + size


def decode_snapshot(record: bytes) -> agg.MetricState:
    """Inverse of :func:`encode_snapshot`.

    :raises CorruptRecord: for anything that is not a snapshot this
        module wrote (damaged bytes included), never another error.
    """
    if record[:1] != SNAPSHOT:
        raise CorruptRecord("not a snapshot record")
    try:
        return _decode_snapshot(record)
    except CorruptRecord:
        raise
    except Exception as exc:  # any decoding failure of damaged bytes
        raise CorruptRecord(
            f"undecodable snapshot: {type(exc).__name__}: {exc}"
        ) from exc


def _decode_snapshot(record: bytes) -> agg.MetricState:
    header, view, pos = _unpack(record[1:])
    state = agg.MetricState(policy_from_json(header["policy"]))
    if list(state.columns) != header["columns"]:
        raise CorruptRecord("snapshot columns do not match its policy")
    state.last_ts = header["last_ts"]
    nraw = header["raw"]
    raw_ts, pos = _take(view, pos, nraw, np.int64)
    raw_values, pos = _take(view, pos, nraw, np.float64)
    state.raw.set(_undelta_ts(raw_ts, 1), raw_values)
    if sorted(g for g, _n in header["levels"]) != sorted(state.levels):
        raise CorruptRecord("snapshot levels do not match its policy")
    for g, n in header["levels"]:
        enc, pos = _take(view, pos, n, np.int64)
        cols = {}
        for col in state.columns:
            cols[col], pos = _take(view, pos, n, np.float64)
        item = state.policy.item(g)
        state.levels[g] = agg.Level(
            g, _undelta_ts(enc, g), cols, item.timespan if item else None
        )
    if pos != len(view):
        raise CorruptRecord("snapshot longer than its header says")
    return state


def decode_delta(record: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_delta`.

    :raises CorruptRecord: not a delta of the right size.
    """
    if record[:1] != DELTA or len(record) < 5:
        raise CorruptRecord("not a delta record")
    (n,) = _HEAD.unpack_from(record, 1)
    if len(record) != 5 + 16 * n:
        raise CorruptRecord("delta record of the wrong size")
    ts = np.frombuffer(record, dtype="<i8", count=n, offset=5)
    values = np.frombuffer(record, dtype="<f8", count=n, offset=5 + 8 * n)
    return ts.astype(np.int64), values.astype(np.float64)
