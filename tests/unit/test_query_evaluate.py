"""Evaluating operation trees over fetched series, without HTTP."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from alarmer.metrics import query
from alarmer.metrics.series.store import Series

G = 60 * 10**9
A = Series(G, np.array([0, G, 2 * G, 3 * G]), np.array([1.0, 2.0, 3.0, 4.0]))
B = Series(G, np.array([G, 2 * G, 4 * G]), np.array([10.0, 20.0, 40.0]))
KEYS = {("a", "mean"): [0], ("b", "mean"): [1]}


def run(raw, series=(A, B), keys=KEYS, **options):
    op = query.parse_operations(raw)
    return query.evaluate(op, G, list(series), keys, **options)


def test_metric_rows_keep_their_input_index():
    block = run(["metric", ["b", "mean"], ["a", "mean"]], fill="null", start=0)
    assert block.rows == (1, 0) and not block.aggregated
    assert block.times.tolist() == [0, G, 2 * G, 3 * G, 4 * G]
    np.testing.assert_array_equal(
        block.values,
        [
            [np.nan, 10.0, 20.0, np.nan, 40.0],
            [1.0, 2.0, 3.0, 4.0, np.nan],
        ],
    )


def test_aggregate_arithmetic_and_windows():
    block = run(
        ["aggregate", "sum", ["metric", ["a", "mean"], ["b", "mean"]]],
        fill=0,
    )
    assert block.aggregated and block.rows == ()
    assert block.values.tolist() == [[1.0, 12.0, 23.0, 4.0, 40.0]]
    diff = run(["-", ["metric", "b", "mean"], ["metric", "a", "mean"]])
    # no fill: cut to the timestamps both series have
    assert diff.times.tolist() == [G, 2 * G]
    assert diff.values.tolist() == [[8.0, 17.0]]
    # every referenced series is on the grid: b's gaps cut a's points
    rolled = run(["rolling", "max", 2, ["metric", "a", "mean"]])
    assert rolled.times.tolist() == [2 * G]
    assert rolled.values.tolist() == [[3.0]]
    alone = run(
        ["rolling", "max", 2, ["metric", "a", "mean"]],
        series=(A,),
        keys={("a", "mean"): [0]},
    )
    assert alone.values.tolist() == [[2.0, 3.0, 4.0]]
    resampled = run(
        ["resample", "mean", 120, ["metric", "a", "mean"]],
        series=(A,),
        keys={("a", "mean"): [0]},
    )
    assert resampled.granularity == 2 * G
    assert resampled.values.tolist() == [[1.5, 3.5]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            ["rolling", "mean", 9, ["metric", "a", "mean"]],
            "rolling window 9 is greater than the series length 2",
        ),
        (
            [
                "-",
                ["metric", ["a", "mean"], ["b", "mean"]],
                ["metric", ["a", "mean"], ["b", "mean"], ["c", "mean"]],
            ],
            "'-' between 2 and 3 series",
        ),
    ],
)
def test_operations_that_do_not_apply(raw, message):
    keys = {**KEYS, ("c", "mean"): [2]}
    with pytest.raises(query.OperationError, match=message):
        run(raw, series=(A, B, A), keys=keys)


def test_overlap_rules_are_the_grid_rules():
    with pytest.raises(
        query.NotEnoughOverlap, match=r"Less than 100\.000000%"
    ):
        run(["metric", "a", "mean"], needed_overlap=100, start=0)
    empty = Series(G, np.empty(0, dtype=np.int64), np.empty(0))
    with pytest.raises(query.NotEnoughOverlap, match="No overlap"):
        run(["metric", "a", "mean"], series=(empty, empty))
    block = run(["metric", "a", "mean"], series=(empty, empty), fill="null")
    assert block.times.size == 0


def test_the_package_needs_no_web_framework():
    code = (
        "import sys, alarmer.metrics.query; "
        "bad = [m for m in sys.modules if m == 'flask' or "
        "m.split('.')[0] == 'api' or m.startswith('alarmer.evaluator')]; "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
