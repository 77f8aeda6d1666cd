"""read_last_many: the batched read agrees with MetricState.read_last."""

from __future__ import annotations

import numpy as np
import pytest

from alarmer.metrics import policy as ap
from alarmer.metrics.series import aggregation as agg
from tests.unit.test_aggregation import ALL_METHODS

NS = ap.NS
POLICY = ap.ArchivePolicy(
    "many",
    (ap.PolicyItem(60 * NS, 100), ap.PolicyItem(300 * NS, 10)),
    tuple(ALL_METHODS),
    0,
)


def _states() -> list[agg.MetricState | None]:
    rng = np.random.default_rng(3)
    states: list[agg.MetricState | None] = []
    for i in range(12):
        state = agg.MetricState(POLICY)
        # Varying lengths (0..), one-point buckets (no std), gaps, and
        # the first bucket of a rate: series (no value).
        minutes = [m for m in range(i + (i % 3)) if (m + i) % 4]
        ts = []
        for m in minutes:
            ts.extend(m * 60 * NS + k * NS for k in range(1 + (m + i) % 3))
        ts = np.array(ts, dtype=np.int64)
        state.apply(ts, rng.random(ts.size) * 100)
        states.append(state)
    states.append(None)
    return states


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_rows_equal_read_last(method, n):
    states = _states()
    for gran in (60 * NS, 300 * NS):
        levels = [s.levels[gran] if s else None for s in states]
        tsm, values, ok = agg.read_last_many(levels, method, n)
        assert tsm.shape == values.shape == (len(states), n)
        assert not ok[-1]
        for i, state in enumerate(states[:-1]):
            ts, vals = state.read_last(method, gran, n)
            if ok[i]:
                assert tsm[i].tolist() == ts.tolist()
                # Bit for bit: same element-wise arithmetic.
                assert values[i].tobytes() == vals.tobytes()
            else:
                # Left to read_last: short, or a bucket without a value.
                level = state.levels[gran]
                cols = {
                    k: v[level.hi - n : level.hi]
                    for k, v in level.cols.items()
                }
                short = len(level) < n
                assert short or agg.method_values(method, cols)[1] is not None
    # Some rows of every method do go the batched way.
    levels = [s.levels[60 * NS] if s else None for s in states]
    assert agg.read_last_many(levels, method, 1)[2].any()


def test_method_columns():
    assert agg.method_columns("mean") == ("count", "sum")
    assert agg.method_columns("std") == ("count", "m2", "sum")
    assert agg.method_columns("rate:max") == ("rate:count", "rate:max")
    assert agg.method_columns("95pct") == ("95pct", "count")
