"""Damaged series: everything recoverable is served, nothing lost silently.

Each kind of damage is made on a log written by the real engine
(several writes, compactions included, so the log is a snapshot then
deltas), then read by a fresh engine (a restart): the read answers the
points of what still verifies, the damaged file is kept aside, the
repair is logged with the metric id and counted (persistently), and a
following write keeps the recovered points plus the new ones.  The
expected points are computed from what was written, write by write.
"""

from __future__ import annotations

import dataclasses
import fcntl
import glob
import json
import logging
import os
import struct
import subprocess
import sys
import uuid
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarmer import runtime
from alarmer.metrics import policy as ap
from alarmer.metrics.series import check, codec
from alarmer.metrics.series import drivers as storage
from alarmer.metrics.series import store as eng
from alarmer.metrics.series.drivers import file as file_driver
from alarmer.metrics.series.drivers import redis as redis_driver

NS = ap.NS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
POLICY = ap.ArchivePolicy(
    "damage",
    (ap.PolicyItem(1 * NS, None),),
    ("count", "sum"),
    back_window=0,
)
METRIC = "m-damaged"
#: Writes of 100 points each; with compaction every 3 deltas the log
#: ends as one snapshot (writes 0-8) and three deltas (writes 9-11).
WRITES = 12
PER_WRITE = 100
COMPACT_DELTAS = 3
_FRAME = struct.Struct("<II")
HEADER = 12


def write_points(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (ns) and values of write *i* (one bucket per point)."""
    seconds = np.arange(i * PER_WRITE, (i + 1) * PER_WRITE, dtype=np.int64)
    return seconds * NS, np.full(PER_WRITE, float(i + 1))


def expected_points(writes) -> dict[int, float]:
    """{timestamp ns: sum} held by the given writes."""
    out: dict[int, float] = {}
    for i in writes:
        ts, values = write_points(i)
        out.update(zip(ts.tolist(), values.tolist(), strict=True))
    return out


def stored_points(store: eng.SeriesStore, metric_id=METRIC):
    series = store.get_measures(metric_id, "sum", NS)[0]
    counts = store.get_measures(metric_id, "count", NS)[0]
    assert (counts.values == 1.0).all()
    return dict(
        zip(series.timestamps.tolist(), series.values.tolist(), strict=True)
    )


def open_store(base: str) -> eng.SeriesStore:
    return eng.SeriesStore(
        file_driver.FileDriver(base), compact_deltas=COMPACT_DELTAS
    )


def frames_of(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, total size, kind byte) of each frame of a sound log."""
    out = []
    pos = HEADER
    while pos < len(data):
        length, _crc = _FRAME.unpack_from(data, pos)
        out.append((pos, _FRAME.size + length, data[pos + 8 : pos + 9]))
        pos += _FRAME.size + length
    assert pos == len(data)
    return out


@pytest.fixture
def written(tmp_path):
    """A log written by the engine: (base path, log path, its bytes)."""
    base = str(tmp_path / "series")
    store = open_store(base)
    ref = eng.MetricRef(METRIC, POLICY)
    for i in range(WRITES):
        store.add_measures(ref, *write_points(i))
    store.close()
    path = file_driver.FileDriver(base).path(METRIC)
    with open(path, "rb") as fh:
        data = fh.read()
    kinds = [kind for _pos, _size, kind in frames_of(data)]
    assert kinds == [b"S", b"D", b"D", b"D"]  # writes 0-8, then 9, 10, 11
    return base, path, data


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1 :]


def _garbage_payload_frame(data: bytes) -> bytes:
    """The delta of write 10 replaced by a frame that verifies, garbage."""
    pos, size, _kind = frames_of(data)[2]
    payload = b"D" + bytes(range(7, 7 + 40))  # not a delta of any size
    new = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
    return data[:pos] + new + data[pos + size :]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    damage: object  # (bytes) -> bytes
    writes: tuple[int, ...]  # writes whose points are recoverable
    kinds: tuple[str, ...]


def _middle_of_delta(data: bytes) -> int:
    pos, size, _kind = frames_of(data)[2]  # the delta of write 10
    return pos + size // 2


