"""The aggregates language: S-expressions and the typed operation tree."""

from __future__ import annotations

import pytest

from alarmer.metrics import query


def test_sexpr_matches_the_list_form():
    assert query.parse_sexpr("(aggregate mean (metric (a mean) (b max)))") == [
        "aggregate",
        "mean",
        ["metric", ["a", "mean"], ["b", "max"]],
    ]
    assert query.parse_sexpr('(metric "x y" mean)') == [
        "metric",
        "x y",
        "mean",
    ]
    for bad in ("(metric a mean", "metric a mean)", "(a) (b)", "x"):
        with pytest.raises(query.OperationError):
            query.parse_sexpr(bad)


def test_operations_tree():
    op = query.parse_operations(
        [
            "aggregate",
            "rate:max",
            ["metric", "a", "mean"],
            ["metric", "b", "mean"],
        ]
    )
    assert op == query.AggregateOp(
        "rate:max",
        (query.MetricOp((("a", "mean"),)), query.MetricOp((("b", "mean"),))),
    )
    assert query.metric_refs(op) == [("a", "mean"), ("b", "mean")]
    nested = query.parse_operations(
        "(aggregate max (aggregate mean (metric (a mean) (b mean))))"
    )
    assert query.metric_refs(nested) == [("a", "mean"), ("b", "mean")]
    with pytest.raises(query.OperationError, match=r"operations\[2\]\[0\]"):
        query.parse_operations(["aggregate", "mean", ["nope", "a", "b"]])


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (["bogus", "x"], "operations[0]: unknown operation 'bogus'"),
        (["rolling", "mean", 0, ["metric", "a", "mean"]], "operations[2]"),
        (["resample", "last", 300, ["metric", "a", "mean"]], "operations[1]"),
        (["+", 1, 2], "at least one operation"),
        (["abs", ["metric", "a", "mean"], 3], "one operation"),
        (["metric", ["a"]], "operations[1]"),
        ("(aggregate mean (metric a mean)", "unbalanced"),
        ([], "operations"),
    ],
)
def test_errors_name_the_position(raw, where):
    with pytest.raises(query.OperationError) as excinfo:
        query.parse_operations(raw)
    assert where in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_resample_granularity_and_rolling_window():
    op = query.parse_operations(
        [
            "resample",
            "max",
            "5min",
            ["rolling", "sum", 3, ["metric", "a", "mean"]],
        ]
    )
    assert op == query.ResampleOp(
        "max",
        300 * 10**9,
        query.RollingOp("sum", 3, query.MetricOp((("a", "mean"),))),
    )


def test_nesting_is_bounded_in_both_forms():
    nested: list = ["metric", "a", "mean"]
    for _ in range(40):
        nested = ["abs", nested]
    expression = "(abs " * 40 + "(metric a mean)" + ")" * 40
    for raw in (nested, expression):
        with pytest.raises(query.OperationError) as excinfo:
            query.parse_operations(raw)
        assert str(excinfo.value) == (
            "operations: nested deeper than 32 levels"
        )
        assert query.parse_operations(raw, max_depth=41)
