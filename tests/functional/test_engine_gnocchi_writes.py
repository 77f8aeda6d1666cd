"""Across writes, every stored series equals Gnocchi 4.7.1's.

Each case writes the same batches to our engine (file driver) and to
Gnocchi's own storage path (its file driver, see
:mod:`tests.functional.gnocchi_reference`), one Gnocchi processing batch
per write, then compares every method at every granularity: the
engine that wrote, and a second engine that replays the metric's log
from disk.  Cases are seeded random (batches of varied sizes, late
points inside and beyond the back window, re-sent timestamps within one
write and across writes, retention) plus hand-picked edges, among them
a cumulative counter written by several processing batches (what
Ceilometer sends and Heat's ``rate:mean`` alarms read).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from alarmer.metrics import policy as ap
from alarmer.metrics.series import aggregation as agg
from alarmer.metrics.series import store as eng
from alarmer.metrics.series.drivers import file as file_driver

pytest.importorskip("gnocchi.storage.file")

from tests.functional.gnocchi_reference import GnocchiMetric
from tests.unit.test_aggregation import ALL_METHODS

NS = ap.NS
BASE = 1_700_000_040 * NS
# every plain method, a few more percentiles, and each under rate:
PLAIN = (
    *(m for m in ALL_METHODS if not m.startswith("rate:")),
    "1pct",
    "50pct",
    "99pct",
)
EVERY_METHOD = PLAIN + tuple("rate:" + m for m in PLAIN)


@dataclasses.dataclass
class Case:
    """Archive policy and the batches written, in order."""

    name: str
    policy: ap.ArchivePolicy
    writes: list[tuple[np.ndarray, np.ndarray]]


def policy(items, back_window=0, methods=EVERY_METHOD):
    return ap.ArchivePolicy(
        "p",
        tuple(ap.PolicyItem(g * NS, p) for g, p in items),
        tuple(methods),
        back_window,
    )


def batch(seconds, values) -> tuple[np.ndarray, np.ndarray]:
    ts = BASE + np.round(np.asarray(seconds, dtype=np.float64) * NS)
    return ts.astype(np.int64), np.asarray(values, dtype=np.float64)


def frozen(reference: GnocchiMetric, policy, method, g, exp_ts) -> bool:
    """Whether Gnocchi shows a series left behind by the newest bucket.

    A ``std`` or ``rate:`` series whose newest value is more than the
    timespan plus ``RETENTION_SLACK`` buckets older than the newest
    bucket keeps its last values in Gnocchi; our engine has dropped
    them (docs/storage.md).
    """
    points = policy.item(g).points
    if points is None or not exp_ts.size:
        return False
    newest = int(reference.read("count", g)[0][-1])
    return int(exp_ts[-1]) <= newest - (points + agg.RETENTION_SLACK) * g


def compare(engines, metric_id, reference: GnocchiMetric, case: Case):
    for engine in engines:
        for method in case.policy.aggregation_methods:
            for g in case.policy.granularities:
                (got,) = engine.get_measures(metric_id, method, g)
                exp_ts, exp_values = reference.read(method, g)
                where = f"{case.name}: {method} at {g // NS}s"
                if frozen(reference, case.policy, method, g, exp_ts):
                    assert not got.timestamps.size, where
                    continue
                assert got.timestamps.tolist() == exp_ts.tolist(), where
                np.testing.assert_allclose(
                    got.values, exp_values, rtol=1e-9, atol=1e-9, err_msg=where
                )


def run_case(case: Case, tmp_path, compact_deltas: int = 4) -> None:
    reference = GnocchiMetric(case.policy, str(tmp_path / "gnocchi"))
    base = str(tmp_path / "alarmer")
    engine = eng.SeriesStore(
        file_driver.FileDriver(base), compact_deltas=compact_deltas
    )
    metric = eng.MetricRef("m", case.policy)
    for ts, values in case.writes:
        engine.add_measures(metric, ts, values)
        reference.write(ts, values)
    fresh = eng.SeriesStore(file_driver.FileDriver(base))
    try:
        compare((engine, fresh), "m", reference, case)
    finally:
        engine.close()
        fresh.close()


# -- hand-picked -----------------------------------------------------------


def counter_case() -> Case:
    """A cumulative counter in three processing batches (Ceilometer)."""
    seconds = np.arange(0, 600, 10.0)
    values = np.cumsum(np.linspace(1, 3, seconds.size) ** 2)
    writes = [
        batch(seconds[:17], values[:17]),
        batch(seconds[17:40], values[17:40]),
        batch(seconds[40:], values[40:]),
    ]
    return Case("counter", policy([(60, None), (300, None)]), writes)


HAND_PICKED = {
    "counter": counter_case(),
    # the second write opens a bucket after a gap longer than a bucket
    "gap-then-write": Case(
        "gap-then-write",
        policy([(60, None)]),
        [batch([0, 20, 40], [1, 2, 4]), batch([200, 210], [10, 13])],
    ),
    # the second write continues the open bucket
    "same-bucket": Case(
        "same-bucket",
        policy([(60, None)]),
        [batch([0, 20, 65], [1, 2, 4]), batch([70, 80], [10, 13])],
    ),
    # a gap longer than a bucket inside one write, then a write in the
    # bucket after the gap
    "gap-inside-write": Case(
        "gap-inside-write",
        policy([(60, None)]),
        [batch([0, 10, 190], [1, 2, 9]), batch([200, 205], [10, 14])],
    ),
    # a re-sent timestamp alone in a write
    "resend-single": Case(
        "resend-single",
        policy([(60, None)]),
        [batch([0, 10, 130], [1, 2, 9]), batch([130], [5])],
    ),
    # duplicated timestamps within one write
    "duplicates-in-write": Case(
        "duplicates-in-write",
        policy([(60, None)]),
        [batch([0, 10, 10, 20, 20, 20], [1, 5, 3, 2, 9, 4])],
    ),
    # a late point inside the back window, one beyond it
    "late": Case(
        "late",
        policy([(60, None), (300, None)], back_window=1),
        [
            batch(np.arange(0, 900, 15), np.arange(60.0)),
            batch([130, 1000], [7.5, 70]),
            batch([10, 1010], [-1, 71]),
        ],
    ),
    # only late points beyond the back window in one write
    "late-only": Case(
        "late-only",
        policy([(60, None)]),
        [batch([0, 30, 130, 150], [1, 2, 3, 5]), batch([5], [9])],
    ),
    # retention: the oldest buckets leave as new ones come
    "retention": Case(
        "retention",
        policy([(60, 3), (300, 2)]),
        [
            batch(np.arange(i * 70, i * 70 + 70, 7), np.arange(10.0) + i)
            for i in range(20)
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(HAND_PICKED))
def test_hand_picked_equal_gnocchi(name, tmp_path):
    run_case(HAND_PICKED[name], tmp_path)


def test_counter_rate_mean_of_second_write_equals_gnocchi(tmp_path):
    """The first bucket of a second write, as Heat's alarms read it."""
    case = counter_case()
    reference = GnocchiMetric(case.policy, str(tmp_path / "gnocchi"))
    engine = eng.SeriesStore(file_driver.FileDriver(str(tmp_path / "a")))
    metric = eng.MetricRef("m", case.policy)
    for ts, values in case.writes:
        engine.add_measures(metric, ts, values)
        reference.write(ts, values)
    (got,) = engine.get_measures("m", "rate:mean", 60 * NS)
    exp_ts, exp_values = reference.read("rate:mean", 60 * NS)
    second = int(case.writes[1][0][0])
    bucket = second - second % (60 * NS)
    i = exp_ts.tolist().index(bucket)
    assert got.timestamps[i] == bucket
    assert got.values[i] == pytest.approx(exp_values[i], rel=1e-12)
    engine.close()