ALL = tuple(range(WRITES))
CASES = [
    Case("cut", lambda d: d[:-5], tuple(range(11)), (storage.TORN_TAIL,)),
    Case(
        "cut-plus-garbage",
        lambda d: d[:-5] + bytes(range(100, 200)),
        tuple(range(11)),
        (storage.BAD_TAIL,),
    ),
    Case(
        "flipped-byte",
        lambda d: _flip(d, _middle_of_delta(d)),
        (*range(10), 11),
        (storage.BAD_FRAME,),
    ),
    Case(
        "bad-header",
        lambda d: b"XLG1" + d[4:],
        ALL,
        (storage.BAD_HEADER,),
    ),
    Case("empty", lambda d: b"", (), (storage.EMPTY,)),
    Case("cut-in-header", lambda d: d[:7], (), (storage.SHORT_HEADER,)),
    Case(
        "appended-garbage",
        lambda d: d + b"\xff" * 13,
        ALL,
        (storage.TORN_TAIL,),
    ),
    Case(
        "valid-crc-garbage-payload",
        _garbage_payload_frame,
        (*range(10), 11),
        (storage.UNDECODABLE,),
    ),
    Case(
        # The only snapshot is damaged: the deltas have nothing to
        # apply to; they stay in the file set aside.
        "flipped-snapshot",
        lambda d: _flip(d, HEADER + 40),
        (),
        (storage.BAD_FRAME,),
    ),
]


