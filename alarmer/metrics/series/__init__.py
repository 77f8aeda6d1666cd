"""Time series: aggregation on write, the series store and its drivers.

:mod:`.aggregation` is pure numpy (arrays in, arrays out);
:mod:`.codec` serializes states and log records without I/O;
:mod:`.drivers` hold the bytes (one module per backend behind
:class:`~alarmer.metrics.series.drivers.SeriesDriver`); :mod:`.store`
ties them together with a bounded cache.  Aggregation across series
is :mod:`alarmer.metrics.query`.
"""