# -- seeded random ---------------------------------------------------------

POLICIES = (
    [(60, None)],
    [(60, None), (300, None)],
    [(10, None), (60, None), (3600, None)],
    [(60, 5), (300, 3)],
    [(15, 8), (60, 4)],
    [(30, None), (120, 6)],
)


def random_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    items = POLICIES[seed % len(POLICIES)]
    back_window = int(rng.integers(0, 3))
    counter = bool(rng.integers(0, 2))
    step = float(rng.choice([1.0, 7.0, 13.0, 45.0]))
    n = int(rng.integers(20, 400))
    seconds = np.cumsum(rng.integers(1, 4, n) * step)
    # a few long gaps
    for _ in range(int(rng.integers(0, 4))):
        at = int(rng.integers(0, n))
        seconds[at:] += float(rng.integers(60, 900))
    if counter:
        values = np.cumsum(rng.exponential(5.0, n)).round(3)
    else:
        values = rng.normal(50, 20, n).round(2)
    writes = []
    i = 0
    while i < n:
        size = int(rng.choice([1, 1, 2, 3, 5, 8, 20, 60]))
        ts = seconds[i : i + size].copy()
        vals = values[i : i + size].copy()
        i += size
        roll = rng.random()
        if roll < 0.15 and i > 5:
            # re-send some already written timestamps, new values
            k = int(rng.integers(1, min(i, 6) + 1))
            back = rng.choice(seconds[max(0, i - 40) : i], k)
            ts = np.concatenate((back, ts))
            vals = np.concatenate((rng.normal(50, 20, k).round(2), vals))
        elif roll < 0.3 and i > 5:
            # late points: between older ones, some beyond the back window
            k = int(rng.integers(1, 4))
            late = seconds[i - size - 1] - rng.uniform(0, 2000, k).round(1)
            ts = np.concatenate((ts, late))
            vals = np.concatenate((vals, rng.normal(50, 20, k).round(2)))
        elif roll < 0.4 and ts.size > 1:
            # duplicated timestamps within the write
            dup = rng.integers(0, ts.size, 2)
            ts = np.concatenate((ts, ts[dup]))
            vals = np.concatenate((vals, rng.normal(50, 20, 2).round(2)))
        if rng.random() < 0.3:
            order = rng.permutation(ts.size)
            ts, vals = ts[order], vals[order]
        writes.append(batch(ts, vals))
    return Case(f"seed {seed}", policy(items, back_window), writes)


@pytest.mark.parametrize("seed", range(40))
def test_random_writes_equal_gnocchi(seed, tmp_path):
    run_case(random_case(seed), tmp_path, compact_deltas=1 + seed % 5)