def asides(path: str) -> list[str]:
    return sorted(glob.glob(glob.escape(path) + "~damaged-*"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_damage_is_recovered_kept_aside_logged_counted(case, written, caplog):
    base, path, data = written
    damaged = case.damage(data)
    with open(path, "wb") as fh:
        fh.write(damaged)
    store = open_store(base)  # a restart
    assert store.damage_report()["repaired"] == 0
    with caplog.at_level(logging.ERROR):
        got = stored_points(store)
    assert got == expected_points(case.writes)
    # The damaged file is kept aside, byte for byte.
    (aside,) = asides(path)
    with open(aside, "rb") as fh:
        assert fh.read() == damaged
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert METRIC in message and path in message and aside in message
    for kind in case.kinds:
        assert kind in message
    report = store.damage_report()
    assert report["repaired"] == 1
    assert set(case.kinds) <= set(report["by_kind"])
    assert store.statistics()["damaged_series_repaired"] == 1
    # The log is sound now; a restart still counts the repair.
    again = open_store(base)
    finding = again.inspect(METRIC)
    assert finding is None or not finding.damaged
    assert again.damage_report()["repaired"] == 1
    # A following write keeps the recovered points plus the new ones.
    ref = eng.MetricRef(METRIC, POLICY)
    result = again.add_measures(ref, *write_points(WRITES))
    assert result.stored == PER_WRITE
    want = expected_points((*case.writes, WRITES))
    assert stored_points(again) == want
    assert stored_points(open_store(base)) == want
    assert len(asides(path)) == 1
    assert open_store(base).damage_report()["repaired"] == 1


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_damage_met_by_a_write_first(case, written, caplog):
    """A restarted writer meets the damage before any read."""
    base, path, data = written
    with open(path, "wb") as fh:
        fh.write(case.damage(data))
    store = open_store(base)
    ref = eng.MetricRef(METRIC, POLICY)
    with caplog.at_level(logging.ERROR):
        result = store.add_measures(ref, *write_points(WRITES))
    assert result.stored == PER_WRITE
    assert any(METRIC in r.getMessage() for r in caplog.records)
    want = expected_points((*case.writes, WRITES))
    assert stored_points(store) == want
    assert stored_points(open_store(base)) == want
    assert len(asides(path)) == 1
    assert store.damage_report()["repaired"] == 1


def test_writer_cuts_a_torn_tail_after_its_version_keeping_a_copy(
    written, caplog
):
    """An append that died half-way: the next writer cuts it, copy kept."""
    base, path, _data = written
    store = open_store(base)
    ref = eng.MetricRef(METRIC, POLICY)
    store.add_measures(ref, *write_points(WRITES))  # cached version
    record = codec.encode_delta(*write_points(WRITES + 1))
    frame = file_driver.frame(record)
    with open(path, "ab") as fh:
        fh.write(frame[: len(frame) // 2])  # never acknowledged
    with open(path, "rb") as fh:
        before = fh.read()
    with caplog.at_level(logging.ERROR):
        store.add_measures(ref, *write_points(WRITES + 2))
    (aside,) = asides(path)
    with open(aside, "rb") as fh:
        assert fh.read() == before
    assert any(
        METRIC in r.getMessage() and storage.TORN_TAIL in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR
    )
    want = expected_points((*range(WRITES + 1), WRITES + 2))
    assert stored_points(open_store(base)) == want
    assert store.damage_report()["by_kind"] == {storage.TORN_TAIL: 1}


def test_writer_never_cuts_a_complete_frame_that_fails(written, caplog):
    """A bad frame after the writer's version: repaired, never cut."""
    base, path, _data = written
    store = open_store(base)
    ref = eng.MetricRef(METRIC, POLICY)
    store.add_measures(ref, *write_points(WRITES))
    record = codec.encode_delta(*write_points(WRITES + 1))
    bad = _FRAME.pack(len(record), zlib.crc32(record) ^ 1) + record
    with open(path, "ab") as fh:
        fh.write(bad)
    with open(path, "rb") as fh:
        before = fh.read()
    with pytest.raises(storage.DamagedLog):
        store.driver.append(METRIC, store.driver.read(METRIC).version, b"x")
    with caplog.at_level(logging.ERROR):
        store.add_measures(ref, *write_points(WRITES + 2))
    (aside,) = asides(path)
    with open(aside, "rb") as fh:
        assert fh.read() == before
    want = expected_points((*range(WRITES + 1), WRITES + 2))
    assert stored_points(open_store(base)) == want
    assert store.damage_report()["by_kind"] == {storage.BAD_TAIL: 1}


def test_torn_tail_of_an_append_in_progress_is_not_damage(written, caplog):
    """While a writer holds the lock, its half-written frame is no damage."""
    base, path, _data = written
    record = codec.encode_delta(*write_points(WRITES))
    frame = file_driver.frame(record)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as an appending writer does
        size = os.fstat(fd).st_size
        os.pwrite(fd, frame[:100], size)
        driver = file_driver.FileDriver(base)
        read = driver.read(METRIC)
        assert read.damage is None and len(read.records) == 4
        with caplog.at_level(logging.WARNING):
            got = stored_points(open_store(base))
        assert got == expected_points(ALL)
        os.pwrite(fd, frame[100:], size + 100)  # the append completes
    finally:
        os.close(fd)  # releases the lock
    assert caplog.records == []
    assert asides(path) == []
    assert driver.damage_journal() == []
    assert stored_points(open_store(base)) == expected_points((*ALL, WRITES))


def test_same_torn_tail_without_a_writer_is_damage(written):
    base, path, _data = written
    record = codec.encode_delta(*write_points(WRITES))
    with open(path, "ab") as fh:
        fh.write(file_driver.frame(record)[:100])
    driver = file_driver.FileDriver(base)
    read = driver.read(METRIC)
    assert read.damage is not None
    assert read.damage.kind == storage.TORN_TAIL
    assert len(read.records) == 4


def test_offline_check_and_repair_in_process(written):
    base, path, data = written
    with open(path, "wb") as fh:
        fh.write(_flip(data, _middle_of_delta(data)))
    store = open_store(base)
    store.add_measures(eng.MetricRef("orphan-1", POLICY), *write_points(0))
    report = check.check_series(store, lambda ids: [METRIC])
    assert report.checked == 2
    assert [f.metric_id for f in report.damaged] == [METRIC]
    assert report.by_kind() == {storage.BAD_FRAME: 1}
    assert report.orphans == ["orphan-1"]
    assert report.exit_code() == 1
    assert asides(path) == []  # a check alone changes nothing
    fixed = check.check_series(store, lambda ids: ids, repair=True)
    assert fixed.exit_code() == 0
    assert [f.metric_id for f in fixed.repaired] == [METRIC]
    assert len(asides(path)) == 1
    text = check.format_report(fixed)
    assert "repaired: 1" in text and METRIC in text
    clean = check.check_series(open_store(base), lambda ids: ids)
    assert clean.damaged == [] and clean.exit_code() == 0
    assert stored_points(open_store(base)) == expected_points((*range(10), 11))


def test_progress_bar_only_on_a_terminal(tmp_path):
    class Tty:
        def __init__(self, tty):
            self.tty = tty
            self.text = []

        def isatty(self):
            return self.tty

        def write(self, text):
            self.text.append(text)

        def flush(self):
            pass

    quiet = Tty(False)
    assert check._progress(["a"], quiet) == ["a"]
    pytest.importorskip("tqdm")
    loud = Tty(True)
    assert list(check._progress(["a", "b"], loud)) == ["a", "b"]
    assert "series" in "".join(loud.text)


# -- random damage ---------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """(log bytes, frames, writes per frame) written once by the engine."""
    base = str(tmp_path_factory.mktemp("pristine") / "series")
    store = open_store(base)
    ref = eng.MetricRef(METRIC, POLICY)
    for i in range(WRITES):
        store.add_measures(ref, *write_points(i))
    with open(store.driver.path(METRIC), "rb") as fh:
        data = fh.read()
    store.close()
    return data, frames_of(data), [range(9), [9], [10], [11]]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.integers(min_value=0, max_value=10**6),
    flips=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**6),
            st.integers(min_value=1, max_value=255),
        ),
        max_size=4,
    ),
)
def test_random_cuts_and_flips_never_raise_nor_lose_the_intact_prefix(
    pristine, tmp_path_factory, cut, flips
):
    data, frames, writes = pristine
    size = cut % (len(data) + 1)
    damaged = bytearray(data[:size])
    first_bad = size
    for pos, xor in flips:
        if not damaged:
            break
        pos %= len(damaged)
        damaged[pos] ^= xor
        first_bad = min(first_bad, pos)
    intact: list[int] = []
    if first_bad >= HEADER:
        for (pos, length, _kind), made_by in zip(frames, writes, strict=True):
            if pos + length > first_bad:
                break
            intact.extend(made_by)
    base = str(tmp_path_factory.mktemp("random") / "series")
    path = file_driver.FileDriver(base).path(METRIC)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as fh:
        fh.write(bytes(damaged))
    store = open_store(base)
    got = stored_points(store)
    want = expected_points(intact)
    assert {t: got.get(t) for t in want} == want
    if bytes(damaged) != data:
        assert store.damage_report()["repaired"] <= 1
    ref = eng.MetricRef(METRIC, POLICY)
    store.add_measures(ref, *write_points(WRITES))
    after = stored_points(open_store(base))
    assert set(want) | set(expected_points([WRITES])) <= set(after)


