"""Reading metrics back: Gnocchi's aggregates language, pure numpy.

The one home of aggregation *across* series and of the operations of
``/v1/aggregates`` (per-series buckets are aggregated on write by
:mod:`alarmer.metrics.series.aggregation`).  No I/O and no HTTP: the
caller resolves references and fetches series, this package computes.

Interface:

* :mod:`.parse` -- :func:`parse_operations` (JSON lists or
  S-expression -> typed tree of :data:`Operation` nodes),
  :func:`metric_refs` (the ``(reference, method)`` pairs to fetch) and
  the vocabulary (:data:`METHODS`, :data:`FILLS`);
* :mod:`.operations` -- :func:`evaluate` (a tree over fetched series of
  one granularity -> :class:`Block`), :func:`align` (Gnocchi's ``fill``
  and ``needed_overlap`` rules, implemented once in
  :func:`apply_fill`), :func:`aggregate_across` /
  :func:`aggregate_matrix` (``aggregate`` of series / of a laid-out
  grid), and :func:`reduce_across` / :func:`reduce_grid` /
  :func:`window_across` (the same request split so that the reduction
  can be kept while the window moves, for the alarm evaluator).

Errors derive from :class:`QueryError` (an
:class:`~alarmer.errors.AlarmerError` and a :class:`ValueError`):
:class:`OperationError` for operations that are malformed or do not
apply to the series, :class:`CrossAggregationError` (and its
subclasses) for series that cannot be aggregated together.
"""

from __future__ import annotations

from alarmer.metrics.query.operations import (
    Block,
    CrossAggregationError,
    GranularityMismatch,
    InvalidFill,
    NotEnoughOverlap,
    UnknownCrossMethod,
    aggregate_across,
    aggregate_matrix,
    align,
    apply_fill,
    backward_fill,
    check_fill,
    evaluate,
    forward_fill,
    lay_out,
    reduce_across,
    reduce_columns,
    reduce_grid,
    window_across,
)
from alarmer.metrics.query.parse import (
    FILLS,
    METHODS,
    AggregateOp,
    BinaryOp,
    ClipOp,
    MetricOp,
    Operation,
    OperationError,
    QueryError,
    ResampleOp,
    RollingOp,
    UnaryOp,
    is_valid_method,
    metric_refs,
    parse_operations,
    parse_sexpr,
)

__all__ = [
    "FILLS",
    "METHODS",
    "AggregateOp",
    "BinaryOp",
    "Block",
    "ClipOp",
    "CrossAggregationError",
    "GranularityMismatch",
    "InvalidFill",
    "MetricOp",
    "NotEnoughOverlap",
    "Operation",
    "OperationError",
    "QueryError",
    "ResampleOp",
    "RollingOp",
    "UnaryOp",
    "UnknownCrossMethod",
    "aggregate_across",
    "aggregate_matrix",
    "align",
    "apply_fill",
    "backward_fill",
    "check_fill",
    "evaluate",
    "forward_fill",
    "is_valid_method",
    "lay_out",
    "metric_refs",
    "parse_operations",
    "parse_sexpr",
    "reduce_across",
    "reduce_columns",
    "reduce_grid",
    "window_across",
]
