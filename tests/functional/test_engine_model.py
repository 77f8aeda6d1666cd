"""Random writes through two engines sharing one file store.

Two engines (as two processes would) write random batches -- in order,
late, duplicated, refused -- with frequent log compactions and restarts;
every engine, and a fresh one, must then read exactly what the
independent model computes from the accepted points.
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alarmer.metrics import policy as ap
from alarmer.metrics.series import store as eng
from alarmer.metrics.series.drivers import file as file_driver
from tests.functional.test_engine import check_all, make_policy
from tests.unit.test_aggregation import Model, reference_series

NS = ap.NS

_batch = st.lists(
    st.tuples(
        st.integers(0, 3000),
        # Measures with a millisecond resolution: the model (two-pass) and
        # the engine (running accumulators) then agree to rtol=1e-9 even for
        # the std of nearly equal values; denormals are out of scope.
        st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False).map(
            lambda v: round(v, 3)
        ),
    ),
    min_size=1,
    max_size=8,
)
_op = st.one_of(
    st.tuples(st.sampled_from(["write0", "write1"]), _batch),
    st.tuples(st.sampled_from(["restart0", "restart1"]), st.none()),
)


def check_last(engine: eng.SeriesStore, metric_id: str, model: Model) -> None:
    """last_buckets, inside and beyond what a trimmed cache holds."""
    for item in model.policy.definition:
        for method in ("mean", "std", "rate:max"):
            expected = reference_series(model, method, item.granularity)
            for n in (1, 3, 50):
                got = engine.last_buckets(
                    metric_id, method, item.granularity, n
                )
                assert got.timestamps.tolist() == list(expected)[-n:]
                np.testing.assert_allclose(
                    got.values, list(expected.values())[-n:], rtol=1e-9
                )
            # a window starting at the third newest bucket
            if len(expected) >= 3:
                start = list(expected)[-3]
                (series,) = engine.get_measures(
                    metric_id, method, item.granularity, start
                )
                assert series.timestamps.tolist() == list(expected)[-3:]


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(_op, min_size=1, max_size=25), back=st.integers(0, 2))
def test_two_engines_match_the_model(ops, back):
    policy = make_policy(
        [(10, 30), (60, None), (300, 4)],
        methods=("mean", "std", "count", "last", "median", "rate:max"),
        back_window=back,
    )
    metric = eng.MetricRef("metric-model", policy)
    base = tempfile.mkdtemp()
    try:
        engines = [
            eng.SeriesStore(
                file_driver.FileDriver(base), compact_deltas=3, hot_buckets=2
            )
            for _ in range(2)
        ]
        model = Model(policy)
        for op, batch in ops:
            index = int(op[-1])
            if op.startswith("restart"):
                engines[index].close()
                engines[index] = eng.SeriesStore(
                    file_driver.FileDriver(base),
                    compact_deltas=3,
                    hot_buckets=2,
                )
                continue
            ts = [t * NS for t, _ in batch]
            values = [v for _, v in batch]
            before = model.refused
            model.write(ts, values)
            result = engines[index].add_measures(
                metric, np.array(ts), np.array(values)
            )
            assert result.refused == model.refused - before
        if model.points:
            for engine in [
                *engines,
                eng.SeriesStore(file_driver.FileDriver(base)),
            ]:
                check_all(engine, metric.id, model)
                check_last(engine, metric.id, model)
    finally:
        shutil.rmtree(base)