# -- over HTTP ---------------------------------------------------------------

ADMIN = {"X-User-Id": "admin", "X-Project-Id": "p-admin", "X-Roles": "admin"}
ALICE = {"X-User-Id": "alice", "X-Project-Id": "p-a", "X-Roles": "member"}
T0 = 1_700_000_000 - 1_700_000_000 % 3600


def _api_metric(client) -> str:
    r = client.post(
        "/v1/archive_policy",
        json={
            "name": "dmg",
            "back_window": 0,
            "definition": [{"granularity": 60, "points": 1000}],
            "aggregation_methods": ["sum", "count"],
        },
        headers=ADMIN,
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    r = client.post(
        "/v1/metric", json={"archive_policy_name": "dmg"}, headers=ALICE
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()["id"]


def _post(client, mid: str, batch: int) -> None:
    body = [
        {"timestamp": T0 + 60 * (batch * 10 + k), "value": batch + 1}
        for k in range(10)
    ]
    r = client.post(f"/v1/metric/{mid}/measures", json=body, headers=ALICE)
    assert r.status_code == 202, r.get_data(as_text=True)


def test_http_reads_recovered_points_and_status_counts(rt, caplog):
    from api.app import create_app

    client = create_app(rt).test_client()
    mid = _api_metric(client)
    for batch in range(4):  # a snapshot, then three deltas
        _post(client, mid, batch)
    path = rt.series.driver.path(mid)
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(data[:-7])  # the last write's frame is cut
    restarted = runtime.build(rt.conf)
    try:
        api = create_app(restarted).test_client()
        with caplog.at_level(logging.ERROR):
            r = api.get(
                f"/v1/metric/{mid}/measures?aggregation=count",
                headers=ALICE,
            )
        assert r.status_code == 200, r.get_data(as_text=True)
        assert len(r.get_json()) == 30  # batches 0-2, 10 buckets each
        assert [p[2] for p in r.get_json()] == [1.0] * 30
        assert any(mid in rec.getMessage() for rec in caplog.records)
        status = api.get("/v1/status", headers=ADMIN).get_json()
        damaged = status["alarmer"]["damaged_series"]
        assert damaged["repaired"] == 1
        assert damaged["by_kind"] == {storage.TORN_TAIL: 1}
        assert damaged["last"]["metric_id"] == mid
        assert "alarmer" not in status["storage"]
        _post(api, mid, 4)
        r = api.get(
            f"/v1/metric/{mid}/measures?aggregation=count", headers=ALICE
        )
        assert len(r.get_json()) == 40
    finally:
        restarted.close()


# -- the command line --------------------------------------------------------


def _alarmer(*args: str) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "alarmer")
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_alarmer_check_command(make_conf, tmp_path):
    from api.app import create_app

    data_dir = str(tmp_path / "data")
    rt = runtime.build(make_conf(), migrate=True)
    try:
        client = create_app(rt).test_client()
        mid = _api_metric(client)
        r = client.post(
            "/v1/metric", json={"archive_policy_name": "dmg"}, headers=ALICE
        )
        sound = r.get_json()["id"]
        for batch in range(4):
            _post(client, mid, batch)
            _post(client, sound, batch)
        rt.series.add_measures(
            eng.MetricRef("orphan-1", POLICY), *write_points(0)
        )
        path = rt.series.driver.path(mid)
    finally:
        rt.close()
    with open(path, "rb") as fh:
        data = fh.read()
    pos, size, _kind = frames_of(data)[2]
    with open(path, "wb") as fh:
        fh.write(_flip(data, pos + size // 2))

    found = _alarmer("check", "--data-dir", data_dir)
    assert found.returncode == 1, found.stdout + found.stderr
    assert "series checked: 3" in found.stdout
    assert "damaged series: 1" in found.stdout
    assert f"  {storage.BAD_FRAME}: 1" in found.stdout
    assert mid in found.stdout
    assert "orphans (series without a metric in the index): 1" in (
        found.stdout
    )
    assert "  orphan-1" in found.stdout
    assert asides(path) == []

    fixed = _alarmer("check", "--repair", "--data-dir", data_dir)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "repaired: 1" in fixed.stdout
    assert mid in fixed.stderr  # the repair is logged at ERROR
    assert len(asides(path)) == 1

    clean = _alarmer("check", "--data-dir", data_dir)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "damaged series: 0" in clean.stdout
    assert "repairs recorded before this check: 1" in clean.stdout

    rt = runtime.build(make_conf())
    try:
        client = create_app(rt).test_client()
        r = client.get(
            f"/v1/metric/{mid}/measures?aggregation=sum", headers=ALICE
        )
        assert r.status_code == 200
        sums = sorted({p[2] for p in r.get_json()})
        assert sums == [1.0, 2.0, 4.0]  # batch 2 (value 3) was damaged
        assert len(r.get_json()) == 30
    finally:
        rt.close()


# -- Redis -------------------------------------------------------------------


@pytest.fixture
def redis_prefix(redis_url):
    import redis

    prefix = f"alarmer-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_undecodable_record_is_recovered(
    redis_url, redis_prefix, caplog
):
    def open_redis() -> eng.SeriesStore:
        driver = redis_driver.RedisDriver(redis_url, prefix=redis_prefix)
        return eng.SeriesStore(driver, compact_deltas=COMPACT_DELTAS)

    store = open_redis()
    ref = eng.MetricRef(METRIC, POLICY)
    for i in range(WRITES):
        store.add_measures(ref, *write_points(i))
    client = store.driver.client
    key = store.driver.keys(METRIC)[0]
    assert client.llen(key) == 4  # writes 0-8, 9, 10, 11
    client.lset(key, 2, b"D" + b"garbage")  # the delta of write 10
    damaged = client.lrange(key, 0, -1)

    fresh = open_redis()
    report = check.check_series(fresh, None)
    assert [f.metric_id for f in report.damaged] == [METRIC]
    assert report.by_kind() == {storage.UNDECODABLE: 1}
    with caplog.at_level(logging.ERROR):
        assert stored_points(fresh) == expected_points((*range(10), 11))
    assert any(METRIC in r.getMessage() for r in caplog.records)
    aside_keys = list(
        client.scan_iter(match=f"{redis_prefix}series-damaged:*")
    )
    assert len(aside_keys) == 1
    assert client.lrange(aside_keys[0], 0, -1) == damaged
    assert open_redis().damage_report()["repaired"] == 1
    assert json.loads(client.lindex(f"{redis_prefix}series-damage", 0))[
        "kinds"
    ] == [storage.UNDECODABLE]
    fresh.add_measures(ref, *write_points(WRITES))
    assert stored_points(open_redis()) == expected_points(
        (*range(10), 11, WRITES)
    )
    assert list(open_redis().driver.list_series()) == [METRIC]


def test_a_length_running_past_the_end_with_frames_after_is_not_cut(
    tmp_path,
):
    """Only an incomplete *final* frame is cut; a damaged length is not."""
    driver = file_driver.FileDriver(str(tmp_path / "series"))
    v1 = driver.append("t", None, b"one")
    v2 = driver.append("t", v1, b"two")
    driver.append("t", v2, b"three")
    path = driver.path("t")
    with open(path, "r+b") as fh:
        fh.seek(v1.length + 3)  # the high byte of the length of "two"
        fh.write(b"\x7f")
    with open(path, "rb") as fh:
        damaged = fh.read()
    with pytest.raises(storage.DamagedLog):
        driver.append("t", v1, b"late")
    with open(path, "rb") as fh:
        assert fh.read() == damaged
    repair = driver.repair("t", storage.keep_verified)
    assert repair is not None
    assert [d.kind for d in repair.damage] == [storage.BAD_FRAME]
    assert driver.read("t").records == [b"one", b"three"]
    with open(repair.aside, "rb") as fh:
        assert fh.read() == damaged
    assert driver.repair("t", storage.keep_verified) is None
    assert len(driver.damage_journal()) == 1


# -- the driver verbs of repair, on both drivers ----------------------------


@pytest.fixture(params=["file", "redis"])
def any_driver(request, tmp_path):
    if request.param == "file":
        drv = file_driver.FileDriver(str(tmp_path / "series"))
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        drv = redis_driver.RedisDriver(url, prefix=prefix)
    yield drv
    drv.close()


def test_driver_repair_scan_list_and_journal(any_driver):
    driver = any_driver
    v1 = driver.append("m1", None, b"one")
    v2 = driver.append("m1", v1, b"two")
    driver.append("m1", v2, b"three")
    assert driver.scan("m1").records == [b"one", b"two", b"three"]
    assert driver.scan("m1").damage == []
    assert driver.scan("absent") is None
    assert driver.repair("m1", storage.keep_verified) is None  # sound
    assert driver.damage_journal() == []
    seen = []

    def decide(scan):
        seen.append(list(scan.records))
        return storage.Salvage(
            [b"one", b"three"],
            [storage.Damage(storage.UNDECODABLE, "record 1: test")],
            points=7,
        )

    repair = driver.repair("m1", decide)
    assert seen == [[b"one", b"two", b"three"]]
    assert (repair.frames, repair.kept, repair.points) == (3, 2, 7)
    read = driver.read("m1")
    assert read.records == [b"one", b"three"]
    assert read.version == repair.version and read.damage is None
    assert driver.append("m1", v2, b"stale") is None
    assert driver.append("m1", repair.version, b"four") is not None
    (entry,) = driver.damage_journal()
    assert entry["metric_id"] == "m1" and entry["aside"] == repair.aside
    assert entry["kinds"] == [storage.UNDECODABLE]
    assert (entry["frames"], entry["kept"], entry["points"]) == (3, 2, 7)
    assert list(driver.list_series()) == ["m1"]
    assert driver.repair("absent", decide) is None
    gone = driver.repair(
        "m1",
        lambda scan: storage.Salvage(
            [], [storage.Damage(storage.UNDECODABLE, "all")]
        ),
    )
    assert gone.version is None and gone.kept == 0
    assert driver.read("m1").version is None
    assert list(driver.list_series()) == []
    assert len(driver.damage_journal()) == 2
    assert driver.append("m1", None, b"again") is not None
    assert driver.read("m1").records == [b"again"]


def test_deltas_before_any_snapshot_are_set_aside(tmp_path):
    """A log that does not start with a snapshot: its snapshot is kept."""
    from alarmer.metrics.series import aggregation as agg

    base = str(tmp_path / "series")
    driver = file_driver.FileDriver(base)
    state = agg.MetricState(POLICY)
    state.apply(*write_points(1))
    v1 = driver.append(METRIC, None, codec.encode_delta(*write_points(0)))
    driver.append(METRIC, v1, codec.encode_snapshot(state))
    store = open_store(base)
    assert stored_points(store) == expected_points([1])
    assert store.damage_report()["by_kind"] == {storage.UNDECODABLE: 1}
    assert len(asides(driver.path(METRIC))) == 1
    assert open_store(base).inspect(METRIC).damage == ()


def test_repair_by_another_writer_replaces_a_log_held_open(tmp_path):
    """A writer keeps the log open; another repairs it.  The damaged
    bytes stay in the copy set aside, the log replaced has no name left,
    and the writer's next append goes into the repaired log."""
    base = str(tmp_path / "series")
    writer = file_driver.FileDriver(base)
    repairer = file_driver.FileDriver(base)
    v1 = writer.append("m1", None, b"one")
    v2 = writer.append("m1", v1, b"two")  # the log is now kept open
    with open(writer.path("m1"), "rb") as fh:
        before = fh.read()
    held = writer._take_handle("m1")
    assert held is not None
    writer._give_handles([("m1", held)])

    def drop_first(scan):
        return storage.Salvage(
            scan.records[1:],
            [storage.Damage(storage.UNDECODABLE, "record 0: test")],
        )

    repair = repairer.repair("m1", drop_first)
    assert os.fstat(held[0]).st_nlink == 0  # the old log has no name
    with open(repair.aside, "rb") as fh:
        assert fh.read() == before
    assert writer.append("m1", v2, b"stale") is None
    assert writer.append_many([("m1", v2, b"stale")]) == [None]
    v3 = writer.append_many([("m1", repair.version, b"three")])[0]
    assert v3 is not None
    assert repairer.read("m1").records == [b"two", b"three"]
    assert writer.append("m1", v3, b"four") is not None
    assert file_driver.FileDriver(base).read("m1").records == [
        b"two",
        b"three",
        b"four",
    ]
    writer.close()
    repairer.close()


def test_open_logs_are_bounded(tmp_path):
    """A writer keeps at most ``open_logs`` logs open."""
    driver = file_driver.FileDriver(str(tmp_path / "series"), open_logs=3)
    fds_before = len(os.listdir("/proc/self/fd"))
    ids = [f"b{k:02d}" for k in range(10)]
    versions = driver.append_many([(m, None, b"one") for m in ids])
    for record in (b"two", b"three"):
        versions = driver.append_many(
            [(m, v, record) for m, v in zip(ids, versions, strict=True)]
        )
        assert None not in versions
    # the open log directories, and 3 logs
    dirs = len({m[:2] for m in ids})
    assert len(os.listdir("/proc/self/fd")) - fds_before <= dirs + 3
    for m in ids:
        assert driver.read(m).records == [b"one", b"two", b"three"]
    driver.close()
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_open_logs_leave_low_descriptors_to_sockets(tmp_path):
    """Logs kept open never take the descriptor numbers ``select()``
    can watch: a socket opened after thousands of logs still works
    with it (waitress serves the API with ``select()``)."""
    import resource
    import select
    import socket

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        pytest.skip(f"descriptor limit {soft}: no room above 1024")
    driver = file_driver.FileDriver(str(tmp_path / "series"), open_logs=1500)
    ids = [f"{k:04x}" for k in range(1500)]
    versions = driver.append_many([(m, None, b"one") for m in ids])
    versions = driver.append_many(
        [(m, v, b"two") for m, v in zip(ids, versions, strict=True)]
    )
    assert None not in versions
    assert len(driver._handles) == 1500
    assert min(fd for fd, _gen in driver._handles.values()) >= 1024
    left, right = socket.socketpair()
    try:
        assert left.fileno() < 1024
        right.send(b"x")
        ready, _, _ = select.select([left], [], [], 5)
        assert ready == [left]
    finally:
        left.close()
        right.close()
    driver.close()
